//! End to end on one machine: ffmpeg pushes a test pattern into `spherecast up`; the live HLS
//! is fetched over HTTP and checked with ffprobe; the finished recording lands in
//! `DATA/ingress/`, its S3 event goes on the embedded queue, and the worker turns it into a
//! ladder in `DATA/egress/`.

use std::time::Duration;

use serde_json::Value;
use testkit::clip;
use testkit::http::{get, metric, wait_until};
use testkit::up::Spherecast;

const PUSH_SECS: f64 = 6.0;

/// Segment URIs of a media playlist, in order.
fn segment_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect()
}

/// First and last video DTS (seconds) of a probed segment, and whether it starts on a keyframe.
fn video_span(probe: &Value) -> (f64, f64, bool) {
    let video_index = probe["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .and_then(|s| s["index"].as_i64())
        .expect("segment has a video stream");
    let packets: Vec<&Value> = probe["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|p| p["stream_index"].as_i64() == Some(video_index))
        .collect();
    let dts = |p: &Value| {
        p["dts_time"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .expect("dts_time")
    };
    let first = packets.first().expect("segment has video packets");
    let keyframe = first["flags"].as_str().unwrap_or("").contains('K');
    (dts(first), dts(packets.last().unwrap()), keyframe)
}

#[test]
fn a_pushed_stream_is_served_live_then_recorded_and_published_as_a_vod_ladder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let worker_http = testkit::net::free_addr().to_string();
    let worker_url = |path: &str| format!("http://{worker_http}{path}");
    let mut server =
        Spherecast::up(&data, &["--worker-http", &worker_http]).expect("spherecast up starts");

    let mut push =
        clip::push_test_pattern(&server.rtmp_url("e2e"), 1280, 720, 30, PUSH_SECS, 60).unwrap();

    // Master playlist: codecs and resolution from the SPS and AudioSpecificConfig.
    let master = wait_until(
        &server.http_url("/hls/e2e.m3u8"),
        Duration::from_secs(20),
        |r| r.status == 200,
    );
    assert_eq!(
        master.header("content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(master.header("access-control-allow-origin"), "*");
    let cache = master.header("cache-control");
    let max_age: u64 = cache
        .strip_prefix("max-age=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("playlist Cache-Control {cache:?} is not max-age=N"));
    assert!(
        max_age <= 1,
        "playlist max-age {max_age} exceeds half the 2 s target"
    );
    let master = master.text();
    assert!(master.contains("RESOLUTION=1280x720"), "{master}");
    assert!(
        master.contains("CODECS=\"avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
    assert!(master.contains("BANDWIDTH="), "{master}");
    assert!(master.contains("e2e_src/index.m3u8"), "{master}");

    // Let the push finish; the playlist then ends with EXT-X-ENDLIST.
    let status = push.wait().unwrap();
    assert!(status.success(), "ffmpeg push failed: {status}");
    let playlist = wait_until(
        &server.http_url("/hls/e2e_src/index.m3u8"),
        Duration::from_secs(10),
        |r| r.text().contains("#EXT-X-ENDLIST"),
    )
    .text();
    let uris = segment_uris(&playlist);
    assert!(
        uris.len() >= 2,
        "expected several 2 s segments:\n{playlist}"
    );

    // Every segment: H.264 + AAC, a keyframe first, DTS continuing from the previous one.
    let mut previous_last: Option<f64> = None;
    for uri in &uris {
        let response = get(&server.http_url(&format!("/hls/e2e_src/{uri}")));
        assert_eq!(response.status, 200, "{uri}");
        assert_eq!(response.header("content-type"), "video/mp2t");
        assert_eq!(response.header("cache-control"), "max-age=900");
        let path = tmp.path().join(uri);
        std::fs::write(&path, &response.body).unwrap();
        let probe = clip::probe_packets(path.to_str().unwrap()).unwrap();
        assert_eq!(probe["stderr"], "", "ffprobe complained about {uri}");
        let codecs = clip::codec_names(&probe);
        assert!(
            codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()),
            "{uri}: {codecs:?}"
        );
        let (first, last, keyframe) = video_span(&probe);
        assert!(keyframe, "{uri} does not start with a keyframe");
        if let Some(prev) = previous_last {
            let gap = first - prev;
            assert!(
                gap > 0.0 && gap < 0.1,
                "{uri}: DTS gap {gap:.3} s from the previous segment"
            );
        }
        previous_last = Some(last);
    }

    // The recording is finalised, uploaded to DATA/ingress and announced on the queue; the
    // event goes out after the upload, so wait for the counter before stopping.
    let recording =
        clip::wait_for_flv_files(&data.join("ingress"), "e2e-", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log_text()))
            .pop()
            .unwrap();
    let probe = clip::probe(recording.to_str().unwrap()).unwrap();
    assert_eq!(clip::codec_names(&probe), vec!["h264", "aac"]);
    let duration = clip::packet_span_secs(recording.to_str().unwrap()).unwrap();
    assert!(
        (duration - PUSH_SECS).abs() <= 0.5,
        "recording lasts {duration} s, pushed {PUSH_SECS} s"
    );
    wait_until(&server.http_url("/metrics"), Duration::from_secs(10), |r| {
        metric(&r.text(), "spherecast_origin_recordings_uploaded_total") == Some(1.0)
    });

    // The worker inside `up` takes the event off the embedded queue and publishes the ladder
    // to DATA/egress/STEM/, master playlist last.
    let file_name = recording.file_name().unwrap().to_str().unwrap().to_owned();
    let stem = file_name.trim_end_matches(".flv");
    let ladder = data.join("egress").join(stem);
    wait_until(&worker_url("/metrics"), Duration::from_secs(180), |r| {
        metric(&r.text(), "spherecast_worker_jobs_succeeded_total") == Some(1.0)
    });
    assert!(
        ladder.join("master.m3u8").exists(),
        "log:\n{}",
        server.log_text()
    );
    // The player is published beside the ladders, byte for byte what the origin serves.
    let player = data.join("egress").join("player");
    for (file, path) in [
        ("index.html", "/player/"),
        ("player.js", "/player/player.js"),
        ("hls.min.js", "/player/hls.min.js"),
    ] {
        let published = std::fs::read(player.join(file))
            .unwrap_or_else(|e| panic!("player/{file} not in the egress folder: {e}"));
        let served = reqwest::blocking::get(server.http_url(path))
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(published, served.to_vec(), "player/{file}");
        assert!(!published.is_empty());
    }
    let reports = testkit::hls::verify_ladder(&ladder, 6);
    let mut sizes: Vec<Option<(u64, u64)>> = reports.iter().map(|r| r.size).collect();
    sizes.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        sizes,
        vec![
            Some((1280, 720)),
            Some((854, 480)),
            Some((640, 360)),
            Some((426, 240)),
            Some((320, 180)),
            None
        ],
        "the default ladder up to the 720p source, then audio"
    );
    let status = get(&worker_url("/status"));
    assert_eq!(status.status, 200);
    let status: Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(status["busy"], false, "{status}");
    assert!(server.log_text().contains("Ladder published."));

    let exit = server.stop(Duration::from_secs(15)).unwrap();
    assert!(exit.success(), "spherecast exited with {exit}");

    // The message was deleted once the ladder was published.
    let queue = cloud::EmbeddedQueue::open(
        data.join("queue"),
        cloud::QueueSettings {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let depth = runtime.block_on(cloud::Queue::depth(&queue)).unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 0), "queue is empty");
}
