//! The LL-HLS packager against ffmpeg's own tools: a real FLV made by ffmpeg (x264 + AAC) goes
//! through `TagUnits` and `Packager`; ffprobe reads the init segment followed by every part
//! (what a low-latency player appends) and by every segment.
//!
//! Requires `ffmpeg` and `ffprobe` on PATH (installed by `scripts/setup.sh`); the test fails,
//! never skips, when they are missing.

use std::time::SystemTime;

use media::flv::{self, AudioTag, TagKind, VideoTag};
use media::llhls::units::{TagUnits, Unit};
use media::llhls::{Event, Packager, PackagerConfig};
use serde_json::Value;

mod common;

use common::{ffprobe_json, sample_flv};

#[test]
fn ffmpeg_flv_becomes_cmaf_parts_and_segments_that_ffprobe_decodes_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample_flv();
    let mut units = TagUnits::new();
    let mut packager: Option<Packager> = None;
    let mut events = Vec::new();
    let now = SystemTime::now();
    for tag in flv::parse_file(file).unwrap().tags {
        let out = match tag.kind {
            TagKind::Video => {
                units.push_video_tag(tag.timestamp_ms, &VideoTag::parse(tag.body).unwrap(), now)
            }
            TagKind::Audio => {
                units.push_audio_tag(tag.timestamp_ms, &AudioTag::parse(tag.body).unwrap(), now)
            }
            TagKind::Script => continue,
        };
        for unit in out.unwrap() {
            match unit {
                Unit::Tracks(t) => packager = Some(Packager::new(PackagerConfig::default(), t)),
                Unit::Video(f) => events.extend(packager.as_mut().unwrap().push_video(f)),
                Unit::Audio(f) => events.extend(packager.as_mut().unwrap().push_audio(f)),
            }
        }
    }
    events.extend(packager.unwrap().finish());

    let mut init = Vec::new();
    let mut by_parts = Vec::new();
    let mut segments = 0;
    for event in &events {
        match event {
            Event::Init { data, .. } => init = data.to_vec(),
            Event::Part(p) => by_parts.extend_from_slice(&p.data),
            Event::SegmentEnd(_) => segments += 1,
            Event::SegmentStart(_) => {}
        }
    }
    assert_eq!(segments, 2, "4 s of 2 s GOPs");
    let path = dir.path().join("all.mp4");
    std::fs::write(&path, [init, by_parts].concat()).unwrap();
    let (probe, stderr) = ffprobe_json(&path, "error");
    assert!(stderr.is_empty(), "ffprobe said: {stderr}");
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_i64(), video["height"].as_i64()),
        (Some(1280), Some(720))
    );
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "48000");

    let packets = probe["packets"].as_array().unwrap();
    let video: Vec<&Value> = packets
        .iter()
        .filter(|p| p["codec_type"] == "video")
        .collect();
    assert_eq!(video.len(), 120, "every frame of the 4 s clip");
    let keys = video
        .iter()
        .filter(|p| p["flags"].as_str().unwrap_or("").starts_with('K'))
        .count();
    assert_eq!(keys, 2);
    let dts: Vec<i64> = video.iter().map(|p| p["dts"].as_i64().unwrap()).collect();
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "video DTS increase");
    let span = dts.last().unwrap() - dts[0];
    assert!(
        (3.9 * 90_000.0..4.0 * 90_000.0).contains(&(span as f64)),
        "{span}"
    );
    let audio_packets = packets
        .iter()
        .filter(|p| p["codec_type"] == "audio")
        .count();
    // About 4 s of 1024-sample frames at 48 kHz (ffmpeg's priming frame aside).
    assert!((185..=190).contains(&audio_packets), "{audio_packets}");
}
