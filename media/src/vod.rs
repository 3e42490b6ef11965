//! The VOD packager: encoded H.264 access units and raw AAC frames with 90 kHz timestamps in,
//! MPEG-TS segments cut at key frames out, and at the end the VOD media playlist, the I-frame
//! playlist and the facts a master playlist needs (peak and average bitrate measured from the
//! segments as written, codecs and resolution from the real SPS and AudioSpecificConfig).
//!
//! A plain struct with no I/O: the caller pushes frames of each stream in decode order (the two
//! streams may arrive in any interleaving) and writes out each [`VodSegment`] it gets back.
//! Frames are muxed in decode-time order: a frame is held until the other stream has reached its
//! timestamp or has ended.
//!
//! Segmentation: a segment starts at a video key frame whose PTS is at least
//! `target_duration` (less half a frame) after the current segment's start. With key frames at
//! a fixed interval that divides the target, every segment but the last lasts exactly the target
//! and every rendition fed the same frames cuts at the same instants. Audio-only streams cut
//! before the frame that would take a segment past the target. Every key frame is preceded by PAT and PMT, so each
//! one can be addressed alone by a byte range in the I-frame playlist. A last segment shorter
//! than half a second (a frame or two after the last full GOP) is merged into the one before,
//! whose EXTINF then still rounds to the target, as RFC 8216 requires. Because of that, each
//! segment is returned one call later than it is completed.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use crate::aac::{AacError, AudioSpecificConfig};
use crate::avc::{AvcError, SpsInfo};
use crate::playlist::{IFrameVariant, MediaPlaylist, SegmentRef, Variant};
use crate::ts::{TsError, TsMuxer};

/// Raw AAC frames gathered into one PES.
const AUDIO_FRAMES_PER_PES: usize = 5;
/// MPEG-TS timestamps are 90 kHz.
pub const TICKS_PER_SECOND: u64 = 90_000;

#[derive(Debug, Error)]
pub enum VodError {
    #[error("bad AAC configuration: {0}")]
    Aac(#[from] AacError),
    #[error("bad SPS in the encoded video: {0}")]
    Avc(#[from] AvcError),
    #[error("audio frame before the AAC configuration")]
    MissingAudioConfig,
    #[error(transparent)]
    Ts(#[from] TsError),
    #[error("frame pushed after finish")]
    Finished,
}

/// Packager settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VodConfig {
    /// Segment length to aim for, in 90 kHz ticks.
    pub target_duration_90k: u64,
    /// The stream has video (segments start at key frames).
    pub has_video: bool,
    /// The stream has audio.
    pub has_audio: bool,
}

/// One encoded video access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub pts_90k: u64,
    pub dts_90k: u64,
    /// 90 kHz ticks; used for the length of the last segment.
    pub duration_90k: u64,
    pub keyframe: bool,
    /// Annex B bytes (start codes), SPS and PPS in front of key frames.
    pub annexb: Vec<u8>,
}

/// One raw AAC frame (no ADTS header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub pts_90k: u64,
    pub raw: Vec<u8>,
}

/// A finished segment. `data` is a whole number of 188-byte packets starting with PAT and PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VodSegment {
    /// 0, 1, 2... in playback order.
    pub index: u32,
    pub start_90k: u64,
    pub duration_90k: u64,
    pub data: Vec<u8>,
}

/// A key frame's place inside its segment, for the I-frame playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IFrame {
    segment: u32,
    pts_90k: u64,
    /// Offset of the PAT written in front of the key frame.
    offset: u64,
    /// From the PAT to the end of the key frame's packets.
    length: u64,
}

/// What the packager remembers of each written segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    duration_90k: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Open {
    index: u32,
    start_90k: u64,
    data: Vec<u8>,
    /// ADTS frames waiting to be written as one PES, and the PTS of the first.
    audio_pes: Vec<u8>,
    audio_pes_pts: u64,
    audio_pes_frames: usize,
}

/// Everything a master playlist says about one rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionFacts {
    /// Peak segment bitrate, bits per second.
    pub peak_bps: u64,
    /// Total bits over total duration.
    pub average_bps: u64,
    /// RFC 6381 codec strings (video first).
    pub codecs: Vec<String>,
    /// From the SPS.
    pub resolution: Option<(u32, u32)>,
    /// Peak bitrate of the I-frame playlist (the largest key frame over its interval), when
    /// there is video.
    pub iframe_peak_bps: Option<u64>,
    pub duration: Duration,
    pub segments: usize,
}

