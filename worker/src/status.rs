//! What the worker is doing, for the local status endpoint (`/status`, `/metrics`,
//! `/healthz`): the scaler and operators read whether it is busy before shrinking the fleet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::transcode::Progress;

/// The worker's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Taking messages.
    Running,
    /// Finishing the jobs it has, taking no more (rebalance notice, idle limit).
    Draining,
    /// Handing its jobs back and exiting (spot interruption, SIGTERM).
    Interrupted,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub key: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub receive_count: u32,
    pub percent: Option<f64>,
    /// Media seconds per wall second so far.
    pub speed: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub phase: Phase,
    pub busy: bool,
    pub jobs: BTreeMap<String, JobStatus>,
    /// Seconds without a running job (0 while busy).
    pub idle_seconds: u64,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    jobs: BTreeMap<String, JobStatus>,
    idle_since: Option<Instant>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct Status {
    inner: Arc<Mutex<Inner>>,
    metrics: Metrics,
    /// Whether any job runs, for whoever must act at once when that changes (scale-in
    /// protection).
    busy: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Status {
    pub fn new(metrics: Metrics) -> Status {
        Status {
            inner: Arc::new(Mutex::new(Inner {
                phase: Phase::Running,
                jobs: BTreeMap::new(),
                idle_since: Some(Instant::now()),
            })),
            metrics,
            busy: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Follows whether the worker is busy: `true` from the start of its first job to the end
    /// of its last.
    pub fn watch_busy(&self) -> tokio::sync::watch::Receiver<bool> {
        self.busy.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn start_job(&self, id: &str, key: &str, receive_count: u32) {
        let mut inner = self.lock();
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        inner.jobs.insert(
            id.to_owned(),
            JobStatus {
                key: key.to_owned(),
                started_at,
                receive_count,
                percent: None,
                speed: None,
            },
        );
        inner.idle_since = None;
        self.metrics.jobs_running.set(inner.jobs.len() as i64);
        self.metrics.busy.set(1);
        self.busy
            .send_if_modified(|busy| !std::mem::replace(busy, true));
    }

    pub fn progress(&self, id: &str, progress: Progress) {
        if let Some(job) = self.lock().jobs.get_mut(id) {
            job.percent = progress.percent();
            job.speed = Some(progress.speed());
        }
    }

    pub fn end_job(&self, id: &str) {
        let mut inner = self.lock();
        inner.jobs.remove(id);
        if inner.jobs.is_empty() {
            inner.idle_since = Some(Instant::now());
            self.metrics.busy.set(0);
            self.busy
                .send_if_modified(|busy| std::mem::replace(busy, false));
        }
        self.metrics.jobs_running.set(inner.jobs.len() as i64);
    }

    pub fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// How long the worker has had no job; `None` while busy.
    pub fn idle_for(&self) -> Option<std::time::Duration> {
        self.lock().idle_since.map(|t| t.elapsed())
    }

    pub fn report(&self) -> Report {
        let inner = self.lock();
        Report {
            phase: inner.phase,
            busy: !inner.jobs.is_empty(),
            jobs: inner.jobs.clone(),
            idle_seconds: inner.idle_since.map_or(0, |t| t.elapsed().as_secs()),
        }
    }
}

/// Serves the status endpoint on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    status: Status,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "Worker status endpoint listening.");
    serve_on(listener, status, shutdown).await
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    status: Status,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/status", get(report))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(status);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn report(State(status): State<Status>) -> Json<Report> {
    Json(status.report())
}

async fn metrics(State(status): State<Status>) -> Response {
    let mut response = status.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
