//! Running the browser scripts of `web/tests/` (node + playwright-core + headless Chromium,
//! installed by `scripts/setup.sh`): each prints one JSON document on stdout.

use std::ffi::OsStr;
use std::process::Command;

/// Runs `web/tests/SCRIPT` (or a script at an absolute path) with `args` and returns the JSON
/// it printed. Panics, with the script's stdout and stderr, when node is missing, the script
/// fails or prints something else than JSON: what a test wants to see when a browser check
/// breaks.
pub fn run_script<S: AsRef<OsStr>>(script: &str, args: &[S]) -> serde_json::Value {
    let path = crate::repo_root().join("web/tests").join(script);
    let output = Command::new("node")
        .arg(&path)
        .args(args)
        .output()
        .expect("node runs (scripts/setup.sh installs it with playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        path.display(),
        output.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}):\n{stdout}\n{stderr}",
            path.display()
        )
    })
}