/// See the module documentation.
#[derive(Debug)]
pub struct VodPackager {
    config: VodConfig,
    muxer: TsMuxer,
    asc: Option<AudioSpecificConfig>,
    sps: Option<SpsInfo>,
    video: VecDeque<VideoFrame>,
    audio: VecDeque<AudioFrame>,
    video_ended: bool,
    audio_ended: bool,
    finished: bool,
    open: Option<Open>,
    next_index: u32,
    /// The latest finished segment, held back until the next one finishes, so that a very
    /// short last segment can be merged into it.
    held: Option<VodSegment>,
    /// End (PTS + duration) of the latest frame written, per stream.
    video_end_90k: u64,
    audio_end_90k: u64,
    written: Vec<Written>,
    iframes: Vec<IFrame>,
}

impl VodPackager {
    pub fn new(config: VodConfig) -> Self {
        VodPackager {
            muxer: TsMuxer::new(config.has_video, config.has_audio),
            video_ended: !config.has_video,
            audio_ended: !config.has_audio,
            config,
            asc: None,
            sps: None,
            video: VecDeque::new(),
            audio: VecDeque::new(),
            finished: false,
            open: None,
            next_index: 0,
            held: None,
            video_end_90k: 0,
            audio_end_90k: 0,
            written: Vec::new(),
            iframes: Vec::new(),
        }
    }

    /// Sets the AudioSpecificConfig of the AAC frames that follow.
    pub fn set_audio_config(&mut self, asc: &[u8]) -> Result<(), VodError> {
        let parsed = AudioSpecificConfig::parse(asc)?;
        // Fail now rather than on the first frame when ADTS cannot describe the stream.
        parsed.adts_header(0)?;
        self.asc = Some(parsed);
        Ok(())
    }

    /// Queues a video access unit (in decode order) and returns the segments it completed.
    pub fn push_video(&mut self, frame: VideoFrame) -> Result<Vec<VodSegment>, VodError> {
        if self.finished {
            return Err(VodError::Finished);
        }
        if frame.keyframe
            && self.sps.is_none()
            && let Some(sps) = find_sps(&frame.annexb)
        {
            self.sps = Some(SpsInfo::parse(sps)?);
        }
        self.video.push_back(frame);
        self.drain(false)
    }

    /// Queues a raw AAC frame and returns the segments it completed.
    pub fn push_audio(&mut self, frame: AudioFrame) -> Result<Vec<VodSegment>, VodError> {
        if self.finished {
            return Err(VodError::Finished);
        }
        if self.asc.is_none() {
            return Err(VodError::MissingAudioConfig);
        }
        self.audio.push_back(frame);
        self.drain(false)
    }

    /// Marks the video stream as ended (the audio stream is no longer held back for it).
    pub fn end_video(&mut self) -> Result<Vec<VodSegment>, VodError> {
        self.video_ended = true;
        self.drain(false)
    }

    /// Marks the audio stream as ended.
    pub fn end_audio(&mut self) -> Result<Vec<VodSegment>, VodError> {
        self.audio_ended = true;
        self.drain(false)
    }

