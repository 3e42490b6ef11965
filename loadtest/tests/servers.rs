//! `loadtest::run` against small HTTP servers written here: one that never answers, a closed
//! port, one that serves segments slower than real time, and an LL-HLS server with blocking
//! playlist reloads, parts and preload hints on a timer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use loadtest::{Config, Report, RequestKind};
use tokio_util::sync::CancellationToken;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn config(url: String, viewers: u32, ramp: f64, duration: f64) -> Config {
    let mut config = Config::new(
        url,
        viewers,
        Duration::from_secs_f64(ramp),
        Duration::from_secs_f64(duration),
    );
    config.progress = Duration::ZERO;
    config
}

/// Runs and returns the report with how long the run took.
async fn run(config: &Config) -> (Report, Duration) {
    let started = Instant::now();
    let report = loadtest::run(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    (report, started.elapsed())
}

/// Every error in the report, as (request kind, error) -> count.
fn errors(report: &Report) -> HashMap<(RequestKind, String), u64> {
    report
        .errors
        .iter()
        .map(|e| ((e.kind, e.error.clone()), e.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_but_never_answers_ends_the_run_by_its_deadline_with_timeouts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Holds every connection open without reading or writing.
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let mut hung = config(format!("http://{addr}/hls/live.m3u8"), 5, 0.0, 2.0);
    hung.timeout = Duration::from_millis(500);
    let (report, took) = run(&hung).await;
    assert!(
        took >= Duration::from_millis(1900)
            && took < hung.run_time() + loadtest::config::GRACE + Duration::from_secs(2),
        "took {took:?}"
    );
    let errors = errors(&report);
    let timeouts = errors
        .get(&(RequestKind::Master, "timeout".to_string()))
        .copied()
        .unwrap_or(0);
    assert!(timeouts >= 5, "{errors:?}");
    assert_eq!(errors.len(), 1, "only master timeouts: {errors:?}");
    assert_eq!(report.total_errors, timeouts);
    assert_eq!(report.viewers.started, 5);
    assert_eq!(report.viewers.played, 0);
    assert_eq!(report.bytes, 0);

    // A request limit longer than the run: requests are abandoned at the deadline.
    let mut patient = config(format!("http://{addr}/hls/live.m3u8"), 5, 0.0, 1.0);
    patient.timeout = Duration::from_secs(120);
    let (report, took) = run(&patient).await;
    assert!(
        took < patient.run_time() + loadtest::config::GRACE + Duration::from_secs(1),
        "took {took:?}"
    );
    assert_eq!(report.viewers.started, 5);
    assert_eq!(report.total_errors, 0, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_reported_as_connect_errors_without_hanging() {
    let port = testkit::net::free_port();
    let closed = config(
        format!("http://127.0.0.1:{port}/hls/live.m3u8"),
        3,
        0.0,
        1.5,
    );
    let (report, took) = run(&closed).await;
    assert!(
        took < closed.run_time() + Duration::from_secs(2),
        "took {took:?}"
    );
    let errors = errors(&report);
    let refused = errors
        .get(&(RequestKind::Master, "connect".to_string()))
        .copied()
        .unwrap_or(0);
    assert!(refused >= 3, "{errors:?}");
    assert_eq!(errors.len(), 1, "only connect errors: {errors:?}");
    assert_eq!(report.kind(RequestKind::Master).count, refused);
    assert_eq!(report.viewers.played, 0);
}

/// An ended playlist of `segments` segments of `secs` each.
fn vod_playlist(segments: usize, secs: f64) -> String {
    let mut text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:{}\n", secs.ceil());
    for n in 0..segments {
        text.push_str(&format!("#EXTINF:{secs:.3},\nseg{n}.ts\n"));
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text
}

/// Serves `vod_playlist(segments, secs)` at `/vod.m3u8`, and each segment after `delay`.
async fn vod_server(segments: usize, secs: f64, delay: Duration) -> SocketAddr {
    let playlist = vod_playlist(segments, secs);
    serve(
        Router::new()
            .route("/vod.m3u8", get(move || async move { playlist }))
            .route(
                "/{segment}",
                get(move || async move {
                    tokio::time::sleep(delay).await;
                    vec![0x47u8; 2000]
                }),
            ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_that_arrive_later_than_real_time_are_counted_as_stalls() {
    // 0.5 s segments served 1 s after they are asked for: after the first, every one
    // arrives about 0.5 s after the buffer ran dry.
    let slow = vod_server(6, 0.5, Duration::from_secs(1)).await;
    let (report, _) = run(&config(format!("http://{slow}/vod.m3u8"), 2, 0.0, 20.0)).await;
    assert_eq!(report.total_errors, 0, "{:?}", report.errors);
    assert_eq!(report.viewers.reached_end_of_stream, 2);
    for viewer in &report.viewer_details {
        assert_eq!(viewer.segments, 6, "{viewer:?}");
        assert!(viewer.stalls >= 4, "{viewer:?}");
    }
    assert!(report.stalls.count >= 8, "{:?}", report.stalls);
    assert!(report.stalls.seconds >= 8.0 * 0.4, "{:?}", report.stalls);
    assert_eq!(report.viewers.with_stalls, 2);

    // The same without the delay, with 2 s segments: no stall.
    let fast = vod_server(6, 2.0, Duration::ZERO).await;
    let (report, _) = run(&config(format!("http://{fast}/vod.m3u8"), 2, 0.0, 20.0)).await;
    assert_eq!(report.total_errors, 0, "{:?}", report.errors);
    assert_eq!(report.media.segments, 12);
    assert_eq!(report.stalls.count, 0, "{:?}", report.viewer_details);
}

// ---------------------------------------------------------------------------------------------
// LL-HLS: 1 s segments of four 0.25 s parts, eight segments in all, the first two already
// there when the server starts; the playlist lists the last four segments, the parts of the
// last two and of the one in progress, and a preload hint for the next part.

const PART_SECS: f64 = 0.25;
const PARTS: u64 = 4;
const SEGMENTS: u64 = 8;
const PREROLL_SECS: f64 = 2.0;

struct LowLatency {
    start: Instant,
    /// Requests per file name.
    requests: Mutex<HashMap<String, u32>>,
    /// Query strings of playlist requests.
    queries: Mutex<Vec<String>>,
    /// Part requests that came before the part existed (preload hints).
    early: AtomicU32,
}

impl LowLatency {
    fn available(&self) -> u64 {
        ((self.start.elapsed().as_secs_f64() / PART_SECS) as u64).min(SEGMENTS * PARTS)
    }

    /// Holds until `parts` parts exist, for at most three target durations.
    async fn wait_for(&self, parts: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.available() < parts {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    fn playlist(&self) -> String {
        let available = self.available();
        let complete = available / PARTS;
        let ended = available == SEGMENTS * PARTS;
        let first = complete.saturating_sub(4);
        let part = |m: u64, p: u64| {
            let independent = if p.is_multiple_of(2) {
                ",INDEPENDENT=YES"
            } else {
                ""
            };
            format!("#EXT-X-PART:DURATION={PART_SECS},URI=\"seg{m}.{p}.mp4\"{independent}\n")
        };
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.75\n\
             #EXT-X-PART-INF:PART-TARGET={PART_SECS}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-MAP:URI=\"init.mp4\"\n"
        );
        for m in first..complete {
            if m + 2 >= complete {
                for p in 0..PARTS {
                    text.push_str(&part(m, p));
                }
            }
            text.push_str(&format!("#EXTINF:1.0,\nseg{m}.mp4\n"));
        }
        if ended {
            text.push_str("#EXT-X-ENDLIST\n");
        } else {
            let trailing = available % PARTS;
            for p in 0..trailing {
                text.push_str(&part(complete, p));
            }
            text.push_str(&format!(
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg{complete}.{trailing}.mp4\"\n"
            ));
        }
        text
    }

    fn count(&self, file: &str) -> u32 {
        self.requests
            .lock()
            .unwrap()
            .get(file)
            .copied()
            .unwrap_or(0)
    }
}

async fn ll_playlist(
    State(ll): State<Arc<LowLatency>>,
    Query(query): Query<HashMap<String, String>>,
) -> String {
    if let Some(msn) = query.get("_HLS_msn").and_then(|m| m.parse::<u64>().ok()) {
        let mut pairs: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        ll.queries.lock().unwrap().push(pairs.join("&"));
        // Part P of segment M is part M*4+P overall; a P past the segment's last part is
        // part 0 of the next (8216bis 6.2.5.2), which this numbering gives for free.
        let needed = match query.get("_HLS_part").and_then(|p| p.parse::<u64>().ok()) {
            Some(part) => msn * PARTS + part + 1,
            None => (msn + 1) * PARTS,
        };
        ll.wait_for(needed.min(SEGMENTS * PARTS)).await;
    }
    ll.playlist()
}

async fn ll_media(State(ll): State<Arc<LowLatency>>, Path(file): Path<String>) -> Response {
    *ll.requests.lock().unwrap().entry(file.clone()).or_default() += 1;
    let name = file.trim_end_matches(".mp4");
    if name == "init" {
        return vec![0u8; 100].into_response();
    }
    let numbers: Vec<u64> = name
        .trim_start_matches("seg")
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    let available = ll.available();
    match numbers[..] {
        [m] if available >= (m + 1) * PARTS => vec![0u8; 4000].into_response(),
        [m, p] => {
            let index = m * PARTS + p;
            if index < available {
                vec![0u8; 1000].into_response()
            } else if index == available {
                ll.early.fetch_add(1, Ordering::Relaxed);
                if ll.wait_for(index + 1).await {
                    vec![0u8; 1000].into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            } else {
                StatusCode::NOT_FOUND.into_response()
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_viewers_use_blocking_reloads_and_fetch_each_part_once() {
    let ll = Arc::new(LowLatency {
        start: Instant::now() - Duration::from_secs_f64(PREROLL_SECS),
        requests: Mutex::new(HashMap::new()),
        queries: Mutex::new(Vec::new()),
        early: AtomicU32::new(0),
    });
    let addr = serve(
        Router::new()
            .route("/live.m3u8", get(ll_playlist))
            .route("/{file}", get(ll_media))
            .with_state(ll.clone()),
    )
    .await;
    let viewers = 3;
    let (report, _) = run(&config(
        format!("http://{addr}/live.m3u8"),
        viewers,
        0.3,
        20.0,
    ))
    .await;

    assert_eq!(report.total_errors, 0, "{:?}", report.errors);
    assert_eq!(report.viewers.reached_end_of_stream, viewers);
    let queries = ll.queries.lock().unwrap().clone();
    assert!(queries.len() >= 10, "{queries:?}");
    for query in &queries {
        assert!(
            query.contains("_HLS_msn=") && query.contains("_HLS_part="),
            "{query}"
        );
    }
    assert_eq!(
        report.kind(RequestKind::BlockingPlaylist).count,
        queries.len() as u64
    );
    assert!(ll.early.load(Ordering::Relaxed) > 0, "no preload hint used");
    assert_eq!(ll.count("init.mp4"), viewers);
    assert_eq!(report.kind(RequestKind::Init).count, u64::from(viewers));

    let requests = ll.requests.lock().unwrap().clone();
    for (file, count) in &requests {
        assert!(*count <= viewers, "{file} fetched {count} times");
    }
    // Once every viewer is at the live edge, each segment reaches each viewer exactly once:
    // whole, or as all of its parts.
    for m in 3..SEGMENTS {
        let first = ll.count(&format!("seg{m}.0.mp4"));
        assert_eq!(
            ll.count(&format!("seg{m}.mp4")) + first,
            viewers,
            "segment {m}: {requests:?}"
        );
        for p in 1..PARTS {
            assert_eq!(
                ll.count(&format!("seg{m}.{p}.mp4")),
                first,
                "segment {m} part {p}: {requests:?}"
            );
        }
    }
    let parts: u32 = requests
        .iter()
        .filter(|(f, _)| f.matches('.').count() == 2)
        .map(|(_, c)| c)
        .sum();
    assert!(parts > 0);
    assert_eq!(report.kind(RequestKind::Part).count, u64::from(parts));
    assert_eq!(report.media.parts, u64::from(parts));
}
