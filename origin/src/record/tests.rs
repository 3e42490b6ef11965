//! Recorder and recovery behaviour on real FLV from ffmpeg, checked with ffprobe.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use media::flv::{self, TagKind, VideoTag};

use super::file::failing::disk_with_room_for;
use super::scan::number_offset;
use super::{FinishedRecording, RecordError, Recorder, recover};

/// One audio or video tag of an input file.
struct InputTag {
    kind: TagKind,
    ts: u32,
    body: Vec<u8>,
}

/// Runs ffmpeg with `args` to make `dir/name`; ffmpeg and ffprobe come from scripts/setup.sh.
fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("ffmpeg must be installed (scripts/setup.sh)");
    assert!(status.success(), "ffmpeg failed to make {name}");
    out
}

/// 4 s of 320x240 H.264 at 30 fps (a keyframe every second) with AAC audio.
fn av_clip(dir: &Path) -> PathBuf {
    ffmpeg(
        dir,
        "in.flv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-f",
            "flv",
        ],
    )
}

fn audio_clip(dir: &Path) -> PathBuf {
    ffmpeg(
        dir,
        "audio.flv",
        &[
            "-f", "lavfi", "-i", "sine", "-t", "4", "-c:a", "aac", "-f", "flv",
        ],
    )
}

fn read_tags(path: &Path) -> Vec<InputTag> {
    let bytes = std::fs::read(path).unwrap();
    let file = flv::parse_file(&bytes).unwrap();
    file.tags
        .iter()
        .filter(|t| t.kind != TagKind::Script)
        .map(|t| InputTag {
            kind: t.kind,
            ts: t.timestamp_ms,
            body: t.body.to_vec(),
        })
        .collect()
}

fn write(rec: &mut Recorder, tag: &InputTag) -> Result<Option<FinishedRecording>, RecordError> {
    match tag.kind {
        TagKind::Video => rec.write_video(tag.ts, &tag.body),
        TagKind::Audio => rec.write_audio(tag.ts, &tag.body),
        TagKind::Script => Ok(None),
    }
}

/// Feeds every tag, then finishes: all parts in order.
fn record_all(mut rec: Recorder, tags: &[InputTag]) -> Vec<FinishedRecording> {
    let mut parts = Vec::new();
    for tag in tags {
        parts.extend(write(&mut rec, tag).unwrap());
    }
    parts.push(rec.finish().unwrap());
    parts
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// What ffprobe says about a file.
#[derive(Debug)]
struct Probe {
    /// `format.duration`, seconds (from our metadata when present).
    duration: f64,
    video_packets: u64,
    audio_packets: u64,
    video_frames: u64,
    /// End of the last packet minus start of the first, seconds: independent of metadata.
    packet_span: f64,
    /// Flags of the first video packet (`K_` for a keyframe).
    first_video_flags: Option<String>,
    /// ffprobe's stderr at `-v error` while decoding everything.
    errors: String,
}

fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-count_packets",
            "-show_format",
            "-show_streams",
            "-show_packets",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let mut probe = Probe {
        duration: num(&json["format"]["duration"]).unwrap_or(0.0),
        video_packets: 0,
        audio_packets: 0,
        video_frames: 0,
        packet_span: 0.0,
        first_video_flags: None,
        errors: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for s in json["streams"].as_array().unwrap() {
        let packets = num(&s["nb_read_packets"]).unwrap_or(0.0) as u64;
        match s["codec_type"].as_str() {
            Some("video") => {
                probe.video_packets = packets;
                probe.video_frames = num(&s["nb_read_frames"]).unwrap_or(0.0) as u64;
            }
            Some("audio") => probe.audio_packets = packets,
            _ => {}
        }
    }
    let (mut start, mut end) = (f64::MAX, 0.0f64);
    for p in json["packets"].as_array().unwrap() {
        let (Some(dts), Some(dur)) = (num(&p["dts_time"]), num(&p["duration_time"])) else {
            continue;
        };
        start = start.min(dts);
        end = end.max(dts + dur);
        if p["codec_type"] == "video" && probe.first_video_flags.is_none() {
            probe.first_video_flags = p["flags"].as_str().map(str::to_owned);
        }
    }
    probe.packet_span = if end > start { end - start } else { 0.0 };
    probe
}

fn assert_close(a: f64, b: f64, tolerance: f64, what: &str) {
    assert!(
        (a - b).abs() <= tolerance,
        "{what}: {a} and {b} differ by more than {tolerance}"
    );
}

#[test]
fn a_recorded_stream_plays_with_its_duration_in_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let source = probe(&input);
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    let parts = record_all(
        Recorder::create(&rec_dir, "cam", started, 1 << 30).unwrap(),
        &read_tags(&input),
    );

    assert_eq!(parts.len(), 1);
    let done = &parts[0];
    assert_eq!(done.file_name, "cam-1700000000.flv");
    assert_eq!(done.path, rec_dir.join("cam-1700000000.flv"));
    assert_eq!(done.stream, "cam");
    assert_eq!(done.size, std::fs::metadata(&done.path).unwrap().len());
    let out = probe(&done.path);
    assert_eq!(out.errors, "", "ffprobe reported errors");
    assert_eq!(out.video_packets, source.video_packets);
    assert_eq!(out.audio_packets, source.audio_packets);
    assert_eq!(out.video_frames, source.video_frames);
    assert_close(
        done.duration.as_secs_f64(),
        out.duration,
        0.1,
        "reported vs metadata duration",
    );
    assert_close(
        out.duration,
        source.duration,
        0.1,
        "metadata duration vs input duration",
    );
    assert_close(
        out.duration,
        out.packet_span,
        0.1,
        "metadata duration vs packet span",
    );

    let bytes = std::fs::read(&done.path).unwrap();
    let file = flv::parse_file(&bytes).unwrap();
    assert_eq!(file.valid_len, bytes.len(), "no torn tag at the end");
    assert!(file.header.has_audio && file.header.has_video);
    let meta = file.tags[0].body;
    let number = |key| {
        let at = number_offset(meta, key).unwrap_or_else(|| panic!("no {key} in onMetaData"));
        f64::from_be_bytes(meta[at..at + 8].try_into().unwrap())
    };
    assert_eq!((number("width"), number("height")), (320.0, 240.0));
    assert_eq!(
        (number("videocodecid"), number("audiocodecid")),
        (7.0, 10.0)
    );
    assert_eq!(number("filesize"), done.size as f64);
}

