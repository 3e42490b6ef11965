//! MPEG-TS muxer (ISO/IEC 13818-1) for one program with at most one H.264 and one AAC (ADTS)
//! stream, as HLS segments need.
//!
//! Units: every timestamp is in 90 kHz ticks and is written modulo 2^33, so callers may pass
//! an ever-growing `u64` timeline. Continuity counters live in the [`TsMuxer`] and continue
//! across calls, so consecutive HLS segments cut from one muxer's output play as one stream.

use thiserror::Error;

/// Size of one transport stream packet.
pub const PACKET_LEN: usize = 188;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the H.264 elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// Stream type for H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type for AAC audio in ADTS framing.
pub const STREAM_TYPE_ADTS_AAC: u8 = 0x0f;
/// PCR is written this many 90 kHz ticks (700 ms) before the DTS it travels with, giving the
/// decoder buffer time (the same margin as ffmpeg's default `muxdelay`).
pub const PCR_DELAY_90K: u64 = 63_000;
/// Timestamps are 33-bit.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

const PAT_PID: u16 = 0;
const PROGRAM_NUMBER: u16 = 1;
const VIDEO_STREAM_ID: u8 = 0xe0;
const AUDIO_STREAM_ID: u8 = 0xc0;
/// Largest PES payload (after the 6-byte PES start) that a non-zero PES_packet_length can
/// describe.
const MAX_PES_LEN: usize = 0xffff;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TsError {
    #[error(
        "audio PES of {len} bytes exceeds the 65535-byte PES_packet_length limit; \
         write fewer ADTS frames per call"
    )]
    AudioPesTooLarge { len: usize },
}

/// MPEG-2 CRC-32 (polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no reflection, no final
/// XOR) as used by PSI sections.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Writes a 33-bit timestamp in the 5-byte PES layout with the 4-bit `prefix`.
fn put_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts & TIMESTAMP_MASK;
    out.push((prefix << 4) | (((ts >> 29) as u8) & 0x0e) | 1);
    out.push((ts >> 22) as u8);
    out.push((((ts >> 14) as u8) & 0xfe) | 1);
    out.push((ts >> 7) as u8);
    out.push((((ts << 1) as u8) & 0xfe) | 1);
}

/// Per-packet options for the first TS packet of a PES.
#[derive(Debug, Clone, Copy, Default)]
struct FirstPacket {
    pcr_90k: Option<u64>,
    random_access: bool,
}

/// An MPEG-TS muxer. Holds only continuity counters and a scratch buffer; output goes to the
/// caller's `Vec<u8>` and is always a whole number of 188-byte packets.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    has_video: bool,
    has_audio: bool,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    pes: Vec<u8>,
}

impl TsMuxer {
    /// A muxer for a program with the given streams. With video, the PCR travels on the video
    /// PID; audio-only programs carry it on the audio PID.
    pub fn new(has_video: bool, has_audio: bool) -> Self {
        TsMuxer {
            has_video,
            has_audio,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
            pes: Vec::new(),
        }
    }

