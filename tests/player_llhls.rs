//! hls.js in low-latency mode, in a real headless Chromium, plays an LL-HLS stream from the
//! origin: it sees parts and blocking reload in the playlist, loads parts, and the video
//! advances at the published size.

use std::process::Command;
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

    let script = testkit::repo_root().join("web/tests/play-llhls.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(server.http_url(""))
        .arg("lowlat")
        .output()
        .expect("node runs (scripts/setup.sh installs it with playwright-core and chromium)");
    let _ = push.kill();
    let _ = push.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hls.js did not play the LL-HLS stream:\n{stdout}\n{stderr}"
    );
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    // What hls.js saw, latency estimate included, for whoever reads the test log.
    eprintln!("hls.js: {seen}");
    assert_eq!(seen["videoWidth"], 640, "{seen}");
    assert_eq!(seen["videoHeight"], 360, "{seen}");
    assert_eq!(seen["canBlockReload"], true, "{seen}");
    assert!(seen["partsInPlaylist"].as_u64().unwrap_or(0) > 0, "{seen}");
    assert!(seen["partsLoaded"].as_u64().unwrap_or(0) > 3, "{seen}");
    assert_eq!(seen["failedRequests"], serde_json::json!([]), "{seen}");
}
