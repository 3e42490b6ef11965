//! The packager and the window together, checked against the RFC 8216bis rules for LL-HLS
//! playlists and against the fMP4 boxes read back.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::aac::AudioSpecificConfig;
use crate::avc::AvcConfig;
use crate::avc::tests::HIGH_720P30_AVCC;
use crate::fmp4::read::{boxes, traf};
use crate::fmp4::{AUDIO_TRACK_ID, AudioParams, VIDEO_TRACK_ID, VideoParams, avcc_record};

const ASC: [u8; 2] = [0x11, 0x90];

fn tracks(video: bool, audio: bool) -> Tracks {
    let cfg = AvcConfig::parse(HIGH_720P30_AVCC).unwrap();
    Tracks {
        video: video.then(|| VideoParams {
            avcc: avcc_record(&cfg, HIGH_720P30_AVCC),
            width: 1280,
            height: 720,
        }),
        audio: audio.then(|| AudioParams::new(&AudioSpecificConfig::parse(&ASC).unwrap(), &ASC)),
    }
}

fn wall(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

/// 30 fps video with millisecond timestamps as RTMP gives them (33/34 ms steps), a key frame
/// every `gop` frames, and 48 kHz AAC interleaved by time, for `frames` frames.
fn feed(p: &mut Packager, frames: u32, gop: u32, audio: bool) -> Vec<Event> {
    let mut events = Vec::new();
    let mut audio_n = 0u64;
    for i in 0..frames {
        let ms = u64::from(i) * 1000 / 30;
        while audio && audio_n * 1024 * 1000 / 48_000 <= ms {
            let a_ms = audio_n * 1024 * 1000 / 48_000;
            events.extend(p.push_audio(AudioFrame {
                dts: 900_000 + a_ms * 90,
                data: Bytes::from(vec![0x21, audio_n as u8]),
                received: wall(a_ms),
            }));
            audio_n += 1;
        }
        let key = i % gop == 0;
        events.extend(p.push_video(VideoFrame {
            dts: 900_000 + ms * 90,
            pts: 900_000 + ms * 90 + 6_000,
            keyframe: key,
            data: Bytes::from(vec![0, 0, 0, 2, if key { 0x65 } else { 0x41 }, i as u8]),
            received: wall(ms),
        }));
    }
    events
}

fn window_of(events: &[Event], ended: bool) -> Window {
    let mut w = Window::new(WindowConfig {
        window: 6,
        part_target: Duration::from_millis(334),
        segment_target: Duration::from_secs(2),
    });
    for e in events {
        w.apply(e.clone());
    }
    if ended {
        w.end();
    }
    w
}

fn parts(events: &[Event]) -> Vec<&Part> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Part(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Attribute `name` of an attribute-list line.
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let list = line.split_once(':')?.1;
    list.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

fn tag_values<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(tag)).collect()
}

/// Checks a playlist against the RFC 8216bis rules this packager must keep.
fn check_playlist(text: &str) {
    let target_duration: f64 = tag_values(text, "#EXT-X-TARGETDURATION:")[0]
        .split_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let part_inf = tag_values(text, "#EXT-X-PART-INF:");
    assert_eq!(part_inf.len(), 1, "{text}");
    let part_target: f64 = attr(part_inf[0], "PART-TARGET").unwrap().parse().unwrap();
    let control = tag_values(text, "#EXT-X-SERVER-CONTROL:")[0];
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    let hold_back: f64 = attr(control, "PART-HOLD-BACK").unwrap().parse().unwrap();
    assert!(
        hold_back >= 3.0 * part_target - 1e-9,
        "{hold_back} < 3 x {part_target}"
    );
    let version: u32 = tag_values(text, "#EXT-X-VERSION:")[0][15..]
        .parse()
        .unwrap();
    assert!(version >= 9);
    assert!(!tag_values(text, "#EXT-X-MAP:").is_empty(), "{text}");

    let mut last_pdt = None;
    for line in text.lines() {
        if let Some(part) = line.strip_prefix("#EXT-X-PART:") {
            let d: f64 = attr(line, "DURATION").unwrap().parse().unwrap();
            assert!(d <= part_target, "part {part} longer than {part_target}");
            assert!(d > 0.0);
        }
        if let Some(extinf) = line.strip_prefix("#EXTINF:") {
            let d: f64 = extinf.trim_end_matches(',').parse().unwrap();
            assert!(
                d.round() <= target_duration,
                "{d} rounds above {target_duration}"
            );
        }
        if let Some(pdt) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            let t =
                time::OffsetDateTime::parse(pdt, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            if let Some(last) = last_pdt {
                assert!(t > last, "date-times go back: {pdt}");
            }
            last_pdt = Some(t);
        }
    }
}