    pub fn has_video(&self) -> bool {
        self.has_video
    }

    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    fn pcr_pid(&self) -> u16 {
        if self.has_video || !self.has_audio {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// Appends one PAT packet and one PMT packet. Call at the start of every segment.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&[0x00, 0xb0, 0x0d]); // table_id, syntax=1, length 13
        pat.extend_from_slice(&1u16.to_be_bytes()); // transport_stream_id
        pat.extend_from_slice(&[0xc1, 0x00, 0x00]); // version 0, current, section 0/0
        pat.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        pat.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        let crc = crc32_mpeg2(&pat);
        pat.extend_from_slice(&crc.to_be_bytes());
        Self::write_section(out, PAT_PID, &mut self.cc_pat, &pat);

        let mut streams = Vec::with_capacity(10);
        if self.has_video {
            streams.push(STREAM_TYPE_H264);
            streams.extend_from_slice(&(0xe000 | VIDEO_PID).to_be_bytes());
            streams.extend_from_slice(&[0xf0, 0x00]);
        }
        if self.has_audio {
            streams.push(STREAM_TYPE_ADTS_AAC);
            streams.extend_from_slice(&(0xe000 | AUDIO_PID).to_be_bytes());
            streams.extend_from_slice(&[0xf0, 0x00]);
        }
        // section_length counts from after the length field through the CRC.
        let section_len = 9 + streams.len() + 4;
        let mut pmt = Vec::with_capacity(3 + section_len);
        pmt.push(0x02);
        pmt.extend_from_slice(&(0xb000 | section_len as u16).to_be_bytes());
        pmt.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        pmt.extend_from_slice(&[0xc1, 0x00, 0x00]);
        pmt.extend_from_slice(&(0xe000 | self.pcr_pid()).to_be_bytes());
        pmt.extend_from_slice(&[0xf0, 0x00]); // program_info_length 0
        pmt.extend_from_slice(&streams);
        let crc = crc32_mpeg2(&pmt);
        pmt.extend_from_slice(&crc.to_be_bytes());
        Self::write_section(out, PMT_PID, &mut self.cc_pmt, &pmt);
    }

    fn write_section(out: &mut Vec<u8>, pid: u16, cc: &mut u8, section: &[u8]) {
        // Sections here are at most 29 bytes, always one packet.
        let start = out.len();
        out.extend_from_slice(&[
            0x47,
            0x40 | ((pid >> 8) as u8 & 0x1f),
            pid as u8,
            0x10 | *cc,
            0x00, // pointer_field
        ]);
        *cc = (*cc + 1) & 0x0f;
        out.extend_from_slice(section);
        out.resize(start + PACKET_LEN, 0xff);
    }

    /// Appends one video access unit (Annex B bytes, normally from
    /// [`crate::avc::avcc_to_annexb`]) as a PES on [`VIDEO_PID`].
    ///
    /// `pts_90k`/`dts_90k` are 90 kHz ticks (PTS >= DTS). The first packet carries a PCR of
    /// `dts - PCR_DELAY_90K` and, when `keyframe`, the random_access_indicator.
    pub fn write_video(
        &mut self,
        out: &mut Vec<u8>,
        pts_90k: u64,
        dts_90k: u64,
        keyframe: bool,
        annexb: &[u8],
    ) {
        let mut pes = std::mem::take(&mut self.pes);
        pes.clear();
        let with_dts = pts_90k & TIMESTAMP_MASK != dts_90k & TIMESTAMP_MASK;
        let header_data_len: u8 = if with_dts { 10 } else { 5 };
        let pes_len = 3 + usize::from(header_data_len) + annexb.len();
        pes.extend_from_slice(&[0, 0, 1, VIDEO_STREAM_ID]);
        // 0 = unbounded, allowed for video elementary streams only.
        let len_field = if pes_len <= MAX_PES_LEN {
            pes_len as u16
        } else {
            0
        };
        pes.extend_from_slice(&len_field.to_be_bytes());
        pes.push(0x84); // marker '10', data_alignment_indicator
        pes.push(if with_dts { 0xc0 } else { 0x80 });
        pes.push(header_data_len);
        if with_dts {
            put_timestamp(&mut pes, 0x3, pts_90k);
            put_timestamp(&mut pes, 0x1, dts_90k);
        } else {
            put_timestamp(&mut pes, 0x2, pts_90k);
        }
        pes.extend_from_slice(annexb);
        let pcr = (self.pcr_pid() == VIDEO_PID).then(|| dts_90k.wrapping_sub(PCR_DELAY_90K));
        let first = FirstPacket {
            pcr_90k: pcr,
            random_access: keyframe,
        };
        let mut cc = self.cc_video;
        write_pes_packets(out, VIDEO_PID, &mut cc, &pes, first);
        self.cc_video = cc;
        self.pes = pes;
    }

    /// Appends ADTS AAC frames (one or more, each with its 7-byte ADTS header) as one PES on
    /// [`AUDIO_PID`] with the PTS of the first frame (90 kHz ticks). The PES payload must stay
    /// under 65527 bytes; a few frames per call is the norm.
    pub fn write_audio(
        &mut self,
        out: &mut Vec<u8>,
        pts_90k: u64,
        adts_frames: &[u8],
    ) -> Result<(), TsError> {
        let pes_len = 3 + 5 + adts_frames.len();
        if pes_len > MAX_PES_LEN {
            return Err(TsError::AudioPesTooLarge {
                len: adts_frames.len(),
            });
        }
        let mut pes = std::mem::take(&mut self.pes);
        pes.clear();
        pes.extend_from_slice(&[0, 0, 1, AUDIO_STREAM_ID]);
        pes.extend_from_slice(&(pes_len as u16).to_be_bytes());
        pes.extend_from_slice(&[0x84, 0x80, 5]);
        put_timestamp(&mut pes, 0x2, pts_90k);
        pes.extend_from_slice(adts_frames);
        let audio_carries_pcr = self.pcr_pid() == AUDIO_PID;
        let first = FirstPacket {
            pcr_90k: audio_carries_pcr.then(|| pts_90k.wrapping_sub(PCR_DELAY_90K)),
            // Every AAC frame is a random access point; flagging it helps audio-only seeking.
            random_access: audio_carries_pcr,
        };
        let mut cc = self.cc_audio;
        write_pes_packets(out, AUDIO_PID, &mut cc, &pes, first);
        self.cc_audio = cc;
        self.pes = pes;
        Ok(())
    }
}

/// Splits a PES into TS packets. The first packet gets an adaptation field when `first` asks
/// for PCR or random access; the last packet is padded with adaptation-field stuffing.
fn write_pes_packets(out: &mut Vec<u8>, pid: u16, cc: &mut u8, pes: &[u8], first: FirstPacket) {
    let mut rest = pes;
    let mut is_first = true;
    out.reserve((pes.len() / 184 + 2) * PACKET_LEN);
    loop {
        let start = out.len();
        let pusi = if is_first { 0x40 } else { 0x00 };
        // Adaptation field contents (after the length byte) other than stuffing: flags and an
        // optional 6-byte PCR.
        let mut af = [0u8; 7];
        let mut af_len = 0;
        if is_first && (first.pcr_90k.is_some() || first.random_access) {
            let mut flags = 0u8;
            if first.random_access {
                flags |= 0x40;
            }
            if first.pcr_90k.is_some() {
                flags |= 0x10;
            }
            af[0] = flags;
            af_len = 1;
            if let Some(pcr) = first.pcr_90k {
                let base = pcr & TIMESTAMP_MASK;
                // 33-bit base, 6 reserved bits (1), 9-bit extension (0).
                af[1..7].copy_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    (((base & 1) as u8) << 7) | 0x7e,
                    0x00,
                ]);
                af_len = 7;
            }
        }
        let af = &af[..af_len];
        let af_total = if af.is_empty() { 0 } else { 1 + af.len() };
        let room = 184 - af_total;
        let take = rest.len().min(room);
        let stuffing = room - take;
        let (afc, af_len_byte_needed) = if af_total > 0 || stuffing > 0 {
            (0x30, true) // adaptation field + payload
        } else {
            (0x10, false)
        };
        out.extend_from_slice(&[0x47, pusi | ((pid >> 8) as u8 & 0x1f), pid as u8, afc | *cc]);
        *cc = (*cc + 1) & 0x0f;
        if af_len_byte_needed {
            if af_total > 0 {
                out.push((af.len() + stuffing) as u8);
                out.extend_from_slice(af);
                out.resize(out.len() + stuffing, 0xff);
            } else {
                // Stuffing only: 1 byte is just the zero length; more needs a flags byte.
                out.push((stuffing - 1) as u8);
                if stuffing >= 2 {
                    out.push(0x00);
                    out.resize(out.len() + stuffing - 2, 0xff);
                }
            }
        }
        let (now, later) = rest.split_at(take);
        out.extend_from_slice(now);
        debug_assert_eq!(out.len() - start, PACKET_LEN);
        rest = later;
        is_first = false;
        if rest.is_empty() {
            break;
        }
    }
}

