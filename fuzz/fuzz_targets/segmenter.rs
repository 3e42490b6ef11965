//! Arbitrary RTMP audio/video messages into the live segmenter.
//!
//! Input: a sequence of records `[op][ts: u32 BE][len: u16 BE][body; len]`. `op` bit 0 picks
//! video or audio; bit 1 first installs a known-good AVC or AAC sequence header so the fuzzer
//! reaches the segmentation logic quickly; op 0xff calls `finish`.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use media::flv::{AudioTag, VideoTag};
use media::hls::{LiveSegmenter, Segment, SegmenterConfig};

/// x264 1280x720 High profile record.
const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
    0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
    0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
    0xf8, 0x00,
];
/// AAC LC 48 kHz stereo.
const ASC: &[u8] = &[0x11, 0x90];

fuzz_target!(|data: &[u8]| {
    let mut seg = LiveSegmenter::new(SegmenterConfig {
        target_duration: Duration::from_millis(100),
        max_fragment: Duration::from_millis(300),
        window: 3,
        jump_threshold: Duration::from_millis(1_000),
        backward_tolerance: Duration::from_millis(100),
        max_segment_bytes: 8 * 1024,
        first_sequence: 0,
    });
    let mut out: Vec<Segment> = Vec::new();
    let mut rest = data;
    while let [op, t0, t1, t2, t3, l0, l1, tail @ ..] = rest {
        let ts = u32::from_be_bytes([*t0, *t1, *t2, *t3]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        if *op == 0xff {
            out.extend(seg.finish());
            continue;
        }
        let video = op & 1 == 0;
        if op & 2 != 0 {
            if video {
                seg.set_avc_config_bytes(AVCC).expect("known-good AVC config");
            } else {
                seg.set_audio_config_bytes(ASC).expect("known-good ASC");
            }
        }
        if video {
            if let Ok(tag) = VideoTag::parse(body) {
                if let Ok(segs) = seg.push_video_tag(ts, &tag) {
                    out.extend(segs);
                }
            }
        } else if let Ok(tag) = AudioTag::parse(body) {
            if let Ok(segs) = seg.push_audio_tag(ts, &tag) {
                out.extend(segs);
            }
        }
    }
    out.extend(seg.finish());
    let _ = seg.stream_info();

    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut last_dts: HashMap<u16, u64> = HashMap::new();
    for (i, s) in out.iter().enumerate() {
        assert_eq!(s.data.len() % 188, 0, "whole TS packets");
        assert!(s.data.len() >= 2 * 188, "PAT and PMT first");
        assert_eq!(s.sequence, i as u64, "consecutive sequence numbers");
        if let Some(prev) = i.checked_sub(1).map(|p| &out[p]) {
            assert!(s.start_dts_90k >= prev.start_dts_90k, "segment starts are monotonic");
        }
        if s.discontinuity {
            // A new muxer (changed track set) may restart continuity counters.
            cc.clear();
        }
        for pkt in s.data.chunks(188) {
            assert_eq!(pkt[0], 0x47, "sync byte");
            let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
            let counter = pkt[3] & 0x0f;
            if let Some(prev) = cc.insert(pid, counter) {
                assert_eq!(counter, (prev + 1) & 0x0f, "continuity on pid {pid:#x}");
            }
            let pusi = pkt[1] & 0x40 != 0;
            if !pusi || !(pid == 0x100 || pid == 0x101) {
                continue;
            }
            let start = if pkt[3] & 0x20 != 0 { 5 + usize::from(pkt[4]) } else { 4 };
            let pes = &pkt[start..];
            assert_eq!(&pes[..3], &[0, 0, 1], "PES start code");
            let pts = read_ts(&pes[9..14]);
            let dts = if pes[7] & 0x40 != 0 { read_ts(&pes[14..19]) } else { pts };
            assert!(pts >= dts, "PTS below DTS");
            // Timestamps stay far below 2^33 in any fuzz run, so no wrap to account for.
            if let Some(prev) = last_dts.insert(pid, dts) {
                assert!(dts > prev, "DTS on pid {pid:#x} went from {prev} to {dts}");
            }
        }
    }
});

fn read_ts(b: &[u8]) -> u64 {
    (u64::from((b[0] >> 1) & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}
