//! What the ffprobe tests share: the sample made by ffmpeg and ffprobe's view of a file.
//! Both tools are installed by `scripts/setup.sh`; a test fails, never skips, without them.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const SETUP_HINT: &str = "ffmpeg/ffprobe not found on PATH: run scripts/setup.sh";

fn require_tool(name: &str) {
    let ok = Command::new(name)
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{SETUP_HINT} (could not run `{name} -version`)");
}

/// 4 s of 1280x720@30 testsrc (x264, GOP 60) and a 440 Hz sine (AAC), as FLV bytes. Made once
/// per test binary.
pub fn sample_flv() -> &'static [u8] {
    static FLV: OnceLock<Vec<u8>> = OnceLock::new();
    FLV.get_or_init(|| {
        require_tool("ffmpeg");
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("sample.flv");
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "60",
            ])
            .args(["-c:a", "aac", "-ac", "2", "-f", "flv"])
            .arg(&path)
            .output()
            .expect("run ffmpeg");
        assert!(
            out.status.success(),
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(&path).expect("read generated FLV")
    })
}

/// `ffprobe -show_packets -show_streams` of `path` at log level `level`: its JSON and stderr.
pub fn ffprobe_json(path: &Path, level: &str) -> (Value, String) {
    require_tool("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", level, "-show_packets", "-show_streams", "-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    (
        serde_json::from_slice(&out.stdout).expect("ffprobe JSON"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
