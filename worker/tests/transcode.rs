//! The GStreamer ladder, checked from the outside with ffprobe: sizes, profiles, key frames at
//! the same instants in every rendition, segment durations, bitrates, and a master playlist
//! whose attributes match the media.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use testkit::clip::{make_clip, probe};
use testkit::hls::{parse_master, parse_media, verify_ladder};
use worker::WorkerConfig;
use worker::transcode::{TranscodeError, transcode_file};

/// The default ladder with short segments, so a 5 s clip spans several.
fn short_segments() -> WorkerConfig {
    WorkerConfig {
        segment_secs: 2,
        keyframe_interval_secs: 1,
        ..WorkerConfig::default()
    }
}

fn run(
    config: &WorkerConfig,
    input: &Path,
    out: &Path,
) -> Result<worker::transcode::Ladder, TranscodeError> {
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    transcode_file(
        config,
        &name,
        input,
        out,
        &AtomicBool::new(false),
        &mut |_| {},
    )
}

#[test]
fn a_720p_recording_becomes_an_aligned_ladder_with_an_honest_master() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("talk.flv");
    make_clip(&input, Some((1280, 720, 30)), true, 5.0).unwrap();
    let out = dir.path().join("out");
    let ladder = run(&short_segments(), &input, &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("master.m3u8")).unwrap(),
        ladder.master
    );

    // Generic rules (durations, key frames aligned, BANDWIDTH measured, CODECS from the SPS).
    let reports = verify_ladder(&out, 2);
    let expected: BTreeMap<&str, (u64, u64, f64)> = [
        ("720p", (1280, 720, 2136.0)),
        ("480p", (854, 480, 1080.0)),
        ("360p", (640, 360, 500.0)),
        ("240p", (426, 240, 250.0)),
        ("180p", (320, 180, 110.0)),
    ]
    .into_iter()
    .collect();
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names.len(),
        6,
        "five rungs up to the source, and audio: {names:?}"
    );
    assert_eq!(names[5], "audio");
    for r in &reports {
        assert!(r.has_audio, "{}: audio present", r.name);
        assert_eq!(r.segments, 3, "{}: 5 s in 2 s segments", r.name);
        let Some(&(w, h, kbps)) = expected.get(r.name.as_str()) else {
            assert_eq!(r.name, "audio");
            continue;
        };
        assert_eq!(r.size, Some((w, h)), "{}", r.name);
        assert_eq!(r.profile.as_deref(), Some("High"), "{}", r.name);
        let measured = r.video_bps / 1000.0;
        assert!(
            (measured / kbps - 1.0).abs() <= 0.15,
            "{}: {measured:.0} kbit/s for a {kbps} kbit/s rung",
            r.name
        );
    }

    // The variant nearest 2 Mbit/s comes first (players start there), the rest from the
    // highest bitrate down, the audio-only one last.
    let master = parse_master(&ladder.master);
    let bandwidth = |v: &testkit::hls::VariantEntry| v.number("BANDWIDTH").unwrap();
    let nearest = master.variants[..5]
        .iter()
        .min_by_key(|v| (bandwidth(v) as i64 - 2_000_000).abs())
        .unwrap();
    assert_eq!(master.variants[0].uri, nearest.uri, "{}", ladder.master);
    let rest: Vec<f64> = master.variants[1..5].iter().map(bandwidth).collect();
    assert!(rest.windows(2).all(|w| w[0] > w[1]), "{}", ladder.master);
    assert_eq!(master.variants[5].attr("CODECS"), Some("mp4a.40.2"));
    assert_eq!(master.variants[0].attr("FRAME-RATE"), Some("30.000"));

    // I-frame playlists: one entry per key frame, each range on a TS packet boundary.
    assert_eq!(master.iframe_variants.len(), 5);
    for r in reports.iter().filter(|r| r.size.is_some()) {
        let text = std::fs::read_to_string(out.join(&r.name).join("iframes.m3u8")).unwrap();
        let iframes = parse_media(&text);
        let keyframes = iframes.segments.len();
        assert!(
            (5..=6).contains(&keyframes),
            "{}: one key frame a second\n{text}",
            r.name
        );
        for entry in &iframes.segments {
            let (len, off) = entry.byte_range.unwrap();
            let data = std::fs::read(out.join(&r.name).join(&entry.uri)).unwrap();
            assert_eq!(
                data[off as usize], 0x47,
                "{}: range starts on a TS packet",
                r.name
            );
            assert_eq!(len % 188, 0);
            assert!((off + len) as usize <= data.len());
        }
    }
    assert!(ladder.speed > 0.0);
}

