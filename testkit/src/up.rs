//! Starts the real `spherecast` binary on free loopback ports and stops it with SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::net::{free_addrs, wait_for_tcp};

/// A running `spherecast` process with its addresses and data folder.
pub struct Spherecast {
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub data: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

/// The binary under test: the one cargo built for this test run.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("CARGO_BIN_EXE_spherecast") {
        return PathBuf::from(path);
    }
    let root = crate::repo_root();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join("debug").join("spherecast")
}

impl Spherecast {
    /// `spherecast up --data DATA` on free ports, plus `extra` arguments; waits until both
    /// listeners accept connections.
    pub fn up(data: &Path, extra: &[&str]) -> anyhow::Result<Spherecast> {
        Self::start("up", data, extra, &[])
    }

    /// Any subcommand with `--data`, `--rtmp`, `--http` on free ports and extra env vars.
    pub fn start(
        command: &str,
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Spherecast> {
        let addrs = free_addrs(2);
        Self::start_on(command, data, addrs[0], addrs[1], extra, env)
    }

    pub fn start_on(
        command: &str,
        data: &Path,
        rtmp: SocketAddr,
        http: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Spherecast> {
        std::fs::create_dir_all(data)?;
        let log = data.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(binary());
        cmd.arg(command)
            .arg("--data")
            .arg(data)
            .args(["--rtmp", &rtmp.to_string(), "--http", &http.to_string()])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary().display()))?;
        let mut me = Spherecast {
            rtmp,
            http,
            data: data.to_path_buf(),
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [rtmp, http] {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = wait_for_tcp(addr, left) {
                let exited = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                bail!(
                    "spherecast did not start ({e}; exit: {exited:?}); log:\n{}",
                    me.log_text()
                );
            }
        }
        Ok(me)
    }

    pub fn rtmp_url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to `grace` for a clean exit. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "spherecast did not exit within {grace:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash, for recovery tests.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Spherecast {
    fn drop(&mut self) {
        self.kill();
    }
}
