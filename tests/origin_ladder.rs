//! The live ABR ladder at the origin, end to end: ffmpeg publishes to an application with a
//! `ladder`, and the test reads what a player would: the master playlist with the passthrough
//! and the transcoded rungs (never above the source), every rung's playlist and segments,
//! checked with ffprobe (size, audio, a keyframe at each segment start at the same instant in
//! every variant), the LL-HLS flavour with rendition reports, and a rung the machine cannot
//! keep up with leaving the master while the passthrough goes on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use testkit::clip;
use testkit::hls::{Media, parse_ll_media, parse_master, parse_media};
use testkit::http::{get, metric, wait_until};
use testkit::up::Spherecast;

fn start(dir: &Path, config: &str) -> Spherecast {
    let file = dir.join("spherecast.toml");
    std::fs::write(&file, config).unwrap();
    Spherecast::up(&dir.join("data"), &["--config", file.to_str().unwrap()]).unwrap()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn metrics(server: &Spherecast, name: &str) -> f64 {
    metric(&get(&server.http_url("/metrics")).text(), name).unwrap_or(f64::NAN)
}

/// The master's variant URIs, waiting until it lists `count` of them.
fn master_with(server: &Spherecast, stream: &str, count: usize) -> testkit::hls::Master {
    let url = server.http_url(&format!("/hls/{stream}.m3u8"));
    let fetched = wait_until(&url, Duration::from_secs(40), |r| {
        r.status == 200 && parse_master(&r.text()).variants.len() >= count
    });
    parse_master(&fetched.text())
}

fn playlist(server: &Spherecast, variant: &str) -> Media {
    parse_media(&get(&server.http_url(&format!("/hls/{variant}/index.m3u8"))).text())
}

/// Media sequence number of each segment a classic media playlist lists, by URI (`N.ts`).
fn sequences(media: &Media) -> Vec<u64> {
    media
        .segments
        .iter()
        .filter_map(|s| s.uri.strip_suffix(".ts")?.parse().ok())
        .collect()
}

/// One downloaded MPEG-TS segment as ffprobe sees it.
struct Probed {
    size: (u64, u64),
    has_audio: bool,
    /// Video packets: (PTS seconds, keyframe), presentation order.
    video: Vec<(f64, bool)>,
}

fn probe_segment(server: &Spherecast, dir: &Path, variant: &str, sequence: u64) -> Probed {
    let fetched = get(&server.http_url(&format!("/hls/{variant}/{sequence}.ts")));
    assert_eq!(fetched.status, 200, "{variant}/{sequence}.ts");
    let file = dir.join(format!("{variant}-{sequence}.ts"));
    std::fs::write(&file, &fetched.body).unwrap();
    let path = file.to_str().unwrap();
    let probe = clip::probe(path).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("{variant}/{sequence}.ts has no video"));
    assert_eq!(video["codec_name"], "h264");
    Probed {
        size: (
            video["width"].as_u64().unwrap(),
            video["height"].as_u64().unwrap(),
        ),
        has_audio: streams
            .iter()
            .any(|s| s["codec_type"] == "audio" && s["codec_name"] == "aac"),
        video: clip::video_packets(path).unwrap(),
    }
}

