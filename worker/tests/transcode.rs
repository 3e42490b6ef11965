//! The GStreamer ladder, checked from the outside with ffprobe: sizes, profiles, key frames at
//! the same instants in every rendition, segment durations, bitrates, and a master playlist
//! whose attributes match the media.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use serde_json::Value;
use testkit::clip::{make_clip, probe, probe_packets};
use testkit::hls::{parse_master, parse_media};
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

fn num(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

fn run(
    config: &WorkerConfig,
    input: &Path,
    out: &Path,
) -> Result<worker::transcode::Ladder, TranscodeError> {
    transcode_file(config, input, out, &AtomicBool::new(false), &mut |_| {})
}

#[test]
fn a_720p_recording_becomes_an_aligned_ladder_with_an_honest_master() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("talk.flv");
    make_clip(&input, Some((1280, 720, 30)), true, 5.0).unwrap();
    let out = dir.path().join("out");
    let config = short_segments();
    let ladder = run(&config, &input, &out).unwrap();

    let master_text = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert_eq!(master_text, ladder.master);
    let master = parse_master(&master_text);
    let expected: BTreeMap<&str, (u32, u32, u32)> = [
        ("720p", (1280, 720, 2136)),
        ("480p", (854, 480, 1080)),
        ("360p", (640, 360, 500)),
        ("240p", (426, 240, 250)),
        ("180p", (320, 180, 110)),
    ]
    .into_iter()
    .collect();
    let listed: Vec<&str> = master
        .variants
        .iter()
        .map(|v| v.uri.trim_end_matches("/index.m3u8"))
        .collect();
    assert_eq!(listed.len(), 6, "{master_text}");
    // The variant nearest 2 Mbit/s comes first (players start there), the rest from the
    // highest bitrate down, the audio-only one last.
    let nearest = master.variants[..5]
        .iter()
        .min_by_key(|v| (v.number("BANDWIDTH").unwrap() as i64 - 2_000_000).abs())
        .unwrap();
    assert_eq!(master.variants[0].uri, nearest.uri, "{master_text}");
    let rest: Vec<f64> = master.variants[1..5]
        .iter()
        .map(|v| v.number("BANDWIDTH").unwrap())
        .collect();
    assert!(rest.windows(2).all(|w| w[0] > w[1]), "{master_text}");
    assert_eq!(listed[5], "audio", "{master_text}");

    let mut keyframe_times: Vec<(String, Vec<f64>)> = Vec::new();
    for variant in &master.variants {
        let name = variant.uri.trim_end_matches("/index.m3u8");
        let playlist_path = out.join(&variant.uri);
        let media = parse_media(&std::fs::read_to_string(&playlist_path).unwrap());
        assert_eq!(media.playlist_type.as_deref(), Some("VOD"));
        assert!(media.ended, "{name}: ENDLIST");
        assert_eq!(media.target_duration, Some(2), "{name}");
        for text in &media.extinf_texts {
            let (whole, frac) = text.split_once('.').unwrap();
            assert!(
                whole.parse::<u32>().is_ok() && frac.len() == 3,
                "{name}: EXTINF {text}"
            );
        }
        let n = media.segments.len();
        assert_eq!(n, 3, "{name}: 5 s in 2 s segments");
        for (i, s) in media.segments.iter().enumerate() {
            assert!(
                s.duration <= 2.0 + 1e-9,
                "{name}: segment {i} is {}",
                s.duration
            );
            if i + 1 < n {
                assert!(
                    (s.duration - 2.0).abs() <= 1.0 / 30.0,
                    "{name}: segment {i}"
                );
            }
        }
        // Measured bitrates: the master's BANDWIDTH is the peak segment, AVERAGE the mean.
        let sizes: Vec<u64> = media
            .segments
            .iter()
            .map(|s| {
                std::fs::metadata(out.join(name).join(&s.uri))
                    .unwrap()
                    .len()
            })
            .collect();
        let peak = media
            .segments
            .iter()
            .zip(&sizes)
            .map(|(s, &b)| b as f64 * 8.0 / s.duration)
            .fold(0.0, f64::max);
        let total: f64 = media.segments.iter().map(|s| s.duration).sum();
        let average = sizes.iter().sum::<u64>() as f64 * 8.0 / total;
        let bandwidth = variant.number("BANDWIDTH").unwrap();
        let avg_bandwidth = variant.number("AVERAGE-BANDWIDTH").unwrap();
        assert!(
            (bandwidth / peak - 1.0).abs() < 0.01,
            "{name}: {bandwidth} vs {peak}"
        );
        assert!((avg_bandwidth / average - 1.0).abs() < 0.01, "{name}");
        assert!(
            bandwidth <= 2.0 * avg_bandwidth,
            "{name}: peak within 200 % of average"
        );

        let probed = probe(playlist_path.to_str().unwrap()).unwrap();
        let streams = probed["streams"].as_array().unwrap();
        let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
        assert_eq!(audio["codec_name"], "aac", "{name}");
        assert_eq!(audio["sample_rate"], "48000", "{name}");
        assert_eq!(audio["channels"], 2, "{name}");
        let codecs = variant.attr("CODECS").unwrap();
        if name == "audio" {
            assert_eq!(codecs, "mp4a.40.2");
            assert!(variant.attr("RESOLUTION").is_none());
            assert!(streams.iter().all(|s| s["codec_type"] != "video"));
            continue;
        }
        let (width, height, kbps) = expected[name];
        let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
        assert_eq!(
            (video["width"].as_u64(), video["height"].as_u64()),
            (Some(width.into()), Some(height.into())),
            "{name}"
        );
        assert_eq!(video["profile"], "High", "{name}");
        let level = video["level"].as_u64().unwrap();
        assert_eq!(codecs, format!("avc1.6400{level:02x},mp4a.40.2"), "{name}");
        assert_eq!(
            variant.attr("RESOLUTION"),
            Some(format!("{width}x{height}").as_str())
        );
        assert_eq!(variant.attr("FRAME-RATE"), Some("30.000"));

        // Key frames: one at the start of every segment, nowhere else but each second, and
        // the video bitrate close to the rung's.
        let mut starts = Vec::new();
        let mut video_bytes = 0u64;
        let mut keyframes = 0;
        for s in &media.segments {
            let packets = probe_packets(out.join(name).join(&s.uri).to_str().unwrap()).unwrap();
            let video_packets: Vec<&Value> = packets["packets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["codec_type"] == "video")
                .collect();
            let first = video_packets[0];
            assert!(
                first["flags"].as_str().unwrap().starts_with('K'),
                "{name}/{}: starts with a key frame",
                s.uri
            );
            starts.push(num(&first["pts_time"]));
            keyframes += video_packets
                .iter()
                .filter(|p| p["flags"].as_str().unwrap().starts_with('K'))
                .count();
            video_bytes += video_packets
                .iter()
                .map(|p| num(&p["size"]) as u64)
                .sum::<u64>();
        }
        let measured_kbps = video_bytes as f64 * 8.0 / total / 1000.0;
        assert!(
            (measured_kbps / f64::from(kbps) - 1.0).abs() <= 0.15,
            "{name}: {measured_kbps:.0} kbit/s for a {kbps} kbit/s rung"
        );
        keyframe_times.push((name.to_owned(), starts));

        let iframes_text = std::fs::read_to_string(out.join(name).join("iframes.m3u8")).unwrap();
        let iframes = parse_media(&iframes_text);
        assert!(keyframes >= 5, "{name}: a key frame every second");
        assert_eq!(
            iframes.segments.len(),
            keyframes,
            "{name}: one entry per key frame\n{iframes_text}"
        );
        for entry in &iframes.segments {
            let (len, off) = entry.byte_range.unwrap();
            let data = std::fs::read(out.join(name).join(&entry.uri)).unwrap();
            assert_eq!(
                data[off as usize], 0x47,
                "{name}: range starts on a TS packet"
            );
            assert!((off + len) as usize <= data.len());
        }
    }
    let (first_name, first) = &keyframe_times[0];
    for (name, starts) in &keyframe_times[1..] {
        assert_eq!(
            starts, first,
            "{name} cuts at the same instants as {first_name}"
        );
    }
    assert_eq!(master.iframe_variants.len(), 5);
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