/// A minimal demultiplexer for tests in this crate: checks packet structure and continuity,
/// and reassembles PES packets with their timestamps and adaptation-field flags.
#[cfg(test)]
pub(crate) mod demux {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Pes {
        pub pid: u16,
        pub pts: Option<u64>,
        pub dts: Option<u64>,
        pub pcr: Option<u64>,
        pub random_access: bool,
        pub payload: Vec<u8>,
    }

    fn read_ts(b: &[u8]) -> u64 {
        (u64::from((b[0] >> 1) & 0x07) << 30)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | u64::from(b[4] >> 1)
    }

    /// Demuxes `data`, panicking with a description on any structural error. `ccs` carries
    /// continuity counters between calls (pass the same map for consecutive segments).
    pub fn demux(data: &[u8], ccs: &mut HashMap<u16, u8>) -> (Vec<Pes>, Vec<u16>) {
        assert_eq!(data.len() % PACKET_LEN, 0, "not whole packets");
        let mut out = Vec::new();
        let mut tables = Vec::new();
        let mut cur: HashMap<u16, (Pes, usize)> = HashMap::new();
        for (i, pkt) in data.chunks(PACKET_LEN).enumerate() {
            assert_eq!(pkt[0], 0x47, "packet {i}: bad sync byte");
            let pusi = pkt[1] & 0x40 != 0;
            let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
            let afc = (pkt[3] >> 4) & 3;
            let cc = pkt[3] & 0x0f;
            if let Some(prev) = ccs.insert(pid, cc) {
                assert_eq!(cc, (prev + 1) & 0x0f, "packet {i}: CC jump on pid {pid:#x}");
            }
            let mut pos = 4;
            let mut pcr = None;
            let mut ra = false;
            if afc & 2 != 0 {
                let len = usize::from(pkt[4]);
                assert!(len <= 183, "packet {i}: AF length {len}");
                if len > 0 {
                    let flags = pkt[5];
                    ra = flags & 0x40 != 0;
                    if flags & 0x10 != 0 {
                        let b = &pkt[6..12];
                        pcr = Some(
                            (u64::from(b[0]) << 25)
                                | (u64::from(b[1]) << 17)
                                | (u64::from(b[2]) << 9)
                                | (u64::from(b[3]) << 1)
                                | u64::from(b[4] >> 7),
                        );
                    }
                    for &s in &pkt[6 + if pcr.is_some() { 6 } else { 0 }..5 + len] {
                        assert_eq!(s, 0xff, "packet {i}: stuffing byte");
                    }
                }
                pos = 5 + len;
            }
            assert!(afc & 1 != 0, "packet {i}: no payload");
            let payload = &pkt[pos..];
            if pid == 0 || pid == PMT_PID {
                assert!(pusi);
                let sec_len = (usize::from(payload[2] & 0x0f) << 8) | usize::from(payload[3]);
                let section = &payload[1..4 + sec_len];
                assert_eq!(crc32_mpeg2(section), 0, "table on pid {pid:#x}: bad CRC");
                tables.push(pid);
                continue;
            }
            if pusi {
                if let Some((pes, declared)) = cur.remove(&pid) {
                    out.push(finish(pes, declared));
                }
                assert_eq!(&payload[..3], &[0, 0, 1], "packet {i}: no PES start code");
                let flags = payload[7];
                let hlen = usize::from(payload[8]);
                let pts = (flags & 0x80 != 0).then(|| read_ts(&payload[9..14]));
                let dts = (flags & 0x40 != 0).then(|| read_ts(&payload[14..19]));
                let declared = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
                let pes = Pes {
                    pid,
                    pts,
                    dts,
                    pcr,
                    random_access: ra,
                    payload: payload[9 + hlen..].to_vec(),
                };
                cur.insert(pid, (pes, declared));
            } else {
                let (pes, _) = cur.get_mut(&pid).expect("continuation without start");
                pes.payload.extend_from_slice(payload);
            }
        }
        let mut rest: Vec<_> = cur.into_values().collect();
        rest.sort_by_key(|(p, _)| p.pid);
        for (pes, declared) in rest {
            out.push(finish(pes, declared));
        }
        (out, tables)
    }

