//! Real nginx (Debian's) from a config template with `${NAME}` placeholders, such as the edge
//! cache's `infra/edge/nginx.conf`, started in a temporary prefix on a free loopback port.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::net::free_addr;

/// Fills every `${NAME}` in `template` from `vars`, as `envsubst '${NAME} ...'` does at boot.
/// Stricter than envsubst, so a test notices when the template and its users drift apart: a
/// name in `vars` that the template lacks, or a `${...}` left unfilled, is an error.
pub fn fill_template(template: &str, vars: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut filled = template.to_owned();
    for (name, value) in vars {
        let placeholder = format!("${{{name}}}");
        if !filled.contains(&placeholder) {
            bail!("the template has no {placeholder} placeholder");
        }
        filled = filled.replace(&placeholder, value);
    }
    if let Some(at) = filled.find("${") {
        let rest = &filled[at..];
        let end = rest.find('}').map_or(rest.len(), |i| i + 1);
        bail!("placeholder {} has no value", &rest[..end]);
    }
    Ok(filled)
}

/// A running nginx master (and its workers) in its own prefix; stopped on drop.
pub struct Nginx {
    pub addr: SocketAddr,
    prefix: tempfile::TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx on `template` with `vars` plus two placeholders of its own:
    /// `${LISTEN_PORT}` becomes `127.0.0.1:PORT` on a free port (nginx takes an address
    /// there too, and the test server stays off other interfaces), `${CACHE_DIR}` a folder
    /// in the prefix. Waits until `/healthz` answers 200.
    pub fn start(template: &Path, vars: &[(&str, &str)]) -> anyhow::Result<Nginx> {
        let text = std::fs::read_to_string(template)
            .with_context(|| format!("reading {}", template.display()))?;
        let prefix = tempfile::Builder::new().prefix("nginx-").tempdir()?;
        std::fs::create_dir(prefix.path().join("logs"))?;
        // Started as root, nginx runs its workers as nobody: they must get into the prefix
        // to write the cache (tempdir makes it 0700).
        set_mode(prefix.path(), 0o755)?;
        let addr = free_addr();
        let listen = addr.to_string();
        let cache = prefix.path().join("cache");
        let cache = cache.to_str().context("temp path is not UTF-8")?;
        let mut all = vec![("LISTEN_PORT", listen.as_str()), ("CACHE_DIR", cache)];
        all.extend_from_slice(vars);
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, fill_template(&text, &all)?)?;

        let stderr = std::fs::File::create(prefix.path().join("logs/stderr.log"))?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(format!("{}/", prefix.path().display()))
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr", "-g", "daemon off;"])
            // Its own process group, so that a master that will not stop can be killed with
            // its workers.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .context("starting nginx: is it installed? run scripts/setup.sh")?;
        let mut nginx = Nginx {
            addr,
            prefix,
            child: Some(child),
        };
        nginx.wait_ready(Duration::from_secs(10))?;
        Ok(nginx)
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        loop {
            let status = client.get(self.url("/healthz")).send().map(|r| r.status());
            if status.is_ok_and(|s| s.is_success()) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                bail!(
                    "nginx did not come up on {} (exit: {exited:?}); error log:\n{}",
                    self.addr,
                    self.error_log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The config nginx runs, placeholders filled.
    pub fn config_path(&self) -> PathBuf {
        self.prefix.path().join("nginx.conf")
    }

    /// What nginx wrote to stderr and to `logs/error.log`, for failure messages.
    pub fn error_log_text(&self) -> String {
        let logs = self.prefix.path().join("logs");
        let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// `logs/access.log` so far. The config may buffer lines for a second or so.
    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("logs/access.log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGTERM); after `grace`, SIGKILL to the master and its workers.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group is nginx's own (process_group(0) at spawn): the master and its workers.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::fill_template;

    #[test]
    fn every_placeholder_is_filled_and_nginx_variables_are_left_alone() {
        let filled = fill_template(
            "listen ${PORT};\nadd_header X $upstream_cache_status;\nserver ${PORT};\n",
            &[("PORT", "8080")],
        )
        .unwrap();
        assert_eq!(
            filled,
            "listen 8080;\nadd_header X $upstream_cache_status;\nserver 8080;\n"
        );
    }

    #[test]
    fn a_missing_value_or_an_unknown_placeholder_is_an_error() {
        let missing = fill_template("a ${A} b ${B};", &[("A", "1")]).unwrap_err();
        assert!(missing.to_string().contains("${B}"), "{missing}");
        let unknown = fill_template("a ${A};", &[("A", "1"), ("C", "3")]).unwrap_err();
        assert!(unknown.to_string().contains("${C}"), "{unknown}");
    }
}