    /// Writes every queued frame and returns the remaining segments, the last one included.
    pub fn finish(&mut self) -> Result<Vec<VodSegment>, VodError> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.video_ended = true;
        self.audio_ended = true;
        let mut out = self.drain(true)?;
        self.finished = true;
        let end = self.video_end_90k.max(self.audio_end_90k);
        let tail = match self.open.take() {
            Some(open) => Some(self.close(open, end)?),
            None => None,
        };
        match (self.held.take(), tail) {
            (Some(previous), Some(tail)) => out.extend(self.merge_short_tail(previous, tail)),
            (previous, tail) => out.extend(previous.into_iter().chain(tail)),
        }
        Ok(out)
    }

    /// Writes queued frames in timestamp order while the order is known.
    fn drain(&mut self, all: bool) -> Result<Vec<VodSegment>, VodError> {
        let mut out = Vec::new();
        loop {
            let next_video = self.video.front().map(|f| f.dts_90k);
            let next_audio = self.audio.front().map(|f| f.pts_90k);
            let take_video = match (next_video, next_audio) {
                (Some(v), Some(a)) => v <= a,
                (Some(_), None) => {
                    if all || self.audio_ended {
                        true
                    } else {
                        break;
                    }
                }
                (None, Some(_)) => {
                    if all || self.video_ended {
                        false
                    } else {
                        break;
                    }
                }
                (None, None) => break,
            };
            if take_video {
                let frame = self.video.pop_front().expect("front checked");
                self.write_video(frame, &mut out)?;
            } else {
                let frame = self.audio.pop_front().expect("front checked");
                self.write_audio(frame, &mut out)?;
            }
        }
        Ok(out)
    }

    fn start_segment(&mut self, start_90k: u64, out: &mut Vec<VodSegment>) -> Result<(), VodError> {
        if let Some(open) = self.open.take() {
            let finished = self.close(open, start_90k)?;
            out.extend(self.held.replace(finished));
        }
        let mut data = Vec::with_capacity(1 << 20);
        self.muxer.write_tables(&mut data);
        self.open = Some(Open {
            index: self.next_index,
            start_90k,
            data,
            audio_pes: Vec::new(),
            audio_pes_pts: 0,
            audio_pes_frames: 0,
        });
        self.next_index += 1;
        Ok(())
    }

    fn write_video(
        &mut self,
        frame: VideoFrame,
        out: &mut Vec<VodSegment>,
    ) -> Result<(), VodError> {
        let due = match &self.open {
            None => true,
            Some(open) => {
                let half_frame = frame.duration_90k / 2;
                frame.pts_90k + half_frame >= open.start_90k + self.config.target_duration_90k
            }
        };
        if self.open.is_none() && !frame.keyframe {
            // Nothing decodable before the first key frame.
            return Ok(());
        }
        let fresh = frame.keyframe && due;
        if fresh {
            self.start_segment(frame.pts_90k, out)?;
        }
        let open = self.open.as_mut().expect("a segment is open");
        if !fresh && frame.keyframe {
            flush_audio(&mut self.muxer, open, self.asc.as_ref())?;
            let offset = open.data.len();
            self.muxer.write_tables(&mut open.data);
            self.muxer.write_video(
                &mut open.data,
                frame.pts_90k,
                frame.dts_90k,
                true,
                &frame.annexb,
            );
            self.iframes.push(IFrame {
                segment: open.index,
                pts_90k: frame.pts_90k,
                offset: offset as u64,
                length: (open.data.len() - offset) as u64,
            });
        } else {
            let before = open.data.len();
            self.muxer.write_video(
                &mut open.data,
                frame.pts_90k,
                frame.dts_90k,
                frame.keyframe,
                &frame.annexb,
            );
            if frame.keyframe {
                // The segment's own PAT and PMT sit at offset 0, right before this frame.
                self.iframes.push(IFrame {
                    segment: open.index,
                    pts_90k: frame.pts_90k,
                    offset: 0,
                    length: open.data.len() as u64,
                });
                debug_assert_eq!(before, 2 * 188);
            }
        }
        self.video_end_90k = self.video_end_90k.max(frame.pts_90k + frame.duration_90k);
        Ok(())
    }

    fn write_audio(
        &mut self,
        frame: AudioFrame,
        out: &mut Vec<VodSegment>,
    ) -> Result<(), VodError> {
        let asc = self.asc.ok_or(VodError::MissingAudioConfig)?;
        let frame_90k = asc.frame_duration_90k();
        if !self.config.has_video {
            // Audio-only: cut before the frame that would take the segment past the target,
            // so no segment is longer than the target.
            let due = self.open.as_ref().is_none_or(|open| {
                frame.pts_90k + frame_90k > open.start_90k + self.config.target_duration_90k
            });
            if due {
                self.start_segment(frame.pts_90k, out)?;
            }
        }
        let Some(open) = self.open.as_mut() else {
            // Audio before the first video key frame has no segment to go in: the first
            // segment starts at that key frame.
            return Ok(());
        };
        if open.audio_pes_frames == 0 {
            open.audio_pes_pts = frame.pts_90k;
        }
        open.audio_pes
            .extend_from_slice(&asc.adts_header(frame.raw.len())?);
        open.audio_pes.extend_from_slice(&frame.raw);
        open.audio_pes_frames += 1;
        if open.audio_pes_frames >= AUDIO_FRAMES_PER_PES {
            flush_audio(&mut self.muxer, open, Some(&asc))?;
        }
        self.audio_end_90k = self.audio_end_90k.max(frame.pts_90k + frame_90k);
        Ok(())
    }

    /// A last segment so short that the two together still round to the target (a frame or
    /// two left over after the last full GOP) is appended to the one before: a 40 ms segment
    /// is a wasted request and its key frame alone would set the peak bitrate.
    fn merge_short_tail(&mut self, mut previous: VodSegment, tail: VodSegment) -> Vec<VodSegment> {
        let merged_90k = previous.duration_90k + tail.duration_90k;
        let rounds_to_target = merged_90k < self.config.target_duration_90k + TICKS_PER_SECOND / 2;
        if !rounds_to_target || tail.index != previous.index + 1 {
            return vec![previous, tail];
        }
        let offset = previous.data.len() as u64;
        for frame in self.iframes.iter_mut().filter(|f| f.segment == tail.index) {
            frame.segment = previous.index;
            frame.offset += offset;
        }
        let tail_written = self.written.pop().expect("the tail was recorded");
        let previous_written = self.written.last_mut().expect("the previous was recorded");
        previous_written.duration_90k += tail_written.duration_90k;
        previous_written.bytes += tail_written.bytes;
        previous.data.extend_from_slice(&tail.data);
        previous.duration_90k = merged_90k;
        self.next_index -= 1;
        vec![previous]
    }

    fn close(&mut self, mut open: Open, end_90k: u64) -> Result<VodSegment, VodError> {
        flush_audio(&mut self.muxer, &mut open, self.asc.as_ref())?;
        let duration_90k = end_90k.saturating_sub(open.start_90k);
        self.written.push(Written {
            duration_90k,
            bytes: open.data.len() as u64,
        });
        Ok(VodSegment {
            index: open.index,
            start_90k: open.start_90k,
            duration_90k,
            data: open.data,
        })
    }

    /// The VOD media playlist of the segments written so far; `uri` names segment `index`.
    pub fn playlist(&self, uri: impl Fn(u32) -> String) -> String {
        let refs: Vec<SegmentRef> = self
            .written
            .iter()
            .enumerate()
            .map(|(i, w)| SegmentRef::new(i as u64, ticks(w.duration_90k), false, uri(i as u32)))
            .collect();
        MediaPlaylist {
            independent_segments: self.config.has_video,
            ..MediaPlaylist::vod(&refs)
        }
        .render()
    }

    /// The I-frame playlist (byte ranges of PAT, PMT and each key frame), or `None` without
    /// video.
    pub fn iframe_playlist(&self, uri: impl Fn(u32) -> String) -> Option<String> {
        if !self.config.has_video || self.iframes.is_empty() {
            return None;
        }
        let refs: Vec<SegmentRef> = self
            .iframe_durations()
            .map(|(i, frame, duration)| SegmentRef {
                byte_range: Some((frame.length, Some(frame.offset))),
                ..SegmentRef::new(i as u64, ticks(duration), false, uri(frame.segment))
            })
            .collect();
        Some(
            MediaPlaylist {
                i_frames_only: true,
                ..MediaPlaylist::vod(&refs)
            }
            .render(),
        )
    }

    /// Each key frame with the time until the next one (the last: until the end).
    fn iframe_durations(&self) -> impl Iterator<Item = (usize, IFrame, u64)> + '_ {
        let end = self.video_end_90k;
        self.iframes.iter().enumerate().map(move |(i, f)| {
            let next = self.iframes.get(i + 1).map_or(end, |n| n.pts_90k);
            (i, *f, next.saturating_sub(f.pts_90k))
        })
    }

    /// Bitrates and codecs for the master playlist, measured over everything written.
    pub fn facts(&self) -> RenditionFacts {
        let total_90k: u64 = self.written.iter().map(|w| w.duration_90k).sum();
        let total_bytes: u64 = self.written.iter().map(|w| w.bytes).sum();
        let peak_bps = self
            .written
            .iter()
            .map(|w| bits_per_second(w.bytes, w.duration_90k))
            .max()
            .unwrap_or(0);
        let mut codecs = Vec::new();
        if let Some(sps) = &self.sps {
            codecs.push(sps.codec_string());
        }
        if let Some(asc) = &self.asc {
            codecs.push(asc.codec_string());
        }
        let iframe_peak_bps = (self.config.has_video && !self.iframes.is_empty()).then(|| {
            self.iframe_durations()
                .map(|(_, f, d)| bits_per_second(f.length, d))
                .max()
                .unwrap_or(0)
        });
        RenditionFacts {
            peak_bps,
            average_bps: bits_per_second(total_bytes, total_90k),
            codecs,
            resolution: self.sps.as_ref().map(|s| (s.width, s.height)),
            iframe_peak_bps,
            duration: ticks(total_90k),
            segments: self.written.len(),
        }
    }
}