    /// Checks a non-zero PES_packet_length against the reassembled size.
    fn finish(pes: Pes, declared: usize) -> Pes {
        if declared != 0 {
            let header =
                3 + 5 * usize::from(pes.pts.is_some()) + 5 * usize::from(pes.dts.is_some());
            assert_eq!(
                declared,
                header + pes.payload.len(),
                "PES_packet_length on pid {:#x}",
                pes.pid
            );
        }
        pes
    }
}

#[cfg(test)]
mod tests {
    use super::demux::demux;
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn crc_of_ffmpeg_pat_matches() {
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0x2ab1_04b2);
    }

    #[test]
    fn tables_match_ffmpeg_byte_for_byte() {
        let mut m = TsMuxer::new(true, true);
        let mut out = Vec::new();
        m.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET_LEN);
        // Captured from `ffmpeg -i x.flv -c copy -f mpegts` (H.264 + AAC).
        let pat = [
            0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00,
            0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2,
        ];
        let pmt = [
            0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1,
            0x00, 0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00, 0x2f,
            0x44, 0xb9, 0x9b,
        ];
        assert_eq!(&out[..pat.len()], &pat);
        assert!(out[pat.len()..PACKET_LEN].iter().all(|&b| b == 0xff));
        assert_eq!(&out[PACKET_LEN..PACKET_LEN + pmt.len()], &pmt);
        // Second call continues the counters.
        m.write_tables(&mut out);
        assert_eq!(out[2 * PACKET_LEN + 3], 0x11);
        assert_eq!(out[3 * PACKET_LEN + 3], 0x11);
    }

    #[test]
    fn audio_only_program_puts_pcr_on_audio() {
        let mut m = TsMuxer::new(false, true);
        let mut out = Vec::new();
        m.write_tables(&mut out);
        let pmt = &out[PACKET_LEN + 5..];
        let pcr_pid = (u16::from(pmt[8] & 0x1f) << 8) | u16::from(pmt[9]);
        assert_eq!(pcr_pid, AUDIO_PID);
        assert_eq!(pmt[12], STREAM_TYPE_ADTS_AAC);
        m.write_audio(&mut out, 90_000, &[0xff, 0xf1, 1, 2])
            .unwrap();
        let (pes, _) = demux(&out, &mut HashMap::new());
        assert_eq!(pes[0].pcr, Some(90_000 - PCR_DELAY_90K));
    }

    #[test]
    fn every_payload_size_packs_into_whole_packets_and_round_trips() {
        let mut m = TsMuxer::new(true, true);
        let mut ccs = HashMap::new();
        for len in (0..600).chain([65_530, 70_000]) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            m.write_video(&mut out, 200_000 + len as u64, 190_000, len % 2 == 0, &data);
            if len < 65_000 {
                m.write_audio(&mut out, 200_000, &data).unwrap();
            }
            let (pes, _) = demux(&out, &mut ccs);
            assert_eq!(pes[0].payload, data, "video len {len}");
            assert_eq!(pes[0].pts, Some(200_000 + len as u64));
            assert_eq!(pes[0].dts, Some(190_000));
            assert_eq!(pes[0].pcr, Some(190_000 - PCR_DELAY_90K));
            assert_eq!(pes[0].random_access, len % 2 == 0);
            if len < 65_000 {
                assert_eq!(pes[1].payload, data, "audio len {len}");
                assert_eq!(pes[1].pts, Some(200_000));
                assert_eq!(pes[1].dts, None);
                assert_eq!(pes[1].pcr, None);
            }
        }
    }

    #[test]
    fn equal_pts_and_dts_write_pts_only() {
        let mut m = TsMuxer::new(true, false);
        let mut out = Vec::new();
        m.write_video(&mut out, 123_456, 123_456, false, &[1, 2, 3]);
        let (pes, _) = demux(&out, &mut HashMap::new());
        assert_eq!(pes[0].pts, Some(123_456));
        assert_eq!(pes[0].dts, None);
    }

    #[test]
    fn timestamps_wrap_at_33_bits() {
        let mut m = TsMuxer::new(true, false);
        let mut out = Vec::new();
        let big = (1u64 << 33) + 5_000;
        m.write_video(&mut out, big + 3000, big, true, &[9]);
        let (pes, _) = demux(&out, &mut HashMap::new());
        assert_eq!(pes[0].pts, Some(8_000));
        assert_eq!(pes[0].dts, Some(5_000));
        // PCR goes below zero and wraps rather than panicking.
        assert_eq!(
            pes[0].pcr,
            Some((5_000 + (1 << 33) - PCR_DELAY_90K) & TIMESTAMP_MASK)
        );
    }

    #[test]
    fn continuity_counters_continue_across_segments() {
        let mut m = TsMuxer::new(true, true);
        let mut ccs = HashMap::new();
        for _ in 0..20 {
            let mut seg = Vec::new();
            m.write_tables(&mut seg);
            m.write_video(&mut seg, 1000, 1000, true, &[0u8; 1000]);
            m.write_audio(&mut seg, 1000, &[0u8; 300]).unwrap();
            let (_, tables) = demux(&seg, &mut ccs);
            assert_eq!(tables, [0, PMT_PID]);
        }
    }

    #[test]
    fn oversized_audio_is_an_error() {
        let mut m = TsMuxer::new(false, true);
        let mut out = Vec::new();
        assert_eq!(
            m.write_audio(&mut out, 0, &vec![0; 70_000]),
            Err(TsError::AudioPesTooLarge { len: 70_000 })
        );
        assert!(out.is_empty());
    }
}