#[test]
fn the_default_ladder_is_listed_beside_the_source_and_every_rung_cuts_at_the_same_instants() {
    let tmp = tempfile::tempdir().unwrap();
    // The reference ladder (`_480`, `_960`, `_1920`); lag tolerance raised so a busy test
    // machine cannot drop a rung in the middle of the checks.
    let server = start(
        tmp.path(),
        "[origin.applications.abr]\n[origin.applications.abr.ladder]\nmax_lag_ms = 60000\n",
    );
    // 1280x720 at 25 fps, a keyframe every 2 s.
    let ffmpeg =
        clip::push_test_pattern(&server.rtmp_app_url("abr", "cam"), 1280, 720, 25, 20.0, 50)
            .unwrap();

    // The master: the passthrough first, then the rungs by bandwidth; `_1920` is wider than
    // the source and is not made.
    let master = master_with(&server, "cam", 3);
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "cam_src/index.m3u8",
            "cam_960/index.m3u8",
            "cam_480/index.m3u8"
        ],
        "{:?}",
        master.lines
    );
    let resolutions: Vec<&str> = master
        .variants
        .iter()
        .map(|v| v.attr("RESOLUTION").unwrap())
        .collect();
    assert_eq!(resolutions, ["1280x720", "960x540", "480x270"]);
    for variant in &master.variants {
        let codecs = variant.attr("CODECS").unwrap();
        assert!(
            codecs.contains("avc1.") && codecs.contains("mp4a.40.2"),
            "{codecs}"
        );
        assert!(variant.number("BANDWIDTH").unwrap() > 0.0);
    }
    let api: serde_json::Value =
        serde_json::from_slice(&get(&server.http_url("/api/streams/cam")).body).unwrap();
    assert_eq!(
        api["variants"],
        serde_json::json!(["cam_src", "cam_960", "cam_480"])
    );
    assert_eq!(metrics(&server, "spherecast_origin_ladder_rungs"), 2.0);

    // Wait until every variant lists three segments, then compare the ones they share.
    let variants = ["cam_src", "cam_960", "cam_480"];
    let deadline = Instant::now() + Duration::from_secs(40);
    let lists: BTreeMap<&str, Vec<u64>> = loop {
        let lists: BTreeMap<&str, Vec<u64>> = variants
            .iter()
            .map(|v| (*v, sequences(&playlist(&server, v))))
            .collect();
        if lists.values().all(|l| l.len() >= 3) {
            break lists;
        }
        assert!(Instant::now() < deadline, "{lists:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let shared: Vec<u64> = lists["cam_src"]
        .iter()
        .copied()
        .filter(|s| lists.values().all(|l| l.contains(s)))
        .collect();
    assert!(
        shared.len() >= 2,
        "the variants number their segments alike: {lists:?}"
    );
    let expected_size = BTreeMap::from([
        ("cam_src", (1280, 720)),
        ("cam_960", (960, 540)),
        ("cam_480", (480, 270)),
    ]);
    for sequence in &shared[..2] {
        let probed: BTreeMap<&str, Probed> = variants
            .iter()
            .map(|v| (*v, probe_segment(&server, tmp.path(), v, *sequence)))
            .collect();
        let src_keys: Vec<f64> = probed["cam_src"]
            .video
            .iter()
            .filter(|p| p.1)
            .map(|p| p.0)
            .collect();
        for (variant, p) in &probed {
            assert_eq!(p.size, expected_size[variant], "{variant}/{sequence}.ts");
            assert!(p.has_audio, "{variant}/{sequence}.ts has no AAC");
            let first = p.video.first().unwrap();
            assert!(
                first.1,
                "{variant}/{sequence}.ts does not start with a keyframe"
            );
            let src_first = probed["cam_src"].video[0].0;
            assert!(
                (first.0 - src_first).abs() < 0.002,
                "{variant}/{sequence}.ts starts at {} s, the source's at {src_first} s",
                first.0
            );
            let keys: Vec<f64> = p.video.iter().filter(|k| k.1).map(|k| k.0).collect();
            assert_eq!(
                keys.len(),
                src_keys.len(),
                "{variant}/{sequence}.ts keyframes"
            );
            for (k, s) in keys.iter().zip(&src_keys) {
                assert!(
                    (k - s).abs() < 0.002,
                    "{variant}: keyframe at {k} s, source at {s} s"
                );
            }
            // Whole segment of video, not a fragment.
            let span = p.video.last().unwrap().0 - first.0;
            assert!(span > 1.5, "{variant}/{sequence}.ts spans {span} s");
        }
    }

    // The publisher stops: every variant ends cleanly and the rungs are let go.
    stop(ffmpeg);
    for variant in variants {
        let url = server.http_url(&format!("/hls/{variant}/index.m3u8"));
        let ended = wait_until(&url, Duration::from_secs(30), |r| {
            r.text().contains("#EXT-X-ENDLIST")
        });
        assert_eq!(ended.status, 200, "{variant}");
    }
    assert_eq!(metrics(&server, "spherecast_origin_ladder_rungs"), 0.0);
    assert_eq!(
        metrics(&server, "spherecast_origin_ladder_rungs_dropped_total"),
        0.0
    );
    assert_eq!(
        metrics(&server, "spherecast_origin_ladder_failures_total"),
        0.0
    );
}

#[test]
fn a_rung_the_machine_cannot_keep_up_with_leaves_the_master_and_the_passthrough_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    // `_1280` at x264's slowest preset on a 1280x720 source: a few frames per second at best
    // (at 640x360 a quiet machine keeps up even with placebo).
    let server = start(
        tmp.path(),
        r#"[origin.applications.abr.ladder]
max_lag_ms = 1500
rungs = [
  { name = "_320", width = 320, video_kbps = 400 },
  { name = "_1280", width = 1280, video_kbps = 3000, preset = "placebo" },
]
"#,
    );
    let ffmpeg =
        clip::push_test_pattern(&server.rtmp_app_url("abr", "slow"), 1280, 720, 30, 40.0, 60)
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while metrics(&server, "spherecast_origin_ladder_rungs_dropped_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no rung dropped: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = server.log_text();
    assert!(
        log.contains("dropped its highest rung") && log.contains("slow_1280"),
        "{log}"
    );
    // The slow rung is out of the master and gone; the fast one and the passthrough stay.
    let master = master_with(&server, "slow", 2);
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(uris, ["slow_src/index.m3u8", "slow_320/index.m3u8"]);
    assert_eq!(
        get(&server.http_url("/hls/slow_1280/index.m3u8")).status,
        404
    );
    assert_eq!(metrics(&server, "spherecast_origin_ladder_rungs"), 1.0);
    // Both remaining variants keep growing after the drop.
    for variant in ["slow_src", "slow_320"] {
        let before = sequences(&playlist(&server, variant));
        let last = *before.last().unwrap_or(&0);
        let url = server.http_url(&format!("/hls/{variant}/index.m3u8"));
        wait_until(&url, Duration::from_secs(20), |r| {
            sequences(&parse_media(&r.text())).last() > Some(&last)
        });
    }
    stop(ffmpeg);
}

#[test]
fn an_ll_hls_ladder_reports_its_renditions_to_each_other_and_blocks_per_rung() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(
        tmp.path(),
        r#"[origin.applications.ll]
hls = "ll-hls"
[origin.applications.ll.ladder]
max_lag_ms = 60000
rungs = [{ name = "_320", width = 320, video_kbps = 400 }, { name = "_1280", width = 1280, video_kbps = 3000 }]
"#,
    );
    let ffmpeg =
        clip::push_test_pattern(&server.rtmp_app_url("ll", "low"), 640, 360, 30, 25.0, 60).unwrap();
    let master = master_with(&server, "low", 2);
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(uris, ["low_src/index.m3u8", "low_320/index.m3u8"]);

    // The rung's playlist: LL-HLS with a complete segment, reporting the passthrough.
    let url = server.http_url("/hls/low_320/index.m3u8");
    let fetched = wait_until(&url, Duration::from_secs(30), |r| {
        r.status == 200
            && !parse_ll_media(&r.text()).segments.is_empty()
            && r.text().contains("#EXT-X-RENDITION-REPORT")
    });
    let text = fetched.text();
    let rung = parse_ll_media(&text);
    assert!(
        rung.part_target.is_some() && rung.preload_hint.is_some(),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-RENDITION-REPORT:URI=\"../low_src/index.m3u8\",LAST-MSN="),
        "{text}"
    );
    let src = get(&server.http_url("/hls/low_src/index.m3u8")).text();
    assert!(
        src.contains("#EXT-X-RENDITION-REPORT:URI=\"../low_320/index.m3u8\",LAST-MSN="),
        "{src}"
    );

    // Blocking reload on the rung returns once its next part exists.
    let (msn, index) = rung.last_part().unwrap();
    let next = get(&server.http_url(&format!(
        "/hls/low_320/index.m3u8?_HLS_msn={msn}&_HLS_part={}",
        index + 1
    )));
    assert_eq!(next.status, 200, "{}", next.text());
    assert!(parse_ll_media(&next.text()).last_part().unwrap() >= (msn, index + 1));

    // Its init segment and a complete segment are 320x180 H.264 with AAC.
    let (_, _, uri) = rung.segments.last().unwrap().clone();
    let init = get(&server.http_url(&format!("/hls/low_320/{}", rung.maps[0])));
    let segment = get(&server.http_url(&format!("/hls/low_320/{uri}")));
    assert_eq!((init.status, segment.status), (200, 200));
    let file = tmp.path().join("rung.mp4");
    std::fs::write(&file, [init.body, segment.body].concat()).unwrap();
    let probe = clip::probe(file.to_str().unwrap()).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert!(streams.iter().any(|s| s["codec_name"] == "aac"));
    let packets = clip::video_packets(file.to_str().unwrap()).unwrap();
    assert!(packets[0].1, "a rung segment starts with a keyframe");
    stop(ffmpeg);
}

#[test]
fn a_source_narrower_than_every_rung_is_served_as_its_passthrough_only() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "[origin.applications.abr]\nladder = {}\n");
    let ffmpeg =
        clip::push_test_pattern(&server.rtmp_app_url("abr", "tiny"), 320, 180, 25, 8.0, 50)
            .unwrap();
    let url = server.http_url("/hls/tiny_src/index.m3u8");
    wait_until(&url, Duration::from_secs(30), |r| {
        r.text().contains(".ts\n")
    });
    let master = parse_master(&get(&server.http_url("/hls/tiny.m3u8")).text());
    assert_eq!(master.variants.len(), 1, "{:?}", master.lines);
    assert_eq!(master.variants[0].uri, "tiny_src/index.m3u8");
    assert_eq!(metrics(&server, "spherecast_origin_ladder_rungs"), 0.0);
    assert_eq!(
        metrics(&server, "spherecast_origin_ladder_failures_total"),
        0.0
    );
    assert!(server.log_text().contains("narrower than every rung"));
    stop(ffmpeg);
}
