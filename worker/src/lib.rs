//! The VOD worker: takes S3 events off the queue, transcodes each recording with GStreamer into
//! an ABR HLS ladder and publishes it to the egress bucket, under at-least-once delivery,
//! crashes, spot interruptions and poison input.

pub mod claim;
pub mod config;
pub mod consumer;
pub mod immersive;
pub mod job;
pub mod ladder;
pub mod metrics;
pub mod output;
pub mod player;
pub mod protection;
pub mod spot;
pub mod status;
pub mod transcode;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cloud::{ObjectStore, Queue};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::WorkerConfig;
pub use consumer::Control;

use crate::job::JobContext;
use crate::metrics::Metrics;
use crate::status::{Phase, Status};

/// Where the worker reads work and writes results.
#[derive(Debug, Clone)]
pub struct Ports {
    pub queue: Arc<dyn Queue>,
    pub ingress: Arc<dyn ObjectStore>,
    pub egress: Arc<dyn ObjectStore>,
    /// Scale-in protection of this instance while busy (Auto Scaling groups), if wanted.
    pub protection: Option<Arc<dyn protection::ScaleInProtection>>,
}

/// Why the worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Interrupted (spot notice, SIGTERM): running jobs were handed back.
    Interrupted,
    /// Drained (rebalance notice): running jobs finished.
    Drained,
    /// Idle for `idle_shutdown_secs`.
    Idle,
}

/// Runs the worker until `control` stops it (or the idle limit). `work_dir` holds downloads
/// and outputs in progress; what a crashed run left there is removed at start.
pub async fn run(
    config: WorkerConfig,
    work_dir: PathBuf,
    ports: Ports,
    control: Control,
) -> anyhow::Result<Exit> {
    config.validate()?;
    transcode::init()?;
    clear_work_dir(&work_dir)?;
    let metrics = Metrics::default();
    let status = Status::new(metrics.clone());
    let stop_http = CancellationToken::new();
    let http = match config.http_listen {
        Some(addr) => Some(start_status_endpoint(addr, status.clone(), stop_http.clone()).await?),
        None => None,
    };
    tokio::spawn(follow_phase(control.clone(), status.clone()));
    if config.spot.enabled {
        tokio::spawn(spot::watch(
            config.spot.clone(),
            control.clone(),
            status.clone(),
        ));
    }
    let stop_protection = CancellationToken::new();
    let protection = ports.protection.clone().map(|protection| {
        tokio::spawn(protection::follow(
            protection,
            status.watch_busy(),
            stop_protection.clone(),
        ))
    });
    let idle = CancellationToken::new();
    if let Some(secs) = config.idle_shutdown_secs {
        tokio::spawn(watch_idle(
            Duration::from_secs(secs),
            status.clone(),
            control.clone(),
            idle.clone(),
        ));
    }
    info!(
        concurrency = config.concurrency,
        rungs = config.rungs.len(),
        ingress = ports.ingress.bucket(),
        egress = ports.egress.bucket(),
        "Worker started."
    );
    // The player beside the ladders; a bucket that cannot take it now is no reason not to
    // transcode (the next start tries again).
    match player::publish(ports.egress.as_ref()).await {
        Ok(0) => {}
        Ok(written) => info!(
            written,
            prefix = player::PREFIX,
            "Player published to the egress bucket."
        ),
        Err(err) => {
            warn!(%err, "Cannot publish the player to the egress bucket; ladders still play with any other player.")
        }
    }
    let idle_command = config.idle_command.clone();
    let ctx = Arc::new(JobContext {
        config: Arc::new(config),
        ingress: ports.ingress,
        egress: ports.egress,
        work_dir,
        metrics,
        status: status.clone(),
    });
    consumer::consume(ctx, ports.queue, control.clone()).await;
    stop_protection.cancel();
    if let Some(protection) = protection {
        let _ = protection.await;
    }
    stop_http.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    let exit = if idle.is_cancelled() {
        Exit::Idle
    } else if control.interrupt.is_cancelled() {
        Exit::Interrupted
    } else {
        Exit::Drained
    };
    info!(?exit, "Worker stopped.");
    if exit == Exit::Idle && !idle_command.is_empty() {
        run_idle_command(&idle_command).await;
    }
    Ok(exit)
}

async fn start_status_endpoint(
    addr: SocketAddr,
    status: Status,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the worker status endpoint"))?;
    info!(%addr, "Worker status endpoint listening.");
    Ok(tokio::spawn(async move {
        if let Err(err) = status::serve_on(listener, status, stop).await {
            warn!(%err, "Worker status endpoint stopped.");
        }
    }))
}

/// Keeps the status endpoint's phase in step with `control`, whoever stopped the worker
/// (SIGTERM, a spot notice, a rebalance notice, the idle limit).
async fn follow_phase(control: Control, status: Status) {
    tokio::select! {
        () = control.interrupt.cancelled() => status.set_phase(Phase::Interrupted),
        () = control.drain.cancelled() => {
            status.set_phase(Phase::Draining);
            control.interrupt.cancelled().await;
            status.set_phase(Phase::Interrupted);
        }
    }
}

/// Drains the worker once it has had no job for `limit`.
async fn watch_idle(limit: Duration, status: Status, control: Control, idle: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = control.interrupt.cancelled() => return,
            () = control.drain.cancelled() => return,
        }
        if status.idle_for().is_some_and(|d| d >= limit) {
            info!(idle = ?limit, "No job for the idle limit; stopping.");
            status.set_phase(Phase::Draining);
            idle.cancel();
            control.drain.cancel();
            return;
        }
    }
}

async fn run_idle_command(command: &[String]) {
    info!(?command, "Running the idle command.");
    match tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .await
    {
        Ok(status) if status.success() => {}
        Ok(status) => warn!(?command, %status, "The idle command failed."),
        Err(err) => warn!(?command, %err, "The idle command could not start."),
    }
}

/// Removes job folders a crashed run left (`job-*`); creates the folder.
fn clear_work_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the work folder {}", dir.display()))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("job-") {
            info!(path = %entry.path().display(), "Removing a crashed job's work folder.");
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}