fn two_rungs() -> WorkerConfig {
    let mut config = short_segments();
    config
        .rungs
        .retain(|r| r.name == "360p" || r.name == "180p");
    config
}

#[test]
fn audio_only_and_video_only_recordings_get_the_renditions_they_can() {
    let dir = tempfile::tempdir().unwrap();
    let audio_only = dir.path().join("radio.flv");
    make_clip(&audio_only, None, true, 3.0).unwrap();
    let ladder = run(&two_rungs(), &audio_only, &dir.path().join("a")).unwrap();
    let master = parse_master(&ladder.master);
    assert_eq!(master.variants.len(), 1, "{}", ladder.master);
    assert_eq!(master.variants[0].uri, "audio/index.m3u8");
    assert_eq!(master.variants[0].attr("CODECS"), Some("mp4a.40.2"));

    let video_only = dir.path().join("silent.mp4");
    make_clip(&video_only, Some((640, 360, 25)), false, 3.0).unwrap();
    let ladder = run(&two_rungs(), &video_only, &dir.path().join("v")).unwrap();
    let master = parse_master(&ladder.master);
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        vec!["360p/index.m3u8", "180p/index.m3u8"],
        "{}",
        ladder.master
    );
    for v in &master.variants {
        assert!(
            !v.attr("CODECS").unwrap().contains("mp4a"),
            "no audio codec listed"
        );
        assert_eq!(v.attr("FRAME-RATE"), Some("25.000"));
    }
    let probed = probe(dir.path().join("v/360p/index.m3u8").to_str().unwrap()).unwrap();
    assert!(
        probed["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["codec_type"] == "video")
    );
}

#[test]
fn files_that_are_not_media_are_permanent_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.flv");
    std::fs::write(&empty, b"").unwrap();
    let png = dir.path().join("picture.flv");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64",
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-c:v",
            "png",
        ])
        .arg(&png)
        .status()
        .unwrap();
    assert!(status.success());
    let text = dir.path().join("notes.flv");
    std::fs::write(&text, "just some words, not a video\n".repeat(100)).unwrap();
    for input in [&empty, &png, &text] {
        let err = run(&two_rungs(), input, &dir.path().join("out")).unwrap_err();
        assert!(err.is_permanent(), "{}: {err}", input.display());
        assert!(
            matches!(err, TranscodeError::NotMedia(_)),
            "{}: {err}",
            input.display()
        );
    }
}

#[test]
fn a_recording_cut_mid_tag_is_transcoded_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.flv");
    make_clip(&whole, Some((320, 180, 30)), true, 4.0).unwrap();
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.flv");
    // Cut in the middle of a tag (past the header, 60 % in: not on a tag boundary by chance).
    let at = bytes.len() * 6 / 10 + 3;
    std::fs::write(&cut, &bytes[..at]).unwrap();
    let ladder = run(&two_rungs(), &cut, &dir.path().join("out")).unwrap();
    let duration = ladder.renditions[0].facts.duration.as_secs_f64();
    assert!(
        duration > 1.0 && duration < 3.9,
        "{duration} s survived of 4 s cut at 60 %"
    );
}

#[test]
fn ten_bit_input_is_converted_to_eight_bit() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ten.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p10le",
            "-preset",
            "ultrafast",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let ladder = run(&two_rungs(), &input, &dir.path().join("out")).unwrap();
    assert_eq!(ladder.source.video_depth, Some(10));
    let probed = probe(dir.path().join("out/180p/index.m3u8").to_str().unwrap()).unwrap();
    assert_eq!(probed["streams"][0]["pix_fmt"], "yuv420p");
}
