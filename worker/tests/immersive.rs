//! 360 sources through the real GStreamer pipeline: cubemap ladders beside the equirect one,
//! drawn by `spherecastproject`, checked against ffmpeg's v360 on the same source, and the bad
//! inputs (not 2:1, odd sizes, 10-bit, tiny).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use testkit::clip::{make_360_pattern, probe, psnr_luma, reencode};
use worker::config::{Rung, WorkerConfig};
use worker::immersive::{CubemapLayout, CubemapRung, ImmersiveConfig, Sphere};
use worker::transcode::{Ladder, TranscodeError, transcode_file};

/// The colour conversion the pipeline applies to an untagged SD source.
const TO_709: &str = "scale=in_color_matrix=bt601:out_color_matrix=bt709";

/// One small flat rung and one rung per cubemap layout, sized for a 512x256 source.
fn config() -> WorkerConfig {
    let cubemap = |name: &str, layout, height| CubemapRung {
        name: name.to_owned(),
        layout,
        height,
        video_kbps: 1500,
        audio_kbps: 64,
        preset: "veryfast".to_owned(),
        profile: "high".to_owned(),
    };
    WorkerConfig {
        segment_secs: 2,
        keyframe_interval_secs: 1,
        rungs: vec![Rung {
            name: "240p".to_owned(),
            height: 240,
            video_kbps: 400,
            audio_kbps: 64,
            preset: "veryfast".to_owned(),
            profile: "high".to_owned(),
        }],
        immersive: ImmersiveConfig {
            rungs: vec![
                cubemap("eac_288", CubemapLayout::Eac, 288),
                cubemap("c3x2_256", CubemapLayout::Cubemap3x2, 256),
            ],
            ..ImmersiveConfig::default()
        },
        ..WorkerConfig::default()
    }
}