#[test]
fn parts_respect_the_part_target_and_independence_follows_key_frames() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(true, true));
    let mut events = feed(&mut p, 300, 60, true);
    events.extend(p.finish());
    let all = parts(&events);
    let target = ticks(Duration::from_millis(334));
    assert!(all.len() > 25, "{}", all.len());
    let ends: HashMap<u64, u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::SegmentEnd(s) => Some((s.msn, s.duration_90k)),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 5, "10 s of 2 s GOPs");
    for (i, part) in all.iter().enumerate() {
        assert!(
            part.duration_90k <= target,
            "part {i}: {}",
            part.duration_90k
        );
        let last_of_segment = all.get(i + 1).is_none_or(|n| n.msn != part.msn);
        if !part.independent && !last_of_segment {
            // RFC 8216bis 4.4.4.9: at least 85 % of the part target.
            assert!(part.duration_90k * 100 >= target * 85, "part {i} too short");
        }
        // Independent exactly when the part starts with a key frame: the first of each
        // segment (the GOP equals the segment target).
        assert_eq!(part.independent, part.index == 0, "part {i}");
        assert_eq!(part.number, i as u64, "numbered across segments");
    }
    for (msn, duration) in ends {
        let sum: u64 = all
            .iter()
            .filter(|p| p.msn == msn)
            .map(|p| p.duration_90k)
            .sum();
        assert_eq!(sum, duration, "segment {msn} is the sum of its parts");
        // The last one ends one frame after its last frame: 9966 + 33 ms.
        let expected = if msn == 4 {
            (9_999 - 8_000) * 90
        } else {
            180_000
        };
        assert_eq!(duration, expected, "segment {msn}");
    }
}

#[test]
fn fragments_carry_continuous_decode_times_on_both_tracks() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(true, true));
    let mut events = feed(&mut p, 150, 60, true);
    events.extend(p.finish());
    let mut next_video = None;
    let mut next_audio = None;
    let mut video_samples = 0;
    let mut audio_samples = 0;
    let mut key_samples = 0;
    for part in parts(&events) {
        let top = boxes(&part.data);
        assert_eq!(
            top.iter().map(|b| b.kind).collect::<Vec<_>>(),
            [*b"moof", *b"mdat"]
        );
        for t in boxes(top[0].body).iter().filter(|b| &b.kind == b"traf") {
            let t = traf(t.body);
            let span: u64 = t.samples.iter().map(|s| u64::from(s.0)).sum();
            let next = if t.track_id == VIDEO_TRACK_ID {
                video_samples += t.samples.len();
                key_samples += t
                    .samples
                    .iter()
                    .filter(|s| s.2 == Some(0x0200_0000))
                    .count();
                assert!(
                    t.samples.iter().all(|s| s.3 == Some(6_000)),
                    "composition offsets"
                );
                &mut next_video
            } else {
                assert_eq!(t.track_id, AUDIO_TRACK_ID);
                audio_samples += t.samples.len();
                &mut next_audio
            };
            if let Some(expected) = *next {
                assert_eq!(
                    t.base_decode_time, expected,
                    "track {} is continuous",
                    t.track_id
                );
            }
            *next = Some(t.base_decode_time + span);
        }
    }
    assert_eq!(video_samples, 150);
    assert_eq!(key_samples, 3);
    // 5 s of 48 kHz audio in 1024-sample frames, from the first key frame on.
    assert!((233..=236).contains(&audio_samples), "{audio_samples}");
    // The first audio frame is the one at the first key frame: 10 s on the timeline.
    let first = parts(&events)[0];
    let audio_traf = boxes(boxes(&first.data)[0].body)
        .into_iter()
        .filter(|b| &b.kind == b"traf")
        .map(|b| traf(b.body))
        .find(|t| t.track_id == AUDIO_TRACK_ID)
        .unwrap();
    assert_eq!(audio_traf.base_decode_time, 480_000);
}