impl RenditionFacts {
    /// The rendition's `#EXT-X-STREAM-INF` entry.
    pub fn variant(&self, uri: String, frame_rate: Option<f64>) -> Variant {
        Variant {
            bandwidth: self.peak_bps,
            average_bandwidth: Some(self.average_bps),
            resolution: self.resolution,
            codecs: self.codecs.clone(),
            frame_rate: frame_rate.filter(|_| self.resolution.is_some()),
            uri,
        }
    }

    /// The rendition's `#EXT-X-I-FRAME-STREAM-INF` entry, when it has video.
    pub fn iframe_variant(&self, uri: String) -> Option<IFrameVariant> {
        let bandwidth = self.iframe_peak_bps?;
        Some(IFrameVariant {
            bandwidth,
            resolution: self.resolution,
            codecs: self.codecs.iter().take(1).cloned().collect(),
            uri,
        })
    }
}

fn flush_audio(
    muxer: &mut TsMuxer,
    open: &mut Open,
    asc: Option<&AudioSpecificConfig>,
) -> Result<(), VodError> {
    if open.audio_pes_frames == 0 || asc.is_none() {
        return Ok(());
    }
    muxer.write_audio(&mut open.data, open.audio_pes_pts, &open.audio_pes)?;
    open.audio_pes.clear();
    open.audio_pes_frames = 0;
    Ok(())
}

