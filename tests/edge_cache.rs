//! The edge cache: real nginx with `infra/edge/nginx.conf` in front of two real origins (the
//! primary and its backup, each with the same stream pushed by its own ffmpeg). Requests that
//! reach an origin are read from its `spherecast_origin_http_requests_total{kind=...}`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};

use testkit::clip;
use testkit::http::{Fetched, get, metric, wait_until};
use testkit::nginx::Nginx;
use testkit::up::Spherecast;

const STREAM: &str = "edge";
const VIEWERS: usize = 500;

/// Kills the ffmpeg pushes when the test ends, however it ends.
struct Pushes(Vec<Child>);

impl Drop for Pushes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn requests(origin: &Spherecast, kind: &str) -> u64 {
    let text = get(&origin.http_url("/metrics")).text();
    let name = format!("spherecast_origin_http_requests_total{{kind=\"{kind}\"}}");
    metric(&text, &name).unwrap_or_else(|| panic!("no {name} in:\n{text}")) as u64
}

/// The sequence number of the newest segment in a media playlist.
fn newest_segment(playlist: &str) -> Option<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_suffix(".ts")?.parse().ok())
        .max()
}

/// `n` GETs of `url` started together, each on its own connection; every response, and the
/// time from the first request to the last response.
fn burst(url: &str, n: usize) -> (Vec<Fetched>, Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let started = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_owned());
                tokio::spawn(async move {
                    let response = client.get(&url).send().await?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let body = response.bytes().await?.to_vec();
                    Ok::<_, reqwest::Error>(Fetched {
                        status,
                        headers,
                        body,
                    })
                })
            })
            .collect();
        let mut responses = Vec::with_capacity(n);
        for task in tasks {
            let fetched = task.await.unwrap();
            responses.push(fetched.unwrap_or_else(|e| panic!("GET {url}: {e}")));
        }
        (responses, started.elapsed())
    })
}

/// How many responses carried each `X-Cache-Status`.
fn cache_statuses(responses: &[Fetched]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in responses {
        *counts
            .entry(r.header("x-cache-status").to_owned())
            .or_default() += 1;
    }
    counts
}

fn max_age_secs(response: &Fetched) -> f64 {
    let cache_control = response.header("cache-control");
    cache_control
        .strip_prefix("max-age=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in Cache-Control: {cache_control:?}"))
}