#[test]
fn the_playlist_keeps_the_ll_hls_rules_while_live_and_after_the_end() {
    let mut p = Packager::new(
        PackagerConfig {
            first_sequence: 1_000,
            ..PackagerConfig::default()
        },
        tracks(true, true),
    );
    let mut w = window_of(&[], false);
    let mut checked = 0;
    for event in feed(&mut p, 600, 45, true) {
        let is_part = matches!(event, Event::Part(_));
        w.apply(event);
        if is_part {
            let text = w.render(&[]);
            check_playlist(&text);
            let hint = tag_values(&text, "#EXT-X-PRELOAD-HINT:");
            assert_eq!(hint.len(), 1, "{text}");
            assert_eq!(attr(hint[0], "TYPE"), Some("PART"));
            // The hint names the part after the last one listed.
            let last_part = tag_values(&text, "#EXT-X-PART:")
                .last()
                .map(|l| attr(l, "URI").unwrap());
            let last_number: u64 = last_part.unwrap()[1..]
                .trim_end_matches(".m4s")
                .parse()
                .unwrap();
            assert_eq!(attr(hint[0], "URI").unwrap(), part_uri(last_number + 1));
            assert_eq!(w.position().next_part, last_number + 1);
            checked += 1;
        }
    }
    assert!(checked > 50);
    let text = w.render(&[]);
    // 20 s of 1.5 s GOPs with a 2 s target: 3 s segments, six listed.
    assert_eq!(tag_values(&text, "#EXTINF:").len(), 6, "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
    // Parts only for the segments near the live edge (three target durations).
    let first_part = text.find("#EXT-X-PART:").unwrap();
    let extinf_before_parts = text[..first_part].matches("#EXTINF:").count();
    assert!(extinf_before_parts >= 3, "{text}");
    for event in p.finish() {
        w.apply(event);
    }
    w.end();
    let text = w.render(&[]);
    check_playlist(&text);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("PRELOAD-HINT"));
}

#[test]
fn segment_bytes_are_their_parts_bytes_and_stay_downloadable_for_a_window() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(true, true));
    let events = feed(&mut p, 900, 60, true);
    let w = window_of(&events, false);
    let pos = w.position();
    let last = pos.last_segment.unwrap();
    assert_eq!(last, 13, "30 s in 2 s segments, the 15th still open");
    for msn in last - 5..=last {
        let joined: Vec<u8> = parts(&events)
            .iter()
            .filter(|p| p.msn == msn)
            .flat_map(|p| p.data.iter().copied())
            .collect();
        assert_eq!(w.segment(msn).unwrap(), joined, "segment {msn}");
    }
    assert!(
        w.segment(last - 11).is_some(),
        "one more window after leaving the playlist"
    );
    assert!(w.segment(last - 12).is_none());
    assert!(
        w.segment(last + 1).is_none(),
        "the open segment is not complete"
    );
    let newest = parts(&events).last().unwrap().number;
    assert!(w.part(newest).is_some());
    assert!(w.part(newest + 1).is_none());
    assert!(w.init(0).is_some());
}

