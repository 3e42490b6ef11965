//! The origin's Prometheus metrics. One struct owns every metric so each notable event is one
//! call site that bumps its counter next to the log line that reports it.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
    /// LL-HLS parts produced.
    pub parts_written: Counter,
    /// LL-HLS playlist and part requests waiting right now (blocking reload, preload hints).
    pub blocked_requests: Gauge,
    /// Blocked requests answered 503: what they waited for did not come in time, or too many
    /// were waiting already.
    pub blocked_requests_failed: Counter,
    pub recordings_finished: Counter,
    pub recordings_failed: Counter,
    pub recordings_uploaded: Counter,
    pub uploads_failed: Counter,
    pub upload_spool_depth: Gauge,
    /// Live ABR rungs being transcoded and served now, over all streams.
    pub ladder_rungs: Gauge,
    /// Rungs dropped because the machine could not transcode the ladder in real time.
    pub ladder_rungs_dropped: Counter,
    /// Ladders that could not start or stopped on an error (the passthrough goes on).
    pub ladder_failures: Counter,
    /// Source access units the ladder skipped because it was behind real time.
    pub ladder_frames_dropped: Counter,
    /// Source audio messages the rungs lost because their packaging was behind.
    pub ladder_audio_dropped: Counter,
    pub http_requests: HttpRequests,
}

/// What an HTTP request asked for, as the `kind` label of `http_requests_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RequestKind {
    /// `/hls/NAME.m3u8`
    Master,
    /// `/hls/NAME_src/index.m3u8`
    Playlist,
    /// `/hls/NAME_src/N.ts`, `N.m4s`, `init-N.mp4`
    Segment,
    /// `/hls/NAME_src/pN.m4s` (LL-HLS parts)
    Part,
    /// Everything else: the start page, the API, metrics, health checks, unknown paths.
    Other,
}

impl RequestKind {
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Master => "master",
            RequestKind::Playlist => "playlist",
            RequestKind::Segment => "segment",
            RequestKind::Part => "part",
            RequestKind::Other => "other",
        }
    }
}

impl EncodeLabelValue for RequestKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.label(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: RequestKind,
}

/// HTTP requests received, by [`RequestKind`], whatever their answer (a 404 counts too): what
/// reached the origin, so an edge cache's hit ratio can be checked from here.
///
/// One labelled family for the exposition, and a handle per kind kept from its creation: a
/// `Counter` clone shares its atomic, so counting a request is one atomic add, with no lock
/// or hash lookup on the hot path. Every kind exists (at 0) from the start.
#[derive(Debug, Clone)]
pub struct HttpRequests {
    family: Family<RequestLabels, Counter>,
    master: Counter,
    playlist: Counter,
    segment: Counter,
    part: Counter,
    other: Counter,
}

impl Default for HttpRequests {
    fn default() -> Self {
        let family = Family::<RequestLabels, Counter>::default();
        let handle = |kind| family.get_or_create_owned(&RequestLabels { kind });
        HttpRequests {
            master: handle(RequestKind::Master),
            playlist: handle(RequestKind::Playlist),
            segment: handle(RequestKind::Segment),
            part: handle(RequestKind::Part),
            other: handle(RequestKind::Other),
            family,
        }
    }
}

impl HttpRequests {
    pub fn inc(&self, kind: RequestKind) {
        let counter = match kind {
            RequestKind::Master => &self.master,
            RequestKind::Playlist => &self.playlist,
            RequestKind::Segment => &self.segment,
            RequestKind::Part => &self.part,
            RequestKind::Other => &self.other,
        };
        counter.inc();
    }

    pub fn get(&self, kind: RequestKind) -> u64 {
        self.family.get_or_create(&RequestLabels { kind }).get()
    }
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
        registry.register("parts_written", "LL-HLS parts produced", m.parts_written);
        registry.register(
            "blocked_requests",
            "LL-HLS playlist and part requests waiting for media",
            m.blocked_requests,
        );
        registry.register(
            "blocked_requests_failed",
            "LL-HLS blocked requests answered 503 (timed out, or too many waiting)",
            m.blocked_requests_failed,
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
        registry.register(
            "ladder_rungs",
            "Live ABR rungs being transcoded and served",
            m.ladder_rungs,
        );
        registry.register(
            "ladder_rungs_dropped",
            "Live ABR rungs dropped because the machine could not keep up with real time",
            m.ladder_rungs_dropped,
        );
        registry.register(
            "ladder_failures",
            "Live ABR ladders that could not start or stopped on an error",
            m.ladder_failures,
        );
        registry.register(
            "ladder_frames_dropped",
            "Source frames the live ABR ladder skipped because it was behind real time",
            m.ladder_frames_dropped,
        );
        registry.register(
            "ladder_audio_dropped",
            "Source audio messages the live ABR rungs lost because their packaging was behind",
            m.ladder_audio_dropped,
        );
        registry.register(
            "http_requests",
            "HTTP requests received, by kind (master, playlist, segment, part, other)",
            m.http_requests.family,
        );
        let mut out = String::new();
        encode(&mut out, &registry).expect("encoding into a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_are_counted_by_kind_and_every_kind_is_exposed_from_the_start() {
        let metrics = Metrics::default();
        let text = metrics.render();
        for kind in ["master", "playlist", "segment", "part", "other"] {
            let line = format!("spherecast_origin_http_requests_total{{kind=\"{kind}\"}} 0\n");
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }

        metrics.http_requests.inc(RequestKind::Segment);
        metrics.http_requests.inc(RequestKind::Segment);
        metrics.http_requests.inc(RequestKind::Playlist);
        assert_eq!(metrics.http_requests.get(RequestKind::Segment), 2);
        assert_eq!(metrics.http_requests.get(RequestKind::Playlist), 1);
        assert_eq!(metrics.http_requests.get(RequestKind::Master), 0);
        let text = metrics.clone().render();
        assert!(
            text.contains("spherecast_origin_http_requests_total{kind=\"segment\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("spherecast_origin_http_requests_total{kind=\"playlist\"} 1\n"),
            "{text}"
        );
    }
}
