//! `spherecast loadtest`: virtual viewers that behave like HLS and LL-HLS players, against a
//! live origin, edge or CDN; per request kind latency percentiles, errors and throughput, and
//! stalls from a model of each viewer's playback buffer; JSON and HTML reports.
//!
//! One tokio runtime and one shared HTTP client (a connection pool without a per-host limit)
//! drive all viewers, so a small machine can run thousands. A run always ends by
//! `ramp + duration` plus [`config::GRACE`]: every request has a time limit and is abandoned
//! at the deadline.
#![forbid(unsafe_code)]

pub mod config;
pub mod html;
pub mod playback;
pub mod playlist;
mod progress;
pub mod stats;
mod text;
mod viewer;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{Config, ConfigError, Preset, VariantPolicy};
pub use stats::{Report, RequestKind};
pub use text::summary_text;

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Runs the load test described by `config` until its deadline, until every viewer has seen
/// the end of the stream, or until `shutdown` fires, and returns what it measured.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Report, Error> {
    config.validate()?;
    warn_about_file_limit(config.viewers);
    let client = reqwest::Client::builder()
        // One pool for every viewer; at most one idle connection per viewer survives, and
        // each stays open long enough to be reused by the next reload.
        .pool_max_idle_per_host(config.viewers as usize * 2)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect_timeout(config.timeout)
        .build()
        .map_err(Error::Client)?;
    let config = Arc::new(config);
    let recorder = Arc::new(stats::Recorder::new(config.run_time()));
    let stop = shutdown.child_token();
    let cpu_before = process_cpu_time();
    let start = recorder.start();
    let deadline = start + config.run_time();
    info!(
        url = %config.url,
        viewers = config.viewers,
        ramp_secs = config.ramp.as_secs_f64(),
        duration_secs = config.duration.as_secs_f64(),
        "Load test started."
    );
    let progress = tokio::spawn(progress::run(
        recorder.clone(),
        config.clone(),
        stop.clone(),
    ));
    let shared = viewer::Shared {
        client,
        recorder: recorder.clone(),
        config: config.clone(),
        stop: stop.clone(),
    };
    let mut viewers = JoinSet::new();
    let mut spawned = 0u32;
    let total = config.viewers;
    loop {
        let next_at = (spawned < total)
            .then(|| start + config.ramp.mul_f64(f64::from(spawned) / f64::from(total)));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            _ = sleep_until_some(next_at) => {
                viewers.spawn(viewer::Viewer::new(spawned, shared.clone()).run());
                spawned += 1;
            }
            Some(joined) = viewers.join_next(), if !viewers.is_empty() => {
                if let Err(error) = joined {
                    warn!(%error, "A viewer task failed.");
                }
            }
        }
        if spawned == total && viewers.is_empty() {
            break;
        }
    }
    stop.cancel();
    let wound_down = tokio::time::timeout(config::GRACE, async {
        while viewers.join_next().await.is_some() {}
    })
    .await;
    if wound_down.is_err() {
        warn!(
            left = viewers.len(),
            "Viewers still running after the grace period: aborted."
        );
        viewers.abort_all();
    }
    let _ = progress.await;
    let elapsed = start.elapsed();
    let cpu = match (cpu_before, process_cpu_time()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(recorder.report(&config, elapsed, cpu))
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// This process's user + system CPU time, from `/proc/self/stat` (Linux; `None` elsewhere).
/// Clock ticks are taken as 100 Hz, the value on every Linux architecture Debian ships.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Each viewer may hold a connection or two: warn when the open-file limit is below that.
fn warn_about_file_limit(viewers: u32) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    let needed = u64::from(viewers) * 2 + 64;
    if let Some(soft) = soft
        && soft < needed
    {
        warn!(
            limit = soft,
            needed,
            "The open-file limit is low for this many viewers: requests may fail with \
             'too many open files'. Raise it with `ulimit -n {needed}`."
        );
    }
}