#[test]
fn rollover_splits_on_keyframes_without_losing_or_repeating_a_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let source = probe(&input);
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    let started = UNIX_EPOCH + Duration::from_secs(1_700_000_100);

    let parts = record_all(
        Recorder::create(&rec_dir, "cam", started, 15_000).unwrap(),
        &read_tags(&input),
    );

    assert!(
        parts.len() >= 3,
        "expected several parts, got {}",
        parts.len()
    );
    let names: Vec<&str> = parts.iter().map(|p| p.file_name.as_str()).collect();
    assert_eq!(names[0], "cam-1700000100.flv");
    assert_eq!(names[1], "cam-1700000100-1.flv");
    assert_eq!(names[2], "cam-1700000100-2.flv");
    let (mut video, mut audio, mut frames, mut duration) = (0, 0, 0, 0.0);
    for part in &parts {
        let out = probe(&part.path);
        assert_eq!(
            out.errors, "",
            "ffprobe reported errors in {}",
            part.file_name
        );
        assert_eq!(
            out.first_video_flags.as_deref().map(|f| f.starts_with('K')),
            Some(true),
            "{}",
            part.file_name
        );
        assert_eq!(
            out.video_frames, out.video_packets,
            "{} does not decode alone",
            part.file_name
        );
        assert_close(out.duration, out.packet_span, 0.1, &part.file_name);
        video += out.video_packets;
        audio += out.audio_packets;
        frames += out.video_frames;
        duration += out.duration;

        // onMetaData, the sequence headers, then a keyframe at time zero.
        let bytes = std::fs::read(&part.path).unwrap();
        let tags = flv::parse_file(&bytes).unwrap().tags;
        assert_eq!(tags[0].kind, TagKind::Script);
        let first_video = VideoTag::parse(tags[1].body).unwrap();
        assert_eq!(
            first_video.packet_type,
            flv::VideoPacketType::SequenceHeader
        );
        assert_eq!(tags[2].kind, TagKind::Audio);
        assert_eq!(
            flv::AudioTag::parse(tags[2].body).unwrap().packet_type,
            flv::AacPacketType::SequenceHeader
        );
        assert!(VideoTag::parse(tags[3].body).unwrap().is_keyframe());
        assert_eq!(tags[3].timestamp_ms, 0, "{} is not rebased", part.file_name);
    }
    assert_eq!(video, source.video_packets);
    assert_eq!(audio, source.audio_packets);
    assert_eq!(frames, source.video_frames);
    assert_close(
        duration,
        source.duration,
        0.05 * parts.len() as f64,
        "sum of part durations",
    );
}

