//! hls.js in low-latency mode, in a real headless Chromium, plays an LL-HLS stream from the
//! origin: it sees parts and blocking reload in the playlist, loads parts, and the video
//! advances at the published size.

use std::time::Duration;

use testkit::clip;
use testkit::http::wait_until;
use testkit::up::Spherecast;

#[test]
fn hls_js_in_low_latency_mode_plays_the_ll_hls_stream_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("spherecast.toml");
    std::fs::write(&config, "[origin.applications.ll]\nhls = \"ll-hls\"\n").unwrap();
    let server = Spherecast::up(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let mut push =
        clip::push_test_pattern(&server.rtmp_app_url("ll", "lowlat"), 640, 360, 30, 40.0, 60)
            .unwrap();
    wait_until(
        &server.http_url("/hls/lowlat.m3u8"),
        Duration::from_secs(20),
        |r| r.status == 200,
    );

    let url = server.http_url("");
    let seen = testkit::browser::run_script("play-llhls.mjs", &[url.as_str(), "lowlat"]);
    let _ = push.kill();
    let _ = push.wait();
    // What hls.js saw, latency estimate included, for whoever reads the test log.
    eprintln!("hls.js: {seen}");
    assert_eq!(seen["videoWidth"], 640, "{seen}");
    assert_eq!(seen["videoHeight"], 360, "{seen}");
    assert_eq!(seen["canBlockReload"], true, "{seen}");
    assert!(seen["partsInPlaylist"].as_u64().unwrap_or(0) > 0, "{seen}");
    assert!(seen["partsLoaded"].as_u64().unwrap_or(0) > 3, "{seen}");
    assert_eq!(seen["failedRequests"], serde_json::json!([]), "{seen}");
}
