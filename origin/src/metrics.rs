//! The origin's Prometheus metrics. One struct owns every metric so each notable event is one
//! call site that bumps its counter next to the log line that reports it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Streams with a publisher or still serving their final playlist.
    pub live_streams: Gauge,
    /// Publishers currently connected and publishing.
    pub publishers: Gauge,
    /// RTMP connections currently open (publishing or not).
    pub connections: Gauge,
    pub connections_rejected: Counter,
    pub publishes_rejected: Counter,
    pub bytes_in: Counter,
    pub segments_written: Counter,
    pub recordings_finished: Counter,
    pub recordings_failed: Counter,
    pub recordings_uploaded: Counter,
    pub uploads_failed: Counter,
    pub upload_spool_depth: Gauge,
}

impl Metrics {
    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("spherecast_origin");
        let m = self.clone();
        registry.register(
            "live_streams",
            "Live streams (publishing or in their linger time)",
            m.live_streams,
        );
        registry.register(
            "publishers",
            "Publishers connected and publishing",
            m.publishers,
        );
        registry.register("connections", "Open RTMP connections", m.connections);
        registry.register(
            "connections_rejected",
            "RTMP connections refused because the connection limit was reached",
            m.connections_rejected,
        );
        registry.register(
            "publishes_rejected",
            "Publish requests refused (auth, name, codec, already live)",
            m.publishes_rejected,
        );
        registry.register(
            "bytes_in",
            "Media bytes received from publishers",
            m.bytes_in,
        );
        registry.register(
            "segments_written",
            "Live HLS segments produced",
            m.segments_written,
        );
        registry.register(
            "recordings_finished",
            "Recording files finalised",
            m.recordings_finished,
        );
        registry.register(
            "recordings_failed",
            "Recordings stopped by an error (disk full, I/O)",
            m.recordings_failed,
        );
        registry.register(
            "recordings_uploaded",
            "Recordings uploaded to the ingress bucket",
            m.recordings_uploaded,
        );
        registry.register(
            "uploads_failed",
            "Upload attempts that failed and will be retried",
            m.uploads_failed,
        );
        registry.register(
            "upload_spool_depth",
            "Recordings waiting in the upload spool",
            m.upload_spool_depth,
        );
        let mut out = String::new();
        encode(&mut out, &registry).expect("encoding into a String cannot fail");
        out
    }
}
