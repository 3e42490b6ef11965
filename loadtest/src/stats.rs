//! What a run measured: every request's latency, size and outcome by kind, stalls, viewers
//! joining and leaving, over time. One [`Recorder`] is shared by all viewers (one short lock
//! per request) and turns into a [`Report`] at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::Config;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// The master playlist.
    Master,
    /// A media playlist, loaded or reloaded at once.
    Playlist,
    /// A media playlist with `_HLS_msn` (and `_HLS_part`): the server holds it until the
    /// asked-for segment or part exists, so its latency includes that wait.
    BlockingPlaylist,
    /// A whole media segment.
    Segment,
    /// A partial segment (LL-HLS), preload hints included.
    Part,
    /// An `#EXT-X-MAP` initialisation section.
    Init,
}

impl RequestKind {
    /// Every kind, in report order.
    pub const ALL: [RequestKind; 6] = [
        RequestKind::Master,
        RequestKind::Playlist,
        RequestKind::BlockingPlaylist,
        RequestKind::Segment,
        RequestKind::Part,
        RequestKind::Init,
    ];

    /// The name used in reports.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Master => "master",
            RequestKind::Playlist => "playlist",
            RequestKind::BlockingPlaylist => "blocking_playlist",
            RequestKind::Segment => "segment",
            RequestKind::Part => "part",
            RequestKind::Init => "init",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// An answer with a status other than 2xx.
    Status(u16),
    /// No complete answer within the request's time limit.
    Timeout,
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The connection broke while the body was read.
    Body,
    /// Any other transport error (the connection closed before an answer, ...).
    Request,
    /// A playlist body that is not a playlist the viewer can follow.
    Playlist,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "http {code}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect => f.write_str("connect"),
            Failure::Body => f.write_str("body"),
            Failure::Request => f.write_str("request"),
            Failure::Playlist => f.write_str("invalid playlist"),
        }
    }
}

/// Latency histograms cover 1 µs to this; slower requests count at the top.
const LATENCY_MAX_US: u64 = 600_000_000;
/// At most this many points in the time series, so long runs stay small.
const MAX_POINTS: u64 = 300;
/// Kinds with a latency series over time.
const SERIES_KINDS: [RequestKind; 3] = [
    RequestKind::Segment,
    RequestKind::Playlist,
    RequestKind::Part,
];

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, sigfig).expect("valid histogram bounds")
}

#[derive(Debug)]
struct Totals {
    latency: Histogram<u64>,
    count: u64,
    errors: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    requests: u64,
    bytes: u64,
    errors: u64,
    stalls: u64,
    active: u32,
    latency: [Option<Histogram<u64>>; 3],
}

#[derive(Debug)]
struct Inner {
    totals: Vec<Totals>,
    errors: BTreeMap<(RequestKind, Failure), u64>,
    series: Vec<Bucket>,
    stalls: u64,
    stalled: Duration,
    viewers: Vec<ViewerRecord>,
    peak_active: u32,
}

/// Counters for the progress line (totals since the start).
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub active: u32,
    pub started: u32,
    pub requests: u64,
    pub bytes: u64,
    pub errors: u64,
    pub stalls: u64,
}

