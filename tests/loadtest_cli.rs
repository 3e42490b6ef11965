//! `spherecast loadtest` through the real binary: against a real `spherecast up` fed by
//! ffmpeg (every listed segment downloaded once per viewer, as the origin's own request
//! counter confirms), after thousands of clients that connect and vanish, and its hard
//! limits refused with clear messages.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use testkit::clip;
use testkit::hls::parse_media;
use testkit::http::{get, metric, wait_until};
use testkit::up::Spherecast;

fn loadtest(args: &[&str]) -> Output {
    Command::new(testkit::up::binary())
        .arg("loadtest")
        .args(args)
        .env_remove("SPHERECAST_LOADTEST_URL")
        .output()
        .expect("spherecast runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn segment_requests(server: &Spherecast) -> f64 {
    let metrics = get(&server.http_url("/metrics")).text();
    metric(
        &metrics,
        "spherecast_origin_http_requests_total{kind=\"segment\"}",
    )
    .unwrap_or_else(|| panic!("no segment request counter:\n{metrics}"))
}

/// Starts `spherecast up`, pushes `seconds` of 320x240 test pattern with a 2 s GOP to
/// `name`, and waits until the live playlist lists three segments.
fn live_origin(data: &Path, name: &str, seconds: f64) -> (Spherecast, std::process::Child) {
    let server = Spherecast::up(data, &[]).unwrap();
    let push = clip::push_test_pattern(&server.rtmp_url(name), 320, 240, 30, seconds, 60).unwrap();
    wait_until(
        &server.http_url(&format!("/hls/{name}_src/index.m3u8")),
        Duration::from_secs(30),
        |r| r.status == 200 && parse_media(&r.text()).segments.len() >= 3,
    );
    (server, push)
}

#[test]
fn viewers_of_a_live_origin_download_every_listed_segment_once_without_errors_or_stalls() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut push) = live_origin(&tmp.path().join("data"), "load", 14.0);
    let json = tmp.path().join("report.json");
    let html = tmp.path().join("report.html");
    let viewers = 4;
    let output = loadtest(&[
        "--url",
        &server.http_url("/hls/load.m3u8"),
        "--viewers",
        &viewers.to_string(),
        "--ramp",
        "1",
        "--duration",
        "60",
        "--progress",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(push.wait().unwrap().success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("active") && stderr.contains("MB/s"),
        "no progress line: {stderr}"
    );

    let report = read_json(&json);
    assert_eq!(report["total_errors"], 0, "{}", report["errors"]);
    assert_eq!(report["stalls"]["count"], 0, "{}", report["viewer_details"]);
    assert_eq!(report["viewers"]["started"], viewers);
    assert_eq!(report["viewers"]["reached_end_of_stream"], viewers);
    assert_eq!(report["media"]["missed_segments"], 0);

    // The final playlist (with ENDLIST) names the last segment every viewer must have.
    let last = parse_media(&get(&server.http_url("/hls/load_src/index.m3u8")).text());
    assert!(last.ended);
    let last_msn: u64 = last
        .segments
        .last()
        .unwrap()
        .uri
        .trim_end_matches(".ts")
        .parse()
        .unwrap();
    let mut downloaded = 0;
    for viewer in report["viewer_details"].as_array().unwrap() {
        let first = viewer["first_msn"].as_u64().unwrap();
        assert_eq!(viewer["last_msn"], last_msn, "{viewer}");
        // A contiguous run from where it joined to the end, each segment once.
        assert_eq!(
            viewer["segments"].as_u64().unwrap(),
            last_msn - first + 1,
            "{viewer}"
        );
        assert!(viewer["played"].as_bool().unwrap());
        downloaded += viewer["segments"].as_u64().unwrap();
    }
    assert_eq!(report["media"]["segments"], downloaded);
    // What the origin counted is what the viewers report: no request was made twice.
    assert_eq!(segment_requests(&server), downloaded as f64);
    let segment = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "segment")
        .unwrap();
    assert_eq!(segment["count"], downloaded);
    assert!(segment["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(segment["bytes"].as_u64().unwrap() > downloaded * 1000);

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("No errors, no stalls."), "{page}");
    assert!(page.matches("<svg").count() >= 4);
    assert!(!page.contains("<script"), "the report is self-contained");
}

#[test]
fn a_live_origin_keeps_serving_a_viewer_after_thousands_of_clients_connect_and_vanish() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut push) = live_origin(&tmp.path().join("data"), "churn", 12.0);
    let playlist = parse_media(&get(&server.http_url("/hls/churn_src/index.m3u8")).text());
    let request = format!(
        "GET /hls/churn_src/{} HTTP/1.1\r\nHost: {}\r\n\r\n",
        playlist.segments[0].uri, server.http
    );
    let connected = testkit::net::connect_and_vanish(server.http, 2000, request.as_bytes());
    // A connection storm may overflow the accept queue for a moment (the kernel drops the
    // SYN and the client retries): nearly all must get through.
    assert!(connected >= 1900, "{connected} of 2000 connected");

    let json = tmp.path().join("report.json");
    let output = loadtest(&[
        "--url",
        &server.http_url("/hls/churn.m3u8"),
        "--viewers",
        "1",
        "--duration",
        "60",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(push.wait().unwrap().success());
    let report = read_json(&json);
    assert_eq!(report["total_errors"], 0, "{}", report["errors"]);
    assert_eq!(report["stalls"]["count"], 0);
    assert_eq!(report["viewers"]["reached_end_of_stream"], 1);
    assert!(report["media"]["segments"].as_u64().unwrap() >= 3);
    assert_eq!(report["media"]["missed_segments"], 0);
}

#[test]
fn hard_limits_are_refused_with_clear_messages_before_any_request() {
    let url = "http://127.0.0.1:9/hls/live.m3u8";
    let cases: [(&[&str], &str); 5] = [
        (
            &["--viewers", "20001"],
            "--viewers 20001 is above the limit of 20000 viewers",
        ),
        (
            &["--duration", "3000", "--ramp", "601"],
            "is 3601s, above the limit of 3600s",
        ),
        (&["--viewers", "0"], "--viewers must be at least 1"),
        (
            &["--duration=-5"],
            "--duration -5 is not a number of seconds",
        ),
        (&["--preset", "huge"], "unknown preset \"huge\""),
    ];
    for (args, message) in cases {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        let output = loadtest(&all);
        assert!(!output.status.success(), "{args:?}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        // Refused at once: no viewer started, no report line printed.
        assert!(output.stdout.is_empty(), "{args:?}: {}", text(&output));
    }
    let output = loadtest(&["--url", "rtmp://127.0.0.1/live/x", "--viewers", "1"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not an http:// or https:// URL"),
        "{}",
        text(&output)
    );
}
