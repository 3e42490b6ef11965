//! moto server on loopback: S3, SQS and friends for tests, one server per test.
//!
//! moto keeps its state in the server process, so a test that starts its own server sees
//! only its own buckets and queues. The server is killed when the `MotoServer` is dropped.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::net::{free_port, wait_for_tcp};

/// How long moto may take to start (it imports a lot of Python; about 1.5 s when idle).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with a fresh port when another process grabbed the chosen one first.
const START_ATTEMPTS: usize = 3;

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`-style settings.
    pub endpoint: String,
    pub addr: SocketAddr,
    child: Child,
    /// The server's output (request log and errors), for failure messages.
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts `<repo>/.venv/bin/moto_server` on a free loopback port and waits until it
    /// accepts connections.
    pub fn start() -> anyhow::Result<MotoServer> {
        let binary = Self::binary();
        if !binary.is_file() {
            bail!(
                "moto server not found at {}; run scripts/setup.sh to install it",
                binary.display()
            );
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_on(&binary, free_port()) {
                Ok(server) => return Ok(server),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Starts moto server on a given loopback port (for tests that point a service at an
    /// endpoint before it exists, then bring it up).
    pub fn start_on_port(port: u16) -> anyhow::Result<MotoServer> {
        Self::start_on(&Self::binary(), port)
    }

    /// Where `scripts/setup.sh` installs moto server.
    pub fn binary() -> PathBuf {
        crate::repo_root().join(".venv/bin/moto_server")
    }

    fn start_on(binary: &PathBuf, port: u16) -> anyhow::Result<MotoServer> {
        let log = tempfile::NamedTempFile::new().context("creating a log file for moto server")?;
        let stderr = log.reopen().context("opening moto server's log file")?;
        let stdout = log.reopen().context("opening moto server's log file")?;
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // testkit/moto/sitecustomize.py corrects answers of moto's that AWS would never
            // give (see that file).
            .env("PYTHONPATH", crate::repo_root().join("testkit/moto"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Owned from here on, so that any failure below kills the child.
        let mut server = MotoServer {
            endpoint: format!("http://{addr}"),
            addr,
            child,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().context("checking on moto server")? {
                bail!(
                    "moto server exited with {status} before listening on {addr}:\n{}",
                    server.log_tail()
                );
            }
            // Werkzeug logs this line once it has bound the port. Checking for it (and not only
            // that the port answers) makes sure the listener is this child, not a server that
            // another test started on the same port a moment earlier.
            let bound = server
                .log_tail()
                .contains(&format!("Running on http://{addr}"));
            if bound && wait_for_tcp(addr, Duration::from_millis(250)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() > deadline {
                bail!(
                    "moto server not listening on {addr} after {START_TIMEOUT:?}:\n{}",
                    server.log_tail()
                );
            }
        }
    }

    /// The last few kilobytes of the server's output.
    pub fn log_tail(&self) -> String {
        let mut file = match self.log.reopen() {
            Ok(file) => file,
            Err(err) => return format!("(log unreadable: {err})"),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut tail = Vec::new();
        let _ = file.read_to_end(&mut tail);
        String::from_utf8_lossy(&tail).into_owned()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
