//! End-to-end check of the segmenter against ffmpeg's own tools: a real FLV made by ffmpeg
//! (x264 + AAC) goes through `LiveSegmenter`, and ffprobe inspects every segment.
//!
//! Requires `ffmpeg` and `ffprobe` on PATH (installed by `scripts/setup.sh`); the tests fail,
//! never skip, when they are missing.

use std::path::Path;
use std::time::Duration;

use media::flv::{self, AudioTag, TagKind, VideoTag};
use media::hls::{LiveSegmenter, Segment, SegmenterConfig};
use serde_json::Value;

mod common;

use common::{ffprobe_json, sample_flv};

/// Feeds every audio/video tag of `file` to `seg`, with `ts_offset_ms` added (wrapping) to
/// each timestamp.
fn feed(seg: &mut LiveSegmenter, file: &[u8], ts_offset_ms: u32, out: &mut Vec<Segment>) {
    let parsed = flv::parse_file(file).expect("valid FLV");
    assert_eq!(parsed.valid_len, file.len());
    for tag in parsed.tags {
        let ts = tag.timestamp_ms.wrapping_add(ts_offset_ms);
        match tag.kind {
            TagKind::Video => {
                let v = VideoTag::parse(tag.body).expect("video tag");
                out.extend(seg.push_video_tag(ts, &v).expect("video accepted"));
            }
            TagKind::Audio => {
                let a = AudioTag::parse(tag.body).expect("audio tag");
                out.extend(seg.push_audio_tag(ts, &a).expect("audio accepted"));
            }
            TagKind::Script => {}
        }
    }
}

struct Probe {
    streams: Vec<Value>,
    packets: Vec<Value>,
}

/// Runs ffprobe on `path` at log level `level`; returns its JSON and stderr.
fn ffprobe(path: &Path, level: &str) -> (Probe, String) {
    let (json, stderr) = ffprobe_json(path, level);
    let list = |key: &str| json[key].as_array().cloned().unwrap_or_default();
    (
        Probe {
            streams: list("streams"),
            packets: list("packets"),
        },
        stderr,
    )
}

fn int(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("packet without integer {key}: {v}"))
}