/// The shared sink of every measurement in a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    bucket: Duration,
    active: AtomicU32,
    started: AtomicU32,
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    stalls: AtomicU64,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// A recorder whose clock starts now, with time buckets sized for a run of `run_time`.
    pub fn new(run_time: Duration) -> Self {
        let secs = run_time.as_secs().div_ceil(MAX_POINTS).max(1);
        Recorder {
            start: Instant::now(),
            bucket: Duration::from_secs(secs),
            active: AtomicU32::new(0),
            started: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                totals: RequestKind::ALL
                    .iter()
                    .map(|_| Totals {
                        latency: histogram(3),
                        count: 0,
                        errors: 0,
                        bytes: 0,
                    })
                    .collect(),
                errors: BTreeMap::new(),
                series: Vec::new(),
                stalls: 0,
                stalled: Duration::ZERO,
                viewers: Vec::new(),
                peak_active: 0,
            }),
        }
    }

    /// Time since the run began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// When the run began.
    pub fn start(&self) -> Instant {
        self.start
    }

    fn with_bucket(&self, f: impl FnOnce(&mut Inner, usize)) {
        let index = (self.now().as_millis() / self.bucket.as_millis()) as usize;
        let active = self.active.load(Ordering::Relaxed);
        let mut inner = self.inner.lock().expect("recorder lock");
        if inner.series.len() <= index {
            inner.series.resize_with(index + 1, Bucket::default);
        }
        let bucket = &mut inner.series[index];
        bucket.active = bucket.active.max(active);
        inner.peak_active = inner.peak_active.max(active);
        f(&mut inner, index);
    }

    /// A request of `kind` succeeded after `latency` with a body of `bytes`.
    pub fn success(&self, kind: RequestKind, latency: Duration, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let micros = (latency.as_micros() as u64).max(1);
        self.with_bucket(|inner, index| {
            let totals = &mut inner.totals[kind.index()];
            totals.latency.saturating_record(micros);
            totals.count += 1;
            totals.bytes += bytes;
            let bucket = &mut inner.series[index];
            bucket.requests += 1;
            bucket.bytes += bytes;
            if let Some(slot) = SERIES_KINDS.iter().position(|&k| k == kind) {
                bucket.latency[slot]
                    .get_or_insert_with(|| histogram(2))
                    .saturating_record(micros);
            }
        });
    }

    /// A request of `kind` failed.
    pub fn failure(&self, kind: RequestKind, failure: Failure) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.with_bucket(|inner, index| {
            let totals = &mut inner.totals[kind.index()];
            totals.count += 1;
            totals.errors += 1;
            *inner.errors.entry((kind, failure)).or_default() += 1;
            let bucket = &mut inner.series[index];
            bucket.requests += 1;
            bucket.errors += 1;
        });
    }

    /// A viewer's buffer ran dry for `stalled`.
    pub fn stall(&self, stalled: Duration) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
        self.with_bucket(|inner, index| {
            inner.stalls += 1;
            inner.stalled += stalled;
            inner.series[index].stalls += 1;
        });
    }

    /// A viewer started.
    pub fn joined(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        self.with_bucket(|_, _| {});
    }

    /// A viewer ended; `record` is what it did.
    pub fn left(&self, record: ViewerRecord) {
        self.with_bucket(|inner, _| inner.viewers.push(record));
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Keeps the active-viewer series going while nothing else happens.
    pub fn tick(&self) {
        self.with_bucket(|_, _| {});
    }

    /// Totals so far, for progress lines.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            active: self.active.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
        }
    }

    /// The report of the run, which lasted `elapsed`; `cpu` is the generator's own CPU time.
    pub fn report(&self, config: &Config, elapsed: Duration, cpu: Option<Duration>) -> Report {
        let inner = self.inner.lock().expect("recorder lock");
        let secs = elapsed.as_secs_f64().max(1e-3);
        let requests = RequestKind::ALL
            .iter()
            .map(|&kind| {
                let t = &inner.totals[kind.index()];
                KindReport {
                    kind,
                    count: t.count,
                    errors: t.errors,
                    bytes: t.bytes,
                    bytes_per_sec: t.bytes as f64 / secs,
                    latency_ms: Latency::of(&t.latency),
                }
            })
            .collect::<Vec<_>>();
        let errors = inner
            .errors
            .iter()
            .map(|(&(kind, failure), &count)| ErrorCount {
                kind,
                error: failure.to_string(),
                count,
            })
            .collect::<Vec<_>>();
        let bucket_secs = self.bucket.as_secs_f64();
        let series = inner
            .series
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let latency = |slot: usize| b.latency[slot].as_ref().map(Latency::of);
                Point {
                    t: i as f64 * bucket_secs,
                    active: b.active,
                    requests_per_sec: b.requests as f64 / bucket_secs,
                    bytes_per_sec: b.bytes as f64 / bucket_secs,
                    errors: b.errors,
                    stalls: b.stalls,
                    segment_ms: latency(0),
                    playlist_ms: latency(1),
                    part_ms: latency(2),
                }
            })
            .collect();
        let mut viewers = inner.viewers.clone();
        viewers.sort_by_key(|v| v.id);
        let bytes: u64 = requests.iter().map(|k| k.bytes).sum();
        let seg = |f: fn(&ViewerRecord) -> u64| viewers.iter().map(f).sum::<u64>();
        Report {
            config: config.clone(),
            elapsed_secs: elapsed.as_secs_f64(),
            viewers: ViewerTotals {
                target: config.viewers,
                started: self.started.load(Ordering::Relaxed),
                peak_active: inner.peak_active,
                played: viewers.iter().filter(|v| v.played).count() as u32,
                reached_end_of_stream: viewers.iter().filter(|v| v.ended).count() as u32,
                with_stalls: viewers.iter().filter(|v| v.stalls > 0).count() as u32,
            },
            total_requests: requests.iter().map(|k| k.count).sum(),
            total_errors: requests.iter().map(|k| k.errors).sum(),
            bytes,
            bytes_per_sec: bytes as f64 / secs,
            stalls: Stalls {
                count: inner.stalls,
                seconds: inner.stalled.as_secs_f64(),
            },
            media: MediaTotals {
                segments: seg(|v| v.segments),
                parts: seg(|v| v.parts),
                missed_segments: seg(|v| v.missed),
                duplicates: seg(|v| v.duplicates),
            },
            cpu: cpu.map(|cpu| Cpu {
                seconds: cpu.as_secs_f64(),
                percent_of_one_core: 100.0 * cpu.as_secs_f64() / secs,
            }),
            requests,
            errors,
            series,
            viewer_details: viewers,
        }
    }
}

