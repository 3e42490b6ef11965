//! End to end on one machine: ffmpeg pushes a test pattern into `spherecast up`; the live HLS
//! is fetched over HTTP and checked with ffprobe; the finished recording lands in
//! `DATA/ingress/` with its S3 event on the embedded queue.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::clip;
use testkit::up::Spherecast;

const PUSH_SECS: f64 = 6.0;

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Polls until `url` answers 200, or panics after `limit`.
async fn wait_for_200(url: &str, limit: Duration) -> reqwest::Response {
    let deadline = Instant::now() + limit;
    loop {
        let response = get(url).await;
        if response.status() == 200 {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {} after {limit:?}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

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

fn find_recordings(dir: &Path, stream: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p: &std::path::PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{stream}-")) && n.ends_with(".flv"))
    });
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_stream_is_served_live_then_recorded_uploaded_and_announced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Spherecast::up(&data, &[]).expect("spherecast up starts");

    let mut push =
        clip::push_test_pattern(&server.rtmp_url("e2e"), 1280, 720, 30, PUSH_SECS, 60).unwrap();

    // Master playlist: codecs and resolution from the SPS and AudioSpecificConfig.
    let master = wait_for_200(&server.http_url("/hls/e2e.m3u8"), Duration::from_secs(20)).await;
    assert_eq!(
        header(&master, "content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(header(&master, "access-control-allow-origin"), "*");
    let cache = header(&master, "cache-control");
    let max_age: u64 = cache
        .strip_prefix("max-age=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("playlist Cache-Control {cache:?} is not max-age=N"));
    assert!(
        max_age <= 1,
        "playlist max-age {max_age} exceeds half the 2 s target"
    );
    let master = master.text().await.unwrap();
    assert!(master.contains("RESOLUTION=1280x720"), "{master}");
    assert!(
        master.contains("CODECS=\"avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
    assert!(master.contains("BANDWIDTH="), "{master}");
    assert!(master.contains("e2e_src/index.m3u8"), "{master}");

    // Let the push finish; the playlist then ends with EXT-X-ENDLIST.
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg push failed: {status}");
    let playlist_url = server.http_url("/hls/e2e_src/index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(10);
    let playlist = loop {
        let text = get(&playlist_url).await.text().await.unwrap();
        if text.contains("#EXT-X-ENDLIST") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no EXT-X-ENDLIST after the publisher stopped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let uris = segment_uris(&playlist);
    assert!(
        uris.len() >= 2,
        "expected several 2 s segments:\n{playlist}"
    );

    // Every segment: H.264 + AAC, a keyframe first, DTS continuing from the previous one.
    let mut previous_last: Option<f64> = None;
    for uri in &uris {
        let url = server.http_url(&format!("/hls/e2e_src/{uri}"));
        let response = get(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(header(&response, "content-type"), "video/mp2t");
        assert_eq!(header(&response, "cache-control"), "max-age=900");
        let path = tmp.path().join(uri);
        std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
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

    // The recording is finalised, uploaded to DATA/ingress and announced on the queue.
    let ingress = data.join("ingress");
    let deadline = Instant::now() + Duration::from_secs(20);
    let recording = loop {
        if let Some(found) = find_recordings(&ingress, "e2e").pop() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no recording in {} ; log:\n{}",
            ingress.display(),
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let probe = clip::probe(recording.to_str().unwrap()).unwrap();
    assert_eq!(clip::codec_names(&probe), vec!["h264", "aac"]);
    let duration = clip::packet_span_secs(recording.to_str().unwrap()).unwrap();
    assert!(
        (duration - PUSH_SECS).abs() <= 0.5,
        "recording lasts {duration} s, pushed {PUSH_SECS} s"
    );

    // The event goes on the queue after the upload: wait for it before stopping.
    let metrics_url = server.http_url("/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(&metrics_url)
        .await
        .text()
        .await
        .unwrap()
        .contains("spherecast_origin_recordings_uploaded_total 1")
    {
        assert!(
            Instant::now() < deadline,
            "the upload was never counted; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = server.stop(Duration::from_secs(15)).unwrap();
    assert!(exit.success(), "spherecast exited with {exit}");

    let queue = cloud::EmbeddedQueue::open(
        data.join("queue"),
        cloud::QueueSettings {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        },
    )
    .unwrap();
    let messages = cloud::Queue::receive(&queue, 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let cloud::S3Event::Records(records) = cloud::S3Event::decode(&messages[0].body).unwrap()
    else {
        panic!("not a records event: {}", messages[0].body)
    };
    let file_name = recording.file_name().unwrap().to_str().unwrap();
    assert_eq!(records[0].key, file_name);
    assert_eq!(records[0].event_name, "ObjectCreated:Put");
    assert_eq!(
        records[0].size,
        std::fs::metadata(&recording).unwrap().len()
    );
}