#[test]
fn the_edge_coalesces_a_crowd_into_one_origin_request_per_object_and_fails_over_to_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let mut primary = Spherecast::start("origin", &tmp.path().join("primary"), &[], &[]).unwrap();
    let backup = Spherecast::start("origin", &tmp.path().join("backup"), &[], &[]).unwrap();
    let _pushes = Pushes(
        [&primary, &backup]
            .iter()
            .map(|o| clip::push_test_pattern(&o.rtmp_url(STREAM), 320, 240, 25, 60.0, 25).unwrap())
            .collect(),
    );
    let template = testkit::repo_root().join("infra/edge/nginx.conf");
    let (primary_addr, backup_addr) = (primary.http.to_string(), backup.http.to_string());
    let edge = Nginx::start(
        &template,
        &[
            ("PRIMARY_ORIGIN", &primary_addr),
            ("BACKUP_ORIGIN", &backup_addr),
        ],
    )
    .unwrap();

    let path = format!("/hls/{STREAM}_src/index.m3u8");
    let has_segments = |r: &Fetched| r.status == 200 && newest_segment(&r.text()).is_some();
    wait_until(
        &backup.http_url(&path),
        Duration::from_secs(20),
        has_segments,
    );
    let live = wait_until(
        &primary.http_url(&path),
        Duration::from_secs(20),
        has_segments,
    );
    // A segment cut after this point has never been asked for, through the edge or not.
    let before_live = newest_segment(&live.text()).unwrap();
    let fresh = wait_until(&primary.http_url(&path), Duration::from_secs(20), |r| {
        newest_segment(&r.text()).is_some_and(|n| n > before_live)
    });
    let segment = newest_segment(&fresh.text()).unwrap();
    let segment_path = format!("/hls/{STREAM}_src/{segment}.ts");

    // (a) A crowd asks for the new segment at once: one request reaches the origin, the
    // others wait for it on the cache lock and are served its copy.
    let backup_segments = requests(&backup, "segment");
    let origin_before = requests(&primary, "segment");
    let (responses, elapsed) = burst(&edge.url(&segment_path), VIEWERS);
    let origin_requests = requests(&primary, "segment") - origin_before;
    let statuses = cache_statuses(&responses);
    println!(
        "segment {segment_path}: {VIEWERS} requests in {elapsed:?}, {origin_requests} reached the origin, cache statuses {statuses:?}"
    );
    assert!(
        responses.iter().all(|r| r.status == 200),
        "statuses: {:?}; nginx:\n{}",
        responses.iter().map(|r| r.status).collect::<BTreeSet<_>>(),
        edge.error_log_text()
    );
    assert_eq!(
        origin_requests,
        1,
        "cache statuses {statuses:?}; nginx:\n{}",
        edge.error_log_text()
    );
    assert_eq!(statuses.get("MISS"), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get("HIT"), Some(&(VIEWERS - 1)), "{statuses:?}");
    let body = &responses[0].body;
    assert!(
        responses.iter().all(|r| &r.body == body),
        "the crowd got different bodies"
    );
    assert_eq!(responses[0].header("content-type"), "video/mp2t");
    assert_eq!(responses[0].header("cache-control"), "max-age=900");
    assert_eq!(
        &get(&primary.http_url(&segment_path)).body,
        body,
        "the edge's copy differs from the origin's segment"
    );
    assert_eq!(
        requests(&backup, "segment"),
        backup_segments,
        "the backup was asked while the primary was up"
    );

    // The same crowd for the live playlist, which the origin lets caches keep for max-age
    // (1 s with the default 2 s target duration; nginx keeps it 1 to 2 s, whole seconds).
    // Exactly the requests marked MISS (the first) or EXPIRED (the one that refreshed an
    // expired copy, while the others were served that copy as UPDATING) reach the origin;
    // refreshes are more than max-age apart, so a burst of E seconds can hold at most
    // ceil(E / max-age) + 1 of them (+1: the first, at the start of the burst).
    let backup_playlists = requests(&backup, "playlist");
    let origin_before = requests(&primary, "playlist");
    let (responses, elapsed) = burst(&edge.url(&path), VIEWERS);
    let origin_requests = requests(&primary, "playlist") - origin_before;
    let statuses = cache_statuses(&responses);
    let ttl = max_age_secs(&responses[0]);
    let allowed = (elapsed.as_secs_f64() / ttl).ceil() as u64 + 1;
    println!(
        "playlist {path}: {VIEWERS} requests in {elapsed:?} (max-age {ttl} s, at most {allowed} allowed), \
         {origin_requests} reached the origin, cache statuses {statuses:?}"
    );
    assert!(
        responses.iter().all(|r| r.status == 200),
        "statuses: {:?}; nginx:\n{}",
        responses.iter().map(|r| r.status).collect::<BTreeSet<_>>(),
        edge.error_log_text()
    );
    let fetched = statuses.get("MISS").unwrap_or(&0) + statuses.get("EXPIRED").unwrap_or(&0);
    assert_eq!(
        origin_requests, fetched as u64,
        "origin requests vs {statuses:?}"
    );
    assert!(
        (1..=allowed).contains(&origin_requests),
        "{origin_requests} origin requests in {elapsed:?} with max-age {ttl} s"
    );
    assert_eq!(statuses.get("MISS"), Some(&1), "{statuses:?}");
    assert!(statuses.get("HIT").is_some_and(|&n| n > 0), "{statuses:?}");
    let versions: BTreeSet<&Vec<u8>> = responses.iter().map(|r| &r.body).collect();
    assert!(
        versions.len() as u64 <= origin_requests,
        "{} playlist versions from {origin_requests} origin requests",
        versions.len()
    );
    assert_eq!(
        responses[0].header("content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(
        requests(&backup, "playlist"),
        backup_playlists,
        "the backup was asked while the primary was up"
    );

    // (b) The primary goes away: the edge keeps answering, from the backup.
    let backup_playlists = requests(&backup, "playlist");
    let status = primary.stop(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status:?}\n{}", primary.log_text());
    let edge_playlist = |what: &str| {
        let r = get(&edge.url(&path));
        assert_eq!(
            r.status,
            200,
            "{what}: {}; nginx:\n{}",
            r.text(),
            edge.error_log_text()
        );
        assert!(
            !r.header("x-cache-status").is_empty(),
            "{what}: no X-Cache-Status"
        );
        r
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut polls = 0;
    while requests(&backup, "playlist") == backup_playlists {
        assert!(
            Instant::now() < deadline,
            "the edge never asked the backup; nginx:\n{}",
            edge.error_log_text()
        );
        edge_playlist("playlist while failing over");
        polls += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    // The newest segment of the backup's playlist. Each origin numbers a session's segments
    // from its publish time in milliseconds, so the backup's numbers are not the primary's;
    // the one segment the edge has cached is avoided, so this one can only come from the
    // backup.
    let deadline = Instant::now() + Duration::from_secs(15);
    let newer = loop {
        let playlist = edge_playlist("playlist from the backup");
        polls += 1;
        if let Some(n) = newest_segment(&playlist.text()).filter(|&n| n != segment) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no segment but {segment} through the edge: {}",
            playlist.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let newer_path = format!("/hls/{STREAM}_src/{newer}.ts");
    let backup_before = requests(&backup, "segment");
    let first = get(&edge.url(&newer_path));
    let again = get(&edge.url(&newer_path));
    let backup_requests = requests(&backup, "segment") - backup_before;
    println!(
        "failover: {polls} playlist polls answered 200 through the edge; {newer_path} {} then {}, {backup_requests} request(s) reached the backup",
        first.header("x-cache-status"),
        again.header("x-cache-status")
    );
    assert_eq!(first.status, 200, "nginx:\n{}", edge.error_log_text());
    assert_eq!(first.header("x-cache-status"), "MISS");
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-cache-status"), "HIT");
    assert_eq!(backup_requests, 1);
    assert_eq!(first.body, again.body);
    assert_eq!(get(&backup.http_url(&newer_path)).body, first.body);
}

#[test]
fn ll_hls_blocking_reloads_through_the_edge_are_cached_per_part_and_never_answer_a_plain_request() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("ll.toml");
    std::fs::write(&config, "[origin.applications.live]\nhls = \"ll-hls\"\n").unwrap();
    let config = config.to_str().unwrap();
    let origin = Spherecast::start(
        "origin",
        &tmp.path().join("origin"),
        &["--config", config],
        &[],
    )
    .unwrap();
    let _pushes = Pushes(vec![
        clip::push_test_pattern(&origin.rtmp_url(STREAM), 320, 240, 30, 60.0, 60).unwrap(),
    ]);
    let template = testkit::repo_root().join("infra/edge/nginx.conf");
    let addr = origin.http.to_string();
    let edge = Nginx::start(
        &template,
        &[("PRIMARY_ORIGIN", &addr), ("BACKUP_ORIGIN", &addr)],
    )
    .unwrap();
    let path = format!("/hls/{STREAM}_src/index.m3u8");
    let live = wait_until(&origin.http_url(&path), Duration::from_secs(30), |r| {
        r.status == 200 && !testkit::hls::parse_ll_media(&r.text()).segments.is_empty()
    });
    let (msn, index) = testkit::hls::parse_ll_media(&live.text())
        .last_part()
        .unwrap();

    // A plain request first: under the old key (the bare URI) the blocking answers below
    // would have been mixed up with it.
    assert_eq!(get(&edge.url(&path)).status, 200);

    // A crowd blocked on the part after the newest: each gets a playlist that holds it (not
    // the copy cached for the bare URL), and the crowd is one origin request.
    let awaited = (msn, index + 2);
    let blocking = format!("{path}?_HLS_msn={}&_HLS_part={}", awaited.0, awaited.1);
    let origin_before = requests(&origin, "playlist");
    let (responses, elapsed) = burst(&edge.url(&blocking), 50);
    let origin_requests = requests(&origin, "playlist") - origin_before;
    println!(
        "{blocking}: 50 blocked requests in {elapsed:?}, {origin_requests} reached the origin, cache statuses {:?}",
        cache_statuses(&responses)
    );
    for response in &responses {
        assert_eq!(response.status, 200, "{}", edge.error_log_text());
        let answered = testkit::hls::parse_ll_media(&response.text());
        assert!(
            answered.last_part().unwrap() >= awaited,
            "a blocked request got a playlist without the part it waited for:\n{}",
            response.text()
        );
    }
    assert_eq!(
        origin_requests,
        1,
        "{:?}; nginx:\n{}",
        cache_statuses(&responses),
        edge.error_log_text()
    );

    // A plain request never gets the cached blocking answer: the origin says `no-cache` for
    // the live edge, so the edge asks it again. The blocking answer stays cached for its URL.
    let origin_before = requests(&origin, "playlist");
    let plain = get(&edge.url(&path));
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("cache-control"), "no-cache");
    assert_ne!(plain.header("x-cache-status"), "HIT");
    assert_eq!(requests(&origin, "playlist") - origin_before, 1);
    let blocked_again = get(&edge.url(&blocking));
    assert_eq!(blocked_again.header("x-cache-status"), "HIT");
    assert_eq!(blocked_again.body, responses[0].body);
}
