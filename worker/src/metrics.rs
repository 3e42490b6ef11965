//! The worker's Prometheus metrics. Each notable event is one call site that logs and bumps its
//! metric.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub jobs_started: Counter,
    pub jobs_succeeded: Counter,
    /// Failures that will be retried.
    pub jobs_failed: Counter,
    /// Failures that cannot succeed: sent to the dead-letter queue.
    pub jobs_rejected: Counter,
    /// Jobs whose output already existed for the same source eTag.
    pub jobs_skipped: Counter,
    /// Jobs cancelled by an interruption and handed back to the queue.
    pub jobs_released: Counter,
    /// Messages deleted without a job (test events, other event types, unwanted suffixes).
    pub messages_ignored: Counter,
    pub jobs_running: Gauge,
    /// 1 while at least one job runs.
    pub busy: Gauge,
    pub job_seconds: Histogram,
    /// Media seconds transcoded per wall second.
    pub realtime_factor: Histogram,
    /// From the S3 event (upload) to the start of the job.
    pub queue_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let minutes = [
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0, 7200.0,
        ];
        Metrics {
            jobs_started: Counter::default(),
            jobs_succeeded: Counter::default(),
            jobs_failed: Counter::default(),
            jobs_rejected: Counter::default(),
            jobs_skipped: Counter::default(),
            jobs_released: Counter::default(),
            messages_ignored: Counter::default(),
            jobs_running: Gauge::default(),
            busy: Gauge::default(),
            job_seconds: Histogram::new(minutes),
            realtime_factor: Histogram::new([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]),
            queue_wait_seconds: Histogram::new(minutes),
        }
    }
}

impl Metrics {
    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("spherecast_worker");
        let m = self.clone();
        registry.register("jobs_started", "Transcode jobs started", m.jobs_started);
        registry.register(
            "jobs_succeeded",
            "Transcode jobs whose ladder was published",
            m.jobs_succeeded,
        );
        registry.register(
            "jobs_failed",
            "Transcode jobs that failed and will be retried",
            m.jobs_failed,
        );
        registry.register(
            "jobs_rejected",
            "Jobs that can never succeed (missing object, not media), sent to the dead-letter queue",
            m.jobs_rejected,
        );
        registry.register(
            "jobs_skipped",
            "Jobs skipped because the ladder already exists for the same source eTag",
            m.jobs_skipped,
        );
        registry.register(
            "jobs_released",
            "Jobs cancelled by an interruption and handed back to the queue",
            m.jobs_released,
        );
        registry.register(
            "messages_ignored",
            "Messages deleted without a job (test events, other event types, other suffixes)",
            m.messages_ignored,
        );
        registry.register("jobs_running", "Jobs running now", m.jobs_running);
        registry.register("busy", "1 while the worker runs at least one job", m.busy);
        registry.register(
            "job_seconds",
            "Wall seconds per finished job",
            m.job_seconds,
        );
        registry.register(
            "realtime_factor",
            "Media seconds transcoded per wall second",
            m.realtime_factor,
        );
        registry.register(
            "queue_wait_seconds",
            "Seconds from the upload event to the start of its job",
            m.queue_wait_seconds,
        );
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}