fn ticks(t: u64) -> Duration {
    Duration::from_nanos(t.saturating_mul(100_000) / 9)
}

fn bits_per_second(bytes: u64, duration_90k: u64) -> u64 {
    if duration_90k == 0 {
        return 0;
    }
    let bits = u128::from(bytes) * 8 * u128::from(TICKS_PER_SECOND);
    u64::try_from(bits.div_ceil(u128::from(duration_90k))).unwrap_or(u64::MAX)
}

/// The first SPS NAL unit (header byte included) of an Annex B access unit.
pub fn find_sps(annexb: &[u8]) -> Option<&[u8]> {
    annexb_nals(annexb).find(|nal| nal.first().is_some_and(|h| h & 0x1f == 7))
}

/// The NAL units of an Annex B byte stream (3- and 4-byte start codes).
pub fn annexb_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            let mut end = s - 3;
            // A 4-byte start code's leading zero belongs to the start code, not the NAL.
            while end > 0 && data[end - 1] == 0 {
                end -= 1;
            }
            end
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(s, e)| &data[s..e.max(s)])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ts::demux::demux;
    use crate::ts::{AUDIO_PID, VIDEO_PID};

    /// SPS of a 320x180 High profile stream as x264 writes it.
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0x9f, 0x9f, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    const ASC_48K_STEREO: [u8; 2] = [0x11, 0x90];

    fn access_unit(key: bool, n: u32) -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
        if key {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(SPS);
            au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]);
            au.extend_from_slice(&[0, 0, 1, 0x65]);
        } else {
            au.extend_from_slice(&[0, 0, 1, 0x41]);
        }
        au.extend_from_slice(&n.to_be_bytes());
        au.extend(std::iter::repeat_n(0x5a, 400));
        au
    }

    /// 30 frames/s with a key frame every `gop` frames, and 48 kHz AAC, for `seconds`.
    fn feed(p: &mut VodPackager, seconds: u64, gop: u64, audio: bool) -> Vec<VodSegment> {
        let mut out = Vec::new();
        let frames = seconds * 30;
        let audio_frames = seconds * 48_000 / 1024;
        let (mut v, mut a) = (0, 0);
        // Interleave roughly as a pipeline would: audio runs a little ahead.
        while v < frames || (audio && a < audio_frames) {
            if audio && a < audio_frames && (a * 1920 <= v * 3000 + 9000 || v >= frames) {
                let frame = AudioFrame {
                    pts_90k: 900_000 + a * 1920,
                    raw: vec![0x21; 200],
                };
                out.extend(p.push_audio(frame).unwrap());
                a += 1;
            } else {
                let frame = VideoFrame {
                    pts_90k: 900_000 + v * 3000,
                    dts_90k: 900_000 + v * 3000,
                    duration_90k: 3000,
                    keyframe: v % gop == 0,
                    annexb: access_unit(v % gop == 0, v as u32),
                };
                out.extend(p.push_video(frame).unwrap());
                v += 1;
            }
        }
        out.extend(p.finish().unwrap());
        out
    }

    fn packager(has_audio: bool) -> VodPackager {
        let mut p = VodPackager::new(VodConfig {
            target_duration_90k: 6 * 90_000,
            has_video: true,
            has_audio,
        });
        if has_audio {
            p.set_audio_config(&ASC_48K_STEREO).unwrap();
        }
        p
    }

    #[test]
    fn segments_cut_at_the_key_frame_on_each_target_boundary() {
        let mut p = packager(true);
        let segments = feed(&mut p, 14, 60, true);
        let durations: Vec<u64> = segments.iter().map(|s| s.duration_90k).collect();
        assert_eq!(durations, vec![540_000, 540_000, 180_000]);
        assert_eq!(
            segments.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let mut ccs = HashMap::new();
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.data.len() % 188, 0);
            assert_eq!(s.start_90k, 900_000 + i as u64 * 540_000);
            let (pes, tables) = demux(&s.data, &mut ccs);
            assert_eq!(
                &tables[..2],
                &[0, 0x1000],
                "segment {i} opens with PAT and PMT"
            );
            let video: Vec<_> = pes.iter().filter(|p| p.pid == VIDEO_PID).collect();
            assert_eq!(video[0].pts, Some(s.start_90k));
            assert!(video[0].payload.windows(4).any(|w| w == [0, 0, 1, 0x65]));
            assert!(
                pes.iter().any(|p| p.pid == AUDIO_PID),
                "audio in segment {i}"
            );
        }
    }

    #[test]
    fn playlists_and_facts_describe_what_was_written() {
        let mut p = packager(true);
        let segments = feed(&mut p, 13, 60, true);
        let playlist = p.playlist(|i| format!("{i:05}.ts"));
        assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(playlist.contains("#EXT-X-TARGETDURATION:6\n"));
        assert!(playlist.contains("#EXTINF:6.000,\n00000.ts\n#EXTINF:6.000,\n00001.ts\n"));
        assert!(playlist.contains("#EXTINF:1.000,\n00002.ts\n#EXT-X-ENDLIST\n"));
        let facts = p.facts();
        assert_eq!(facts.codecs, vec!["avc1.64000d", "mp4a.40.2"]);
        assert_eq!(facts.resolution, Some((320, 180)));
        assert_eq!(facts.segments, 3);
        assert_eq!(facts.duration, Duration::from_secs(13));
        let bytes: u64 = segments.iter().map(|s| s.data.len() as u64).sum();
        assert_eq!(facts.average_bps, (bytes * 8).div_ceil(13));
        let peak = segments
            .iter()
            .map(|s| (s.data.len() as u64 * 8 * 90_000).div_ceil(s.duration_90k))
            .max()
            .unwrap();
        assert_eq!(facts.peak_bps, peak);
        assert!(facts.peak_bps > facts.average_bps);
    }

    #[test]
    fn every_key_frame_is_addressable_by_byte_range() {
        let mut p = packager(true);
        let segments = feed(&mut p, 12, 60, true);
        let playlist = p.iframe_playlist(|i| format!("{i:05}.ts")).unwrap();
        assert!(playlist.contains("#EXT-X-I-FRAMES-ONLY\n"));
        let ranges: Vec<(u64, u64, String)> = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-BYTERANGE:"))
            .zip(playlist.lines().filter(|l| l.ends_with(".ts")))
            .map(|(r, uri)| {
                let (len, off) = r.split_once('@').unwrap();
                (len.parse().unwrap(), off.parse().unwrap(), uri.to_owned())
            })
            .collect();
        assert_eq!(ranges.len(), 6, "{playlist}");
        for (len, off, uri) in ranges {
            let index: usize = uri.trim_end_matches(".ts").parse().unwrap();
            let data = &segments[index].data[off as usize..(off + len) as usize];
            let (pes, tables) = demux(data, &mut HashMap::new());
            assert_eq!(tables, vec![0, 0x1000], "PAT and PMT lead the range");
            let video: Vec<_> = pes.iter().filter(|p| p.pid == VIDEO_PID).collect();
            assert_eq!(video.len(), 1, "exactly one frame in range {off}+{len}");
            assert!(video[0].payload.windows(4).any(|w| w == [0, 0, 1, 0x65]));
        }
        assert!(p.facts().iframe_peak_bps.unwrap() > 0);
    }

    #[test]
    fn video_only_and_audio_only_streams_are_packaged() {
        let mut video_only = packager(false);
        let segments = feed(&mut video_only, 7, 60, false);
        assert_eq!(segments.len(), 2);
        assert_eq!(video_only.facts().codecs, vec!["avc1.64000d"]);

        let mut audio_only = VodPackager::new(VodConfig {
            target_duration_90k: 6 * 90_000,
            has_video: false,
            has_audio: true,
        });
        audio_only.set_audio_config(&ASC_48K_STEREO).unwrap();
        let mut out = Vec::new();
        for a in 0..(13 * 48_000 / 1024) {
            let frame = AudioFrame {
                pts_90k: a * 1920,
                raw: vec![0x21; 100],
            };
            out.extend(audio_only.push_audio(frame).unwrap());
        }
        out.extend(audio_only.finish().unwrap());
        assert_eq!(out.len(), 3);
        // 6 s is 281.25 frames of 1920 ticks: a segment holds the 281 that fit.
        assert_eq!(out[0].duration_90k, 281 * 1920);
        assert!(out.iter().all(|s| s.duration_90k <= 6 * 90_000));
        let facts = audio_only.facts();
        assert_eq!(facts.codecs, vec!["mp4a.40.2"]);
        assert_eq!(facts.resolution, None);
        assert!(audio_only.iframe_playlist(|i| i.to_string()).is_none());
    }

    #[test]
    fn a_tail_of_a_frame_or_two_joins_the_last_segment() {
        let mut p = packager(true);
        // 12 s and 2 frames: the frames after the last full segment start a new GOP.
        let mut out = Vec::new();
        for v in 0..362u64 {
            let frame = VideoFrame {
                pts_90k: v * 3000,
                dts_90k: v * 3000,
                duration_90k: 3000,
                keyframe: v % 60 == 0,
                annexb: access_unit(v % 60 == 0, v as u32),
            };
            out.extend(p.push_video(frame).unwrap());
        }
        out.extend(p.finish().unwrap());
        let durations: Vec<u64> = out.iter().map(|s| s.duration_90k).collect();
        assert_eq!(durations, vec![540_000, 546_000]);
        let playlist = p.playlist(|i| format!("{i}.ts"));
        assert!(playlist.contains("#EXT-X-TARGETDURATION:6\n"), "{playlist}");
        assert!(
            playlist.contains("#EXTINF:6.067,\n1.ts\n#EXT-X-ENDLIST"),
            "{playlist}"
        );
        // The tail's key frame is still addressable, now inside segment 1.
        let iframes = p.iframe_playlist(|i| format!("{i}.ts")).unwrap();
        let last_range = iframes
            .lines()
            .rev()
            .find(|l| l.starts_with("#EXT-X-BYTERANGE"))
            .unwrap();
        let offset: usize = last_range.rsplit('@').next().unwrap().parse().unwrap();
        assert!(offset > 0 && offset < out[1].data.len());
        assert_eq!(out[1].data[offset], 0x47);
        assert_eq!(p.facts().segments, 2);
    }

    #[test]
    fn frames_before_the_first_key_frame_are_dropped() {
        let mut p = packager(false);
        let p_frame = VideoFrame {
            pts_90k: 0,
            dts_90k: 0,
            duration_90k: 3000,
            keyframe: false,
            annexb: access_unit(false, 0),
        };
        assert!(p.push_video(p_frame).unwrap().is_empty());
        assert!(p.finish().unwrap().is_empty());
        assert_eq!(p.facts().segments, 0);
    }

    #[test]
    fn audio_without_configuration_is_an_error() {
        let mut p = VodPackager::new(VodConfig {
            target_duration_90k: 540_000,
            has_video: true,
            has_audio: true,
        });
        let err = p.push_audio(AudioFrame {
            pts_90k: 0,
            raw: vec![1],
        });
        assert!(matches!(err, Err(VodError::MissingAudioConfig)));
    }

    #[test]
    fn annexb_nals_handles_both_start_code_lengths() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals: Vec<&[u8]> = annexb_nals(&data).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(find_sps(&data), Some(&[0x67, 1, 2][..]));
    }
}