/// Writes each segment to `dir`, checks it with ffprobe, and checks the concatenation (what a
/// player fetching consecutive segments sees). Returns every video packet's DTS in order.
fn check_with_ffprobe(dir: &Path, segments: &[Segment]) -> Vec<i64> {
    let mut all_video_dts = Vec::new();
    let mut concat = Vec::new();
    for seg in segments {
        let path = dir.join(format!("{}.ts", seg.sequence));
        std::fs::write(&path, &seg.data).expect("write segment");
        concat.extend_from_slice(&seg.data);
        let (probe, stderr) = ffprobe(&path, "error");
        assert!(
            stderr.is_empty(),
            "segment {}: ffprobe said: {stderr}",
            seg.sequence
        );

        let codec = |kind: &str| {
            probe
                .streams
                .iter()
                .find(|s| s["codec_type"] == kind)
                .unwrap_or_else(|| panic!("segment {}: no {kind} stream", seg.sequence))
                .clone()
        };
        let video = codec("video");
        assert_eq!(video["codec_name"], "h264");
        assert_eq!(
            (video["width"].as_i64(), video["height"].as_i64()),
            (Some(1280), Some(720))
        );
        assert_eq!(codec("audio")["codec_name"], "aac");

        let video_packets: Vec<&Value> = probe
            .packets
            .iter()
            .filter(|p| p["codec_type"] == "video")
            .collect();
        assert!(
            !video_packets.is_empty(),
            "segment {} has no video",
            seg.sequence
        );
        let flags = video_packets[0]["flags"].as_str().unwrap_or_default();
        assert!(
            flags.starts_with('K'),
            "segment {}: first video packet is not a key frame (flags {flags})",
            seg.sequence
        );
        assert!(seg.starts_with_keyframe);
        assert!(
            probe.packets.iter().any(|p| p["codec_type"] == "audio"),
            "segment {} has no audio packets",
            seg.sequence
        );
        all_video_dts.extend(video_packets.iter().map(|p| int(p, "dts")));
    }
    for pair in all_video_dts.windows(2) {
        assert!(pair[1] > pair[0], "video DTS not increasing: {pair:?}");
    }

    // Continuity counters must carry across segments: ffmpeg reports breaks at debug level.
    let path = dir.join("all.ts");
    std::fs::write(&path, &concat).expect("write concatenation");
    let (probe, stderr) = ffprobe(&path, "debug");
    assert!(
        !stderr.contains("Continuity check failed"),
        "continuity errors across segments: {}",
        stderr
            .lines()
            .filter(|l| l.contains("Continuity"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let concat_dts: Vec<i64> = probe
        .packets
        .iter()
        .filter(|p| p["codec_type"] == "video")
        .map(|p| int(p, "dts"))
        .collect();
    assert_eq!(
        concat_dts, all_video_dts,
        "concatenation demuxes to the same video"
    );
    all_video_dts
}

#[test]
fn ffmpeg_flv_segments_are_valid_hls_ts() {
    let file = sample_flv();
    let mut seg = LiveSegmenter::new(SegmenterConfig::default());
    let mut segments = Vec::new();
    feed(&mut seg, file, 0, &mut segments);
    segments.extend(seg.finish());

    // GOP 60 at 30 fps = 2 s: two 2 s segments.
    assert_eq!(
        segments.len(),
        2,
        "{:?}",
        segments.iter().map(|s| s.duration).collect::<Vec<_>>()
    );
    assert!(segments.iter().all(|s| !s.discontinuity));
    // Audio runs slightly past 4 s (AAC encoder delay: the last frame ends at ~4.077 s).
    let total: Duration = segments.iter().map(|s| s.duration).sum();
    assert!(
        total >= Duration::from_millis(3_900) && total <= Duration::from_millis(4_100),
        "total duration {total:?}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let dts = check_with_ffprobe(dir.path(), &segments);
    assert_eq!(dts.len(), 120, "every one of the 120 frames is packaged");

    let info = seg.stream_info();
    assert_eq!(info.codecs(), ["avc1.64001f", "mp4a.40.2"]);
    let video = info.video.expect("video facts");
    assert_eq!(video.resolution, Some((1280, 720)));
    assert_eq!(video.frame_rate, Some(30.0));
    assert_eq!(info.audio.expect("audio facts").sample_rate, 48_000);
    assert!(info.average_bitrate_bps.is_some_and(|b| b > 10_000));
}

#[test]
fn encoder_restart_gives_a_discontinuity_and_continuous_timestamps() {
    let file = sample_flv();
    let mut seg = LiveSegmenter::new(SegmenterConfig::default());
    let mut segments = Vec::new();
    // The same 4 s twice: timestamps jump back from ~4 s to 0 as when an encoder restarts,
    // then forward by an hour.
    feed(&mut seg, file, 0, &mut segments);
    feed(&mut seg, file, 0, &mut segments);
    feed(&mut seg, file, 3_600_000, &mut segments);
    segments.extend(seg.finish());

    assert_eq!(segments.len(), 6);
    let flags: Vec<bool> = segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(flags, [false, false, true, false, true, false]);
    let total: Duration = segments.iter().map(|s| s.duration).sum();
    assert!(
        total >= Duration::from_millis(11_700) && total <= Duration::from_millis(12_300),
        "total duration {total:?}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let dts = check_with_ffprobe(dir.path(), &segments);
    assert_eq!(dts.len(), 360);
    // Output DTS are continuous: the only steps above one frame are at the restarts, where
    // the new timeline begins one frame after the old audio tail (which runs ~90 ms past the
    // last video frame). Neither the 4 s backwards nor the 1 h forward jump shows.
    let big_steps: Vec<i64> = dts
        .windows(2)
        .map(|p| p[1] - p[0])
        .filter(|&d| d > 3_100) // frames are 33 or 34 ms apart
        .collect();
    assert_eq!(big_steps.len(), 2, "{big_steps:?}");
    assert!(big_steps.iter().all(|&d| d <= 18_000), "{big_steps:?}");
}
