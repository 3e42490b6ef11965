//! The start page in a real headless Chromium: a live stream pushed by ffmpeg is listed and
//! its player (hls.js, served by the origin) decodes and plays it.

use std::time::Duration;

use testkit::clip;
use testkit::http::wait_until;
use testkit::up::Spherecast;

#[test]
fn the_start_page_plays_a_live_stream_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let mut push =
        clip::push_test_pattern(&server.rtmp_url("browser"), 640, 360, 30, 25.0, 60).unwrap();
    wait_until(
        &server.http_url("/hls/browser.m3u8"),
        Duration::from_secs(20),
        |r| r.status == 200,
    );

    let url = server.http_url("/");
    let seen = testkit::browser::run_script("play-live.mjs", &[url.as_str(), "browser"]);
    let _ = push.kill();
    let _ = push.wait();
    assert_eq!(seen["videoWidth"], 640, "{seen}");
    assert_eq!(seen["videoHeight"], 360, "{seen}");
    assert!(
        seen["facts"].as_str().unwrap_or("").contains("640x360"),
        "{seen}"
    );
}