/// What one viewer did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerRecord {
    pub id: u32,
    /// Seconds since the run began.
    pub joined_at: f64,
    pub left_at: f64,
    /// The media playlist it followed.
    pub variant: Option<String>,
    /// Playback started (enough media arrived).
    pub played: bool,
    /// The stream ended (`#EXT-X-ENDLIST`) and the viewer had everything.
    pub ended: bool,
    /// Media sequence numbers of the first and last segment it downloaded (whole or in parts).
    pub first_msn: Option<u64>,
    pub last_msn: Option<u64>,
    /// Whole segments downloaded.
    pub segments: u64,
    /// Partial segments downloaded.
    pub parts: u64,
    /// Segments that left the playlist before the viewer got them.
    pub missed: u64,
    /// Media URIs downloaded more than once (a player never should).
    pub duplicates: u64,
    pub stalls: u64,
    pub stalled_secs: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One request kind over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: RequestKind,
    /// Requests made, failed ones included.
    pub count: u64,
    pub errors: u64,
    /// Body bytes of successful requests.
    pub bytes: u64,
    pub bytes_per_sec: f64,
    /// Of successful requests.
    pub latency_ms: Latency,
}

/// Failures of one kind of request for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub kind: RequestKind,
    /// `http 404`, `timeout`, `connect`, `body`, `request` or `invalid playlist`.
    pub error: String,
    pub count: u64,
}

/// Viewer counts.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerTotals {
    pub target: u32,
    pub started: u32,
    pub peak_active: u32,
    /// Viewers whose playback started.
    pub played: u32,
    pub reached_end_of_stream: u32,
    pub with_stalls: u32,
}

/// Stalls over all viewers.
#[derive(Debug, Clone, Serialize)]
pub struct Stalls {
    pub count: u64,
    /// Total time buffers were empty, summed over viewers.
    pub seconds: f64,
}

/// Media downloaded over all viewers.
#[derive(Debug, Clone, Serialize)]
pub struct MediaTotals {
    pub segments: u64,
    pub parts: u64,
    pub missed_segments: u64,
    pub duplicates: u64,
}

/// The load generator's own CPU time.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub seconds: f64,
    pub percent_of_one_core: f64,
}

/// One time bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Start of the bucket, seconds since the run began.
    pub t: f64,
    /// Most viewers active in the bucket.
    pub active: u32,
    pub requests_per_sec: f64,
    pub bytes_per_sec: f64,
    pub errors: u64,
    pub stalls: u64,
    pub segment_ms: Option<Latency>,
    pub playlist_ms: Option<Latency>,
    pub part_ms: Option<Latency>,
}

/// Everything a run measured: the JSON report, and the data of the HTML one.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: Config,
    pub elapsed_secs: f64,
    pub viewers: ViewerTotals,
    pub total_requests: u64,
    pub total_errors: u64,
    /// Body bytes of all successful requests.
    pub bytes: u64,
    pub bytes_per_sec: f64,
    pub stalls: Stalls,
    pub media: MediaTotals,
    pub cpu: Option<Cpu>,
    pub requests: Vec<KindReport>,
    pub errors: Vec<ErrorCount>,
    pub series: Vec<Point>,
    pub viewer_details: Vec<ViewerRecord>,
}

impl Report {
    /// One request kind's line.
    pub fn kind(&self, kind: RequestKind) -> &KindReport {
        &self.requests[kind.index()]
    }
}