fn run(config: &WorkerConfig, input: &Path, out: &Path) -> Result<Ladder, TranscodeError> {
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

fn video_stream(path: &Path) -> serde_json::Value {
    let probed = probe(path.to_str().unwrap()).unwrap();
    probed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .cloned()
        .unwrap_or_else(|| panic!("no video stream in {}: {probed}", path.display()))
}

fn size_of(path: &Path) -> (u64, u64) {
    let v = video_stream(path);
    (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
}

fn variants(master: &str) -> Vec<String> {
    master
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_10_bit_360_source_gets_eac_and_c3x2_ladders_that_match_ffmpeg_v360() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("pattern.flv");
    make_360_pattern(&pattern, "e", 128, 3.0).unwrap();
    // A 10-bit source: the pipeline converts it to 8-bit 4:2:0 before the projection.
    let input = dir.path().join("keynote_360-1731000000.mp4");
    reencode(
        &pattern,
        &["-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-crf", "12"],
        &input,
    )
    .unwrap();
    assert_eq!(video_stream(&input)["pix_fmt"], "yuv420p10le");
    let out = dir.path().join("out");
    let ladder = run(&config(), &input, &out).unwrap();
    assert_eq!(ladder.sphere, Sphere::Equirect);

    // The equirect ladder stays in master.m3u8; each layout has its own master.
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert_eq!(variants(&master), ["240p/index.m3u8"], "{master}");
    let eac = std::fs::read_to_string(out.join("eac.m3u8")).unwrap();
    assert_eq!(variants(&eac), ["eac_288/index.m3u8"], "{eac}");
    assert!(eac.contains("RESOLUTION=512x288"), "{eac}");
    let c3x2 = std::fs::read_to_string(out.join("c3x2.m3u8")).unwrap();
    assert_eq!(variants(&c3x2), ["c3x2_256/index.m3u8"], "{c3x2}");
    assert!(c3x2.contains("RESOLUTION=384x256"), "{c3x2}");

    // The sidecar says how to draw each master and each rendition.
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("projection.json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["projection"], "equirect", "{sidecar}");
    assert_eq!(sidecar["playlists"]["eac.m3u8"]["projection"], "eac");
    assert_eq!(sidecar["playlists"]["c3x2.m3u8"]["projection"], "c3x2");
    let entry = |playlist: &str| {
        sidecar["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["playlist"] == playlist)
            .cloned()
            .unwrap_or_else(|| panic!("no {playlist} in {sidecar}"))
    };
    let eac_entry = entry("eac_288/index.m3u8");
    assert_eq!(eac_entry["layout"], "eac");
    assert_eq!(eac_entry["padding"], 2);
    assert_eq!(eac_entry["width"], 512);
    assert_eq!(entry("c3x2_256/index.m3u8")["face_order"], "rludfb");
    assert_eq!(entry("240p/index.m3u8")["projection"], "equirect");
    assert_eq!(
        ladder.extra_files,
        ["eac.m3u8", "c3x2.m3u8", "projection.json"]
    );

    // The pictures are ffmpeg's v360 layouts of the same source (x264 costs a little). The
    // pipeline tags every rendition BT.709 and so converts this untagged SD source from
    // BT.601: the reference gets the same conversion (without it the flat colours' luma
    // differs by a few levels and scores about 24 dB).
    let segment = out.join("eac_288/00000.ts");
    assert_eq!(size_of(&segment), (512, 288));
    assert_eq!(video_stream(&segment)["pix_fmt"], "yuv420p");
    let eac_db = psnr_luma(
        &segment,
        &pattern,
        &format!("v360=e:eac:interp=linear:w=512:h=288,{TO_709}"),
    )
    .unwrap();
    assert!(eac_db >= 30.0, "EAC vs ffmpeg v360: {eac_db:.1} dB");
    let c3x2_segment = out.join("c3x2_256/00000.ts");
    assert_eq!(size_of(&c3x2_segment), (384, 256));
    let c3x2_db = psnr_luma(
        &c3x2_segment,
        &pattern,
        &format!("v360=e:c3x2:interp=linear:w=384:h=256,{TO_709}"),
    )
    .unwrap();
    assert!(c3x2_db >= 30.0, "c3x2 vs ffmpeg v360: {c3x2_db:.1} dB");
    // The same comparison with the sphere turned a quarter scores far lower: the check sees
    // a wrong orientation.
    let turned = psnr_luma(
        &segment,
        &pattern,
        &format!("v360=e:eac:interp=linear:w=512:h=288:yaw=90,{TO_709}"),
    )
    .unwrap();
    assert!(turned < 20.0, "a turned sphere scored {turned:.1} dB");
}

#[test]
fn a_source_named_360_that_is_not_2_to_1_gets_the_flat_ladder_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stage_360.mp4");
    testkit::clip::make_clip(&input, Some((320, 240, 25)), false, 2.0).unwrap();
    let out = dir.path().join("out");
    let ladder = run(&config(), &input, &out).unwrap();
    let Sphere::NotEquirect { reason } = &ladder.sphere else {
        panic!("a 4:3 source is not equirect: {:?}", ladder.sphere);
    };
    assert!(reason.contains("320x240"), "{reason}");
    assert!(ladder.renditions.iter().all(|r| r.cubemap.is_none()));
    assert!(ladder.extra_files.is_empty());
    for file in ["eac.m3u8", "c3x2.m3u8", "projection.json"] {
        assert!(!out.join(file).exists(), "{file} was written");
    }
    assert!(out.join("master.m3u8").exists());
}

#[test]
fn odd_and_tiny_2_to_1_sources_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("pattern.flv");
    make_360_pattern(&pattern, "e", 64, 2.0).unwrap();
    // 258x129: 2:1 with an odd height (FFV1 4:4:4 stores odd sizes; H.264 4:2:0 cannot).
    let odd = dir.path().join("odd_360.mkv");
    reencode(
        &pattern,
        &[
            "-vf",
            "scale=258:129",
            "-c:v",
            "ffv1",
            "-pix_fmt",
            "yuv444p",
        ],
        &odd,
    )
    .unwrap();
    assert_eq!(size_of(&odd), (258, 129));
    let out = dir.path().join("odd");
    let ladder = run(&config(), &odd, &out).unwrap();
    assert_eq!(ladder.sphere, Sphere::Equirect);
    let cubemaps: Vec<_> = ladder
        .renditions
        .iter()
        .filter(|r| r.cubemap.is_some())
        .collect();
    // Both configured rungs need more detail than 128 lines: one rung at the source's size.
    assert_eq!(cubemaps.len(), 1, "{cubemaps:?}");
    let (w, h) = cubemaps[0].facts.resolution.unwrap();
    assert!(w % 2 == 0 && h % 2 == 0, "{w}x{h}");
    assert_eq!(
        size_of(&out.join(&cubemaps[0].segments[0])),
        (u64::from(w), u64::from(h))
    );

    // Too small for any cube face: the flat ladder only, and no failure.
    let tiny = dir.path().join("tiny_360.mkv");
    reencode(&pattern, &["-vf", "scale=48:24", "-c:v", "ffv1"], &tiny).unwrap();
    let ladder = run(&config(), &tiny, &dir.path().join("tiny")).unwrap();
    assert!(ladder.renditions.iter().all(|r| r.cubemap.is_none()));
    assert!(!ladder.renditions.is_empty());
}

/// Runs `videotestsrc ! WxH I420 ! spherecastproject ... ! appsink` for a few frames; returns
/// the output caps' size, or the bus error.
fn project_test_frames(width: i32, height: i32, props: &str) -> Result<(i32, i32), String> {
    use gstreamer as gst;
    use gstreamer::prelude::*;

    worker::transcode::init().unwrap();
    worker::transcode::project::register().unwrap();
    let description = format!(
        "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width={width},height={height} ! \
         spherecastproject {props} ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let result = match sink.pull_sample() {
        Ok(sample) => {
            let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
            Ok((
                caps.get::<i32>("width").unwrap(),
                caps.get::<i32>("height").unwrap(),
            ))
        }
        Err(_) => {
            let bus = pipeline.bus().unwrap();
            let message = bus
                .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
                .map(|m| match m.view() {
                    gst::MessageView::Error(e) => format!("{} {:?}", e.error(), e.debug()),
                    _ => String::new(),
                })
                .unwrap_or_else(|| "no error on the bus".to_owned());
            Err(message)
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[test]
fn the_element_projects_to_the_asked_size_and_refuses_a_frame_that_is_not_2_to_1() {
    assert_eq!(
        project_test_frames(256, 128, "layout=c3x2 width=192 height=128"),
        Ok((192, 128))
    );
    // No size: ffmpeg's default for the layout (eac: w x 9h/8).
    assert_eq!(project_test_frames(256, 128, "layout=eac"), Ok((256, 144)));
    let err = project_test_frames(320, 240, "layout=eac width=256 height=144").unwrap_err();
    assert!(err.contains("2:1"), "{err}");
}
