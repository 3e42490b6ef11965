//! Low-latency HLS at the origin, end to end: ffmpeg publishes to an application configured
//! for LL-HLS, and the test reads what a player would: the playlist with its parts and preload
//! hint, blocking reloads, init segment, parts and segments (checked with ffprobe), while an
//! MPEG-TS application in the same server keeps working.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use testkit::clip;
use testkit::hls::{LlMedia, parse_ll_media};
use testkit::http::{get, metric, wait_until};
use testkit::rtmp::RawPublisher;
use testkit::up::Spherecast;

/// `spherecast up` with application `ll` on LL-HLS (and `live`, the default, on MPEG-TS).
fn start(dir: &Path, extra_config: &str) -> Spherecast {
    let config = dir.join("spherecast.toml");
    std::fs::write(
        &config,
        format!(
            "[origin.applications.ll]\nhls = \"ll-hls\"\npart_target = 334\nsegment_target = 2000\n{extra_config}"
        ),
    )
    .unwrap();
    Spherecast::up(&dir.join("data"), &["--config", config.to_str().unwrap()]).unwrap()
}

fn push(server: &Spherecast, app: &str, name: &str, seconds: f64) -> Child {
    clip::push_test_pattern(&server.rtmp_app_url(app, name), 640, 360, 30, seconds, 60).unwrap()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until the stream's playlist lists at least `segments` complete segments.
fn live_playlist(server: &Spherecast, name: &str, segments: usize) -> LlMedia {
    let url = server.http_url(&format!("/hls/{name}_src/index.m3u8"));
    let fetched = wait_until(&url, Duration::from_secs(30), |r| {
        r.status == 200 && parse_ll_media(&r.text()).segments.len() >= segments
    });
    parse_ll_media(&fetched.text())
}

fn playlist_url(server: &Spherecast, name: &str, query: &str) -> String {
    server.http_url(&format!("/hls/{name}_src/index.m3u8{query}"))
}

#[test]
fn an_ll_hls_application_serves_cmaf_that_ffprobe_reads_beside_a_ts_application() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "");
    let ll = push(&server, "ll", "low", 20.0);
    let ts = push(&server, "live", "classic", 20.0);
    let playlist = live_playlist(&server, "low", 2);

    // RFC 8216bis rules a player relies on.
    let part_target = playlist.part_target.expect("EXT-X-PART-INF");
    assert!((part_target - 0.334).abs() < 1e-9, "{part_target}");
    assert_eq!(playlist.server_control["CAN-BLOCK-RELOAD"], "YES");
    let hold_back: f64 = playlist.server_control["PART-HOLD-BACK"].parse().unwrap();
    assert!(hold_back >= 3.0 * part_target - 1e-9);
    assert!(!playlist.parts.is_empty());
    for part in &playlist.parts {
        assert!(part.duration <= part_target, "{part:?}");
        assert_eq!(part.independent, part.index == 0, "GOP = segment: {part:?}");
    }
    let target = playlist.target_duration.unwrap() as f64;
    for (msn, duration, _) in &playlist.segments {
        assert!(duration.round() <= target, "segment {msn}: {duration}");
    }
    let last_number: u64 = playlist.parts.last().unwrap().uri[1..]
        .trim_end_matches(".m4s")
        .parse()
        .unwrap();
    assert_eq!(
        playlist.preload_hint.as_deref(),
        Some(format!("p{}.m4s", last_number + 1).as_str())
    );
    assert!(playlist.program_date_times.len() >= playlist.segments.len());

    // Init + the first complete segment: H.264 640x360 and AAC.
    let base = "/hls/low_src/";
    let init = get(&server.http_url(&format!("{base}{}", playlist.maps[0])));
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), "video/mp4");
    assert_eq!(init.header("cache-control"), "max-age=900");
    assert_eq!(init.header("access-control-allow-origin"), "*");
    let (msn, _, uri) = playlist.segments.last().unwrap().clone();
    let segment = get(&server.http_url(&format!("{base}{uri}")));
    assert_eq!(segment.status, 200);
    assert_eq!(segment.header("content-type"), "video/mp4");
    let file = tmp.path().join("joined.mp4");
    std::fs::write(&file, [init.body.clone(), segment.body.clone()].concat()).unwrap();
    let probe = clip::probe(file.to_str().unwrap()).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["width"], 640);
    assert_eq!(video["height"], 360);
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["codec_name"], "aac");
    let seconds = clip::packet_span_secs(file.to_str().unwrap()).unwrap();
    assert!(
        (1.8..2.3).contains(&seconds),
        "{seconds} s in a 2 s segment"
    );

    // Its parts, downloaded one by one, are the segment byte for byte.
    let parts: Vec<_> = playlist.parts.iter().filter(|p| p.msn == msn).collect();
    assert!(parts.len() >= 5, "{parts:?}");
    let mut joined = Vec::new();
    for part in parts {
        let fetched = get(&server.http_url(&format!("{base}{}", part.uri)));
        assert_eq!(fetched.status, 200, "{part:?}");
        assert_eq!(fetched.header("content-type"), "video/mp4");
        joined.extend(fetched.body);
    }
    assert!(joined == segment.body, "parts differ from their segment");

    // The master playlist announces the variant; the streams API says which HLS it is.
    let master = get(&server.http_url("/hls/low.m3u8")).text();
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    assert!(master.contains("low_src/index.m3u8"), "{master}");
    let api: serde_json::Value =
        serde_json::from_slice(&get(&server.http_url("/api/streams/low")).body).unwrap();
    assert_eq!(api["hls"], "ll-hls");

    // The MPEG-TS application in the same server is untouched.
    let classic = wait_until(
        &server.http_url("/hls/classic_src/index.m3u8"),
        Duration::from_secs(20),
        |r| r.text().contains(".ts\n"),
    )
    .text();
    assert!(!classic.contains("EXT-X-PART"), "{classic}");
    let api: serde_json::Value =
        serde_json::from_slice(&get(&server.http_url("/api/streams/classic")).body).unwrap();
    assert_eq!(api["hls"], "ts");

    // One namespace: a live name cannot be published again in the other application.
    let mut again = push(&server, "live", "low", 3.0);
    let status = again.wait().unwrap();
    assert!(
        !status.success(),
        "a second publisher got a name live in another application"
    );
    stop(ll);
    stop(ts);
}

