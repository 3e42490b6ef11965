//! Starts the real `spherecast` binary on free loopback ports and stops it with SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::net::{free_addr, free_addrs, wait_for_tcp};

/// A running `spherecast` process with its addresses and data folder.
pub struct Spherecast {
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub data: PathBuf,
    process: Process,
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
        let mut args = vec![
            "--rtmp".to_owned(),
            rtmp.to_string(),
            "--http".to_owned(),
            http.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut process = Process::spawn(command, data, &args, env)?;
        process.wait_for(&[rtmp, http], Duration::from_secs(20))?;
        Ok(Spherecast {
            rtmp,
            http,
            data: data.to_path_buf(),
            process,
        })
    }

    pub fn rtmp_url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    /// Publish URL of `name` in RTMP application `app`.
    pub fn rtmp_app_url(&self, app: &str, name: &str) -> String {
        format!("rtmp://{}/{app}/{name}", self.rtmp)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// SIGTERM, then waits up to `grace` for a clean exit. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.process.stop(grace)
    }

    /// SIGKILL: a crash, for recovery tests.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A running `spherecast worker` with its status endpoint (`--worker-http`) on a free port.
/// It has no RTMP or HTTP listener of its own, so [`Spherecast::start`] does not fit it.
pub struct Worker {
    /// The status endpoint: `/status`, `/metrics`, `/healthz`.
    pub http: SocketAddr,
    pub data: PathBuf,
    process: Process,
}

impl Worker {
    /// `spherecast worker --data DATA --worker-http ADDR` plus `extra` arguments and env vars;
    /// waits until the status endpoint accepts connections (the worker then polls the queue).
    pub fn start(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Worker> {
        let mut worker = Self::spawn(data, extra, env)?;
        worker.wait_ready(Duration::from_secs(20))?;
        Ok(worker)
    }

    /// Like [`Worker::start`] without waiting, so that several workers can start at the same
    /// moment; call [`Worker::wait_ready`] next.
    pub fn spawn(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Worker> {
        let http = free_addr();
        let mut args = vec!["--worker-http".to_owned(), http.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Ok(Worker {
            http,
            data: data.to_path_buf(),
            process: Process::spawn("worker", data, &args, env)?,
        })
    }

    /// Waits until the status endpoint accepts connections.
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        self.process.wait_for(&[self.http], limit)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything the worker logged so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The exit status once the process has ended, `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// SIGTERM, then waits up to `grace` for a clean exit. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.process.stop(grace)
    }

    /// SIGKILL: a crash in the middle of a job.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// The child process and its log file (`DATA.log`, stdout and stderr together); killed on
/// drop.
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// `spherecast COMMAND --data DATA ARGS...` with `RUST_LOG` (default `info`) and `env`.
    fn spawn(
        command: &str,
        data: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
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
            .args(args)
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
        Ok(Process {
            child: Some(child),
            log,
        })
    }

    /// Waits until every address accepts connections, all within `limit`.
    fn wait_for(&mut self, addrs: &[SocketAddr], limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        for &addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = wait_for_tcp(addr, left) {
                let exited = self.exited();
                bail!(
                    "spherecast did not start ({e}; exit: {exited:?}); log:\n{}",
                    self.log_text()
                );
            }
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
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
                let _ = child.wait();
                bail!(
                    "spherecast did not exit within {grace:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