#[test]
fn an_audio_only_stream_rolls_over_on_size_at_any_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = audio_clip(dir.path());
    let source = probe(&input);
    let tags = read_tags(&input);

    let parts = record_all(
        Recorder::create(dir.path(), "radio", now(), 8_000).unwrap(),
        &tags,
    );

    assert!(
        parts.len() >= 3,
        "expected several parts, got {}",
        parts.len()
    );
    let mut audio = 0;
    for part in &parts {
        let out = probe(&part.path);
        assert_eq!(out.errors, "", "{}", part.file_name);
        assert_eq!(out.video_packets, 0);
        audio += out.audio_packets;
        // Size is checked before each frame, so a part ends within one frame of the limit.
        if part != parts.last().unwrap() {
            assert!(
                part.size < 8_000 + 2_000,
                "{} is {} bytes",
                part.file_name,
                part.size
            );
        }
        let bytes = std::fs::read(&part.path).unwrap();
        assert!(!flv::parse_file_header(&bytes).unwrap().has_video);
    }
    assert_eq!(audio, source.audio_packets);
}

#[test]
fn two_recorders_for_the_same_name_in_the_same_second_get_distinct_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let tags = read_tags(&input);
    let started = UNIX_EPOCH + Duration::from_secs(1_700_000_200);

    let first = Recorder::create(dir.path(), "cam", started, 1 << 30).unwrap();
    let second = Recorder::create(dir.path(), "cam", started, 1 << 30).unwrap();
    assert_ne!(first.path(), second.path());
    let a = record_all(first, &tags[..tags.len() / 2]);
    let b = record_all(second, &tags);

    assert_eq!(a[0].file_name, "cam-1700000200.flv");
    assert_eq!(b[0].file_name, "cam-1700000200-1.flv");
    assert_eq!(std::fs::metadata(&a[0].path).unwrap().len(), a[0].size);
    assert_eq!(std::fs::metadata(&b[0].path).unwrap().len(), b[0].size);
    assert!(b[0].size > a[0].size);
    assert_eq!(probe(&a[0].path).errors, "");
}

#[test]
fn a_full_disk_is_reported_and_abandon_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    let mut rec =
        Recorder::create_with(&rec_dir, "cam", now(), 1 << 30, disk_with_room_for(30_000)).unwrap();

    let err = read_tags(&input)
        .iter()
        .find_map(|tag| write(&mut rec, tag).err())
        .expect("the disk filled up but no write failed");

    let path = rec.path().to_owned();
    assert!(matches!(err, RecordError::Write { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    let later = rec.write_audio(99_999, &[0xaf, 1, 0]).unwrap_err();
    assert!(matches!(later, RecordError::Stopped { .. }), "{later}");

    let kept = rec.abandon().expect("what was written is kept");
    assert_eq!(kept.path, path);
    assert!(
        kept.size <= 30_000 && kept.size > 10_000,
        "kept {} bytes",
        kept.size
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), kept.size);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        flv::last_complete_tag_end(&bytes),
        Ok(bytes.len()),
        "cut at a tag boundary"
    );
    let out = probe(&path);
    assert_eq!(out.errors, "");
    assert!(out.video_packets > 0);
    assert_close(
        out.duration,
        kept.duration.as_secs_f64(),
        0.001,
        "patched metadata duration",
    );
    assert_close(
        out.duration,
        out.packet_span,
        0.1,
        "metadata duration vs packet span",
    );
}

#[test]
fn a_disk_full_from_the_start_keeps_nothing_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let mut rec =
        Recorder::create_with(dir.path(), "cam", now(), 1 << 30, disk_with_room_for(0)).unwrap();
    let path = rec.path().to_owned();
    // The first tags fit in the write buffer; the error comes when it is flushed.
    let failed = read_tags(&input)
        .iter()
        .any(|tag| write(&mut rec, tag).is_err());
    assert!(failed, "no write failed");
    assert_eq!(rec.abandon(), None);
    assert!(!path.exists(), "an empty recording file was left behind");
}

#[test]
fn finish_on_a_full_disk_hands_back_what_could_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let tags = read_tags(&input);
    let mut rec = Recorder::create_with(
        dir.path(),
        "cam",
        now(),
        1 << 30,
        disk_with_room_for(20_000),
    )
    .unwrap();
    // Less than the write buffer holds: every write succeeds, the flush in finish fails.
    let mut handed = 0;
    for tag in &tags {
        if handed + tag.body.len() > 40_000 {
            break;
        }
        handed += tag.body.len() + 15;
        assert!(write(&mut rec, tag).unwrap().is_none());
    }

    let err = rec.finish().unwrap_err();

    assert!(matches!(err, RecordError::Finalise { .. }), "{err}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    let kept = err
        .into_salvaged()
        .expect("the part that reached the disk is kept");
    assert!(
        kept.size <= 20_000 && kept.size > 5_000,
        "kept {} bytes",
        kept.size
    );
    assert_eq!(probe(&kept.path).errors, "");
}