#[test]
fn a_blocking_reload_returns_once_the_awaited_part_exists_and_far_future_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "");
    let ffmpeg = push(&server, "ll", "block", 30.0);
    let now = live_playlist(&server, "block", 1);
    let (msn, index) = now.last_part().unwrap();

    // The next part of the growing segment: the answer lists it (or the segment moved on).
    let next = get(&playlist_url(
        &server,
        "block",
        &format!("?_HLS_msn={msn}&_HLS_part={}", index + 1),
    ));
    assert_eq!(next.status, 200, "{}", next.text());
    let answered = parse_ll_media(&next.text());
    assert!(
        answered.last_part().unwrap() >= (msn, index + 1),
        "{}",
        next.text()
    );
    assert!(
        next.header("cache-control").starts_with("max-age="),
        "{:?}",
        next.headers
    );

    // The hinted part: the request waits until the part is complete, then gets its bytes.
    let hinted = answered.preload_hint.clone().unwrap();
    let part = get(&server.http_url(&format!("/hls/block_src/{hinted}")));
    assert_eq!(part.status, 200);
    assert_eq!(&part.body[4..8], b"moof");
    let later = parse_ll_media(&get(&playlist_url(&server, "block", "")).text());
    assert!(
        later.parts.iter().any(|p| p.uri == hinted),
        "the hinted part is listed now"
    );
    // A part further ahead than the hint is not announced: no wait, 404.
    let number: u64 = later.preload_hint.unwrap()[1..]
        .trim_end_matches(".m4s")
        .parse()
        .unwrap();
    assert_eq!(
        get(&server.http_url(&format!("/hls/block_src/p{}.m4s", number + 5))).status,
        404
    );

    // The next whole segment.
    let segment = get(&playlist_url(
        &server,
        "block",
        &format!("?_HLS_msn={}", msn + 1),
    ));
    assert_eq!(segment.status, 200);
    assert!(
        parse_ll_media(&segment.text())
            .segments
            .iter()
            .any(|s| s.0 == msn + 1)
    );

    // More than two segments ahead, or malformed: 400 at once.
    let last = parse_ll_media(&get(&playlist_url(&server, "block", "")).text()).last_msn();
    for query in [
        format!("?_HLS_msn={}", last + 3),
        format!("?_HLS_msn={}&_HLS_part=0", last + 40),
        "?_HLS_part=1".into(),
        "?_HLS_msn=abc".into(),
        format!("?_HLS_msn={}&_HLS_part=500", last + 1),
    ] {
        let refused = get(&playlist_url(&server, "block", &query));
        assert_eq!(refused.status, 400, "{query}: {}", refused.text());
    }
    stop(ffmpeg);
}

#[test]
fn a_publisher_stopping_during_a_blocked_reload_ends_the_playlist_for_the_waiter() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "");
    let ffmpeg = push(&server, "ll", "ending", 60.0);
    let now = live_playlist(&server, "ending", 1);
    // Two segments ahead: at least 2 s away, so the publisher stops first.
    let url = playlist_url(
        &server,
        "ending",
        &format!("?_HLS_msn={}", now.last_msn() + 2),
    );
    let waiter = std::thread::spawn(move || get(&url));
    let hint = server.http_url(&format!("/hls/ending_src/{}", now.preload_hint.unwrap()));
    wait_until(&server.http_url("/metrics"), Duration::from_secs(5), |r| {
        metric(&r.text(), "spherecast_origin_blocked_requests") == Some(1.0)
    });
    stop(ffmpeg);
    let answer = waiter.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let ended = parse_ll_media(&answer.text());
    assert!(ended.ended, "{}", answer.text());
    assert!(ended.preload_hint.is_none());
    // A part that will never be made is not waited for.
    let after = parse_ll_media(&get(&playlist_url(&server, "ending", "")).text());
    let never = after.parts.last().unwrap().uri[1..]
        .trim_end_matches(".m4s")
        .parse::<u64>()
        .unwrap()
        + 1;
    assert_eq!(
        get(&server.http_url(&format!("/hls/ending_src/p{never}.m4s"))).status,
        404
    );
    // The hint seen while live was either made before the end or answered 404.
    assert!([200, 404].contains(&get(&hint).status));
}