#[test]
fn blocking_positions_follow_rfc_8216bis_6_2_5_2() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(true, true));
    let events = feed(&mut p, 100, 60, true);
    let w = window_of(&events, false);
    let pos = w.position();
    // 100 frames: segment 0 complete (2 s), segment 1 open with a few parts.
    assert_eq!(pos.last_segment, Some(0));
    let (msn, part) = pos.last_part.unwrap();
    assert_eq!(msn, 1);
    assert!(pos.satisfies(0, None));
    assert!(!pos.satisfies(1, None), "the open segment is not complete");
    assert!(pos.satisfies(1, Some(part)));
    assert!(!pos.satisfies(1, Some(part + 1)));
    // A part index past the end of a complete segment waits for the next segment's first.
    assert!(pos.satisfies(0, Some(40)));
    assert!(!pos.satisfies(2, Some(0)));
    assert_eq!(pos.last_msn(), Some(1));
}

#[test]
fn audio_only_renditions_cut_on_audio_frames() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(false, true));
    let mut events = Vec::new();
    for n in 0..500u64 {
        let ms = n * 1024 * 1000 / 48_000;
        events.extend(p.push_audio(AudioFrame {
            dts: 900_000 + ms * 90,
            data: Bytes::from_static(&[0x21, 0]),
            received: wall(ms),
        }));
    }
    events.extend(p.finish());
    let all = parts(&events);
    assert!(all.iter().all(|p| p.independent));
    assert!(
        all.iter()
            .all(|p| p.duration_90k <= ticks(Duration::from_millis(334)))
    );
    let segments = events
        .iter()
        .filter(|e| matches!(e, Event::SegmentEnd(_)))
        .count();
    assert_eq!(segments, 6, "10.7 s of audio in 2 s segments");
    check_playlist(&window_of(&events, true).render(&[]));
}

#[test]
fn new_tracks_start_a_discontinuous_segment_with_a_new_init_segment() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(true, true));
    let mut events = feed(&mut p, 90, 30, true);
    assert!(
        p.reconfigure(tracks(true, true)).is_empty(),
        "same tracks change nothing"
    );
    events.extend(p.reconfigure(tracks(true, false)));
    // The new configuration's stream continues on the same timeline.
    for i in 90..150u32 {
        let ms = u64::from(i) * 1000 / 30;
        events.extend(p.push_video(VideoFrame {
            dts: 900_000 + ms * 90,
            pts: 900_000 + ms * 90,
            keyframe: i % 30 == 0,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            received: wall(ms),
        }));
    }
    let inits: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Init { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let text = window_of(&events, false).render(&[]);
    check_playlist(&text);
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    let discontinuity = text.find("#EXT-X-DISCONTINUITY\n").unwrap();
    assert!(
        text[discontinuity..].starts_with(&format!(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"{}\"",
            init_uri(inits[1])
        )),
        "{text}"
    );
}

#[test]
fn rendition_reports_name_the_other_renditions_last_part() {
    let mut p = Packager::new(PackagerConfig::default(), tracks(true, true));
    let w = window_of(&feed(&mut p, 100, 60, true), false);
    let report = w.report("../cam_480/index.m3u8".into()).unwrap();
    let text = w.render(std::slice::from_ref(&report));
    let line = format!(
        "#EXT-X-RENDITION-REPORT:URI=\"../cam_480/index.m3u8\",LAST-MSN={},LAST-PART={}\n",
        report.last_msn, report.last_part
    );
    assert!(text.ends_with(&line), "{text}");
    assert_eq!(
        (report.last_msn, report.last_part),
        w.position().last_part.unwrap()
    );
}

mod tag_units {
    use super::*;
    use crate::flv::{AudioTag, VideoTag};
    use units::{TagUnits, Unit};