#[test]
fn a_session_without_frames_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(dir.path(), "cam", now(), 1 << 20).unwrap();
    let path = rec.path().to_owned();
    assert!(path.exists(), "the name is reserved at once");
    // Sequence headers alone are not a recording.
    rec.write_video(0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
        .unwrap();
    rec.write_audio(0, &[0xaf, 0, 0x12, 0x10]).unwrap();

    let err = rec.finish().unwrap_err();

    assert!(matches!(err, RecordError::Empty { .. }), "{err}");
    assert!(!path.exists());
}

#[test]
fn a_stream_name_with_a_path_in_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Recorder::create(dir.path(), "../escape", now(), 1 << 20).unwrap_err();
    assert!(matches!(err, RecordError::InvalidName { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Records `tags` and drops the recorder without finishing it, as a crash would (the buffered
/// tail is flushed on drop, but the metadata still says duration 0).
fn crashed_recording(dir: &Path, tags: &[InputTag]) -> PathBuf {
    let mut rec = Recorder::create(dir, "cam", now(), 1 << 30).unwrap();
    for tag in tags {
        write(&mut rec, tag).unwrap();
    }
    let path = rec.path().to_owned();
    drop(rec);
    path
}

#[test]
fn a_recording_cut_mid_tag_by_a_crash_is_repaired_and_playable() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    let path = crashed_recording(&rec_dir, &read_tags(&input));
    let full = std::fs::read(&path).unwrap();
    // Cut in the middle of a tag body, about two thirds in.
    let tags = flv::parse_file(&full).unwrap().tags;
    let victim = tags[tags.len() * 2 / 3];
    let cut = victim.offset + flv::TAG_HEADER_LEN + victim.body.len() / 2;
    std::fs::write(&path, &full[..cut]).unwrap();

    let recovered = recover(&rec_dir);

    assert_eq!(recovered.len(), 1);
    let rec = &recovered[0];
    assert_eq!(rec.path, path);
    assert_eq!(rec.stream, "cam");
    assert_eq!(rec.size, victim.offset as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), rec.size);
    let out = probe(&path);
    assert_eq!(out.errors, "");
    assert!(
        out.duration > 2.0,
        "metadata duration {} was not patched",
        out.duration
    );
    assert_close(
        out.duration,
        rec.duration.as_secs_f64(),
        0.001,
        "metadata vs reported duration",
    );
    assert_close(
        out.duration,
        out.packet_span,
        0.1,
        "metadata duration vs packet span",
    );
}

#[test]
fn a_file_that_is_not_flv_is_quarantined_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    std::fs::write(rec_dir.join("notes.txt"), b"operator notes, not a video").unwrap();

    let recovered = recover(&rec_dir);

    assert!(recovered.is_empty());
    assert!(!rec_dir.join("notes.txt").exists());
    let kept = std::fs::read(dir.path().join("quarantine/notes.txt")).unwrap();
    assert_eq!(kept, b"operator notes, not a video");
}

#[test]
fn garbage_after_valid_tags_is_kept_in_quarantine_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    let tags = read_tags(&input);
    let path = crashed_recording(&rec_dir, &tags[..tags.len() / 2]);
    let good_len = std::fs::metadata(&path).unwrap().len();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\x42 this is not a tag header at all");
    std::fs::write(&path, &bytes).unwrap();

    let recovered = recover(&rec_dir);

    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].size, good_len);
    assert_eq!(probe(&path).errors, "");
    let file_name = path.file_name().unwrap().to_str().unwrap();
    let tail = std::fs::read(
        dir.path()
            .join(format!("quarantine/{file_name}.tail-{good_len}")),
    )
    .unwrap();
    assert_eq!(tail, b"\x42 this is not a tag header at all");
}

#[test]
fn a_zero_filled_tail_and_empty_leftovers_are_cleaned_up_without_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let input = av_clip(dir.path());
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir(&rec_dir).unwrap();
    let tags = read_tags(&input);
    let path = crashed_recording(&rec_dir, &tags[..20]);
    let good_len = std::fs::metadata(&path).unwrap().len();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    // A crash right after a session's file was created: the header is all there is.
    std::fs::write(
        rec_dir.join("other-1700000000.flv"),
        &flv::file_header(true, true)[..7],
    )
    .unwrap();

    let recovered = recover(&rec_dir);

    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].size, good_len);
    assert!(!rec_dir.join("other-1700000000.flv").exists());
    assert!(!dir.path().join("quarantine").exists());
}

#[test]
fn a_missing_recording_folder_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(recover(&dir.path().join("never-created")).is_empty());
}