/// Sends a blocking playlist request on a raw socket and leaves it waiting.
fn blocked_request(server: &Spherecast, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(server.http).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nHost: origin\r\n\r\n").unwrap();
    socket
}

#[test]
fn viewers_that_vanish_while_blocked_free_their_waiters_and_the_limit_holds() {
    let tmp = tempfile::tempdir().unwrap();
    // 6 s segments: a request two segments ahead waits at least 6 s for the media.
    let server = start(
        tmp.path(),
        "[origin.applications.slow]\nhls = \"ll-hls\"\nsegment_target = 6000\n[origin.hls]\nmax_blocked_requests = 200\n",
    );
    let mut ffmpeg = clip::push_test_pattern(
        &server.rtmp_app_url("slow", "crowd"),
        320,
        180,
        30,
        60.0,
        180,
    )
    .unwrap();
    let now = live_playlist(&server, "crowd", 0);
    let awaited = now.last_msn() + 2;
    let path = format!("/hls/crowd_src/index.m3u8?_HLS_msn={awaited}");
    let sockets: Vec<TcpStream> = (0..200).map(|_| blocked_request(&server, &path)).collect();
    let metrics_url = server.http_url("/metrics");
    wait_until(&metrics_url, Duration::from_secs(5), |r| {
        metric(&r.text(), "spherecast_origin_blocked_requests") == Some(200.0)
    });

    // One more is refused at once: the limit holds.
    let refused = get(&server.http_url(&path));
    assert_eq!(refused.status, 503, "{}", refused.text());

    // Every viewer vanishes; their waiters go before the awaited segment exists.
    drop(sockets);
    wait_until(&metrics_url, Duration::from_secs(5), |r| {
        metric(&r.text(), "spherecast_origin_blocked_requests") == Some(0.0)
    });
    let still = parse_ll_media(&get(&server.http_url("/hls/crowd_src/index.m3u8")).text());
    assert!(
        still.segments.iter().all(|s| s.0 < awaited),
        "the awaited segment came first; the waiters may have been answered, not dropped"
    );

    // And the origin still answers a blocked request properly.
    let mut waiting = blocked_request(&server, &path);
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let mut answer = String::new();
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while !answer.contains("#EXT-X-ENDLIST") {
        let n = waiting.read(&mut buf).unwrap();
        assert!(n > 0, "closed without the final playlist: {answer}");
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_bad_application_config_stops_the_start_and_says_what_to_change() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    for (text, expected) in [
        (
            "[origin.applications.ll]\nhls = \"ll-hls\"\npart_target = 2000\n",
            "part_target (2s) must be shorter than segment_target (2s)",
        ),
        (
            "[origin.applications.ll]\nhls = \"dash\"\n",
            "unknown variant `dash`",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let addrs = testkit::net::free_addrs(2);
        // `timeout` keeps a server that wrongly starts from hanging the test.
        let out = std::process::Command::new("timeout")
            .arg("30")
            .arg(testkit::up::binary())
            .arg("up")
            .arg("--data")
            .arg(tmp.path().join("data"))
            .arg("--config")
            .arg(&config)
            .args([
                "--rtmp",
                &addrs[0].to_string(),
                "--http",
                &addrs[1].to_string(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

#[test]
fn a_stalled_publisher_makes_a_blocked_reload_give_up_with_503_after_three_target_durations() {
    let tmp = tempfile::tempdir().unwrap();
    // The default application switched to LL-HLS; the publisher stays connected but silent
    // for less than the idle timeout.
    let config = tmp.path().join("spherecast.toml");
    std::fs::write(
        &config,
        "[origin]\nidle_timeout = 30\n[origin.applications.live]\nhls = \"ll-hls\"\n",
    )
    .unwrap();
    let server = Spherecast::up(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 3.0).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "stall").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    let now = live_playlist(&server, "stall", 1);
    let (msn, index) = now.last_part().unwrap();
    let started = std::time::Instant::now();
    let url = playlist_url(
        &server,
        "stall",
        &format!("?_HLS_msn={msn}&_HLS_part={}", index + 1),
    );
    let answer = get(&url);
    let waited = started.elapsed();
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(
        answer.text().contains("three target durations"),
        "{}",
        answer.text()
    );
    // It waited for the media (no early answer); the bound is 3 x EXT-X-TARGETDURATION.
    let bound = Duration::from_secs(3 * now.target_duration.unwrap());
    assert!(
        waited >= bound,
        "answered after {waited:?}, before {bound:?}"
    );
    let metrics = get(&server.http_url("/metrics")).text();
    assert_eq!(
        metric(&metrics, "spherecast_origin_blocked_requests_failed_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "spherecast_origin_blocked_requests"),
        Some(0.0)
    );
    drop(publisher);
}