    fn video_tag(body: &[u8]) -> VideoTag<'_> {
        VideoTag::parse(body).unwrap()
    }

    #[test]
    fn tags_become_access_units_with_the_tracks_announced_first() {
        let mut u = TagUnits::new();
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(HIGH_720P30_AVCC);
        assert!(
            u.push_video_tag(0, &video_tag(&header), wall(0))
                .unwrap()
                .is_empty()
        );
        u.push_audio_tag(
            0,
            &AudioTag::parse(&[0xaf, 0, 0x11, 0x90]).unwrap(),
            wall(0),
        )
        .unwrap();
        // An SEI-only message carries no picture.
        let sei = [0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x06, 0x05];
        assert!(
            u.push_video_tag(0, &video_tag(&sei), wall(0))
                .unwrap()
                .is_empty()
        );
        let key = [0x17, 1, 0, 0, 66, 0, 0, 0, 2, 0x65, 0x88];
        let units = u.push_video_tag(1_000, &video_tag(&key), wall(5)).unwrap();
        assert_eq!(units.len(), 2);
        let Unit::Tracks(t) = &units[0] else {
            panic!("{units:?}")
        };
        assert_eq!(t.video.as_ref().unwrap().width, 1280);
        assert_eq!(t.audio.as_ref().unwrap().sample_rate, 48_000);
        let Unit::Video(v) = &units[1] else {
            panic!("{units:?}")
        };
        assert!(v.keyframe);
        assert_eq!(v.pts - v.dts, 66 * 90);
        assert_eq!(&v.data[..], &[0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(v.received, wall(5));
        let audio = u
            .push_audio_tag(
                1_010,
                &AudioTag::parse(&[0xaf, 1, 0x21, 0x10]).unwrap(),
                wall(6),
            )
            .unwrap();
        let [Unit::Audio(a)] = &audio[..] else {
            panic!("{audio:?}")
        };
        assert_eq!(a.dts, v.dts + 10 * 90, "one timeline for both tracks");
        let info = u.stream_info();
        assert_eq!(info.codecs(), ["avc1.64001f", "mp4a.40.2"]);
        assert_eq!(info.video.unwrap().resolution, Some((1280, 720)));
    }

    #[test]
    fn audio_without_a_video_header_becomes_audio_only_after_a_second() {
        let mut u = TagUnits::new();
        u.push_audio_tag(
            0,
            &AudioTag::parse(&[0xaf, 0, 0x11, 0x90]).unwrap(),
            wall(0),
        )
        .unwrap();
        let mut announced_at = None;
        for n in 0..100u32 {
            let ms = n * 1024 / 48;
            let units = u
                .push_audio_tag(ms, &AudioTag::parse(&[0xaf, 1, 0x21, 0]).unwrap(), wall(0))
                .unwrap();
            if let Some(Unit::Tracks(t)) = units.first() {
                assert!(t.video.is_none());
                announced_at.get_or_insert(ms);
            }
        }
        let at = announced_at.expect("audio-only announced");
        assert!((1_000..1_030).contains(&at), "{at}");
    }

    #[test]
    fn bad_tags_are_errors_and_change_nothing() {
        let mut u = TagUnits::new();
        let key = [0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
        assert!(
            u.push_video_tag(0, &video_tag(&key), wall(0)).is_err(),
            "no header yet"
        );
        let hevc = VideoTag::parse(&[0x1c, 1, 0, 0, 0, 1]).unwrap();
        assert!(u.push_video_tag(0, &hevc, wall(0)).is_err());
        assert!(
            u.push_video_tag(0, &video_tag(&[0x17, 0, 0, 0, 0, 1, 2]), wall(0))
                .is_err()
        );
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(HIGH_720P30_AVCC);
        u.push_video_tag(0, &video_tag(&header), wall(0)).unwrap();
        let overrun = [0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65];
        assert!(u.push_video_tag(0, &video_tag(&overrun), wall(0)).is_err());
        assert_eq!(u.stream_info().codecs(), ["avc1.64001f"]);
    }
}
