//! The live HLS segmenter: FLV/RTMP audio and video tags in, MPEG-TS segments out.
//!
//! A plain struct with no I/O and no clock: the caller pushes tags with their RTMP timestamps
//! (milliseconds) and receives each completed [`Segment`]. Inside, each stream's timestamps are
//! mapped onto one continuous output timeline in 90 kHz ticks that starts at
//! [`OUTPUT_START_90K`]. The 32-bit millisecond wrap is followed seamlessly. Timestamp jumps
//! (encoder restarts, clock steps) are rebased so the new timeline continues one frame after the
//! old one, and they start a discontinuous segment. Output DTS therefore strictly increase per
//! stream.
//!
//! Segmentation: the first segment starts at the first video key frame (earlier frames, and
//! audio before it, are dropped). A segment is cut at a key frame once it is at least
//! `target_duration` long, and at any frame once it reaches `max_fragment` or
//! `max_segment_bytes`. Audio-only streams are cut at `target_duration` on any audio frame. A
//! stream counts as audio-only when no AVC sequence header arrives within its first second of
//! audio. Audio and video are interleaved by decode time through a reorder buffer. The buffer
//! holds one stream back for up to 1 s while the other is silent.
//!
//! Only H.264 video and AAC audio can be packaged. Other codecs are rejected frame by frame
//! with [`SegmenterError`], and the rest of the stream carries on.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::aac::{AacError, AudioSpecificConfig};
use crate::avc::{self, AvcConfig, AvcError, SpsInfo};
use crate::flv::{
    AacPacketType, AudioTag, FrameType, SoundFormat, VideoCodec, VideoPacketType, VideoTag,
};
use crate::playlist::SegmentRef;
pub use crate::timeline::OUTPUT_START_90K;
use crate::timeline::{Timeline, Track};
use crate::ts::TsMuxer;

/// How long one stream may run ahead while the other is expected but silent before its frames
/// are released anyway (milliseconds of that stream's own timestamps).
const INTERLEAVE_WAIT_MS: u64 = 1_000;
/// Frame-count cap per reorder queue, for inputs whose timestamps do not advance.
const MAX_QUEUED_FRAMES: usize = 1_024;
/// Raw AAC frames gathered into one PES (fewer, fuller TS packets).
const AUDIO_FRAMES_PER_PES: usize = 5;
/// Keep audio PES well below the 64 KiB PES length limit.
const MAX_AUDIO_PES_BYTES: usize = 48 * 1024;

/// Segmenter settings. All durations are media time (timestamps), not wall time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Cut at the first key frame after a segment reaches this length.
    pub target_duration: Duration,
    /// Cut at any frame once a segment reaches this length, key frame or not.
    pub max_fragment: Duration,
    /// Number of segments a live playlist lists; also the span of the bitrate estimate.
    pub window: usize,
    /// A forward timestamp step larger than this (within one stream) is a discontinuity.
    pub jump_threshold: Duration,
    /// A backward timestamp step larger than this (within one stream) is a discontinuity;
    /// smaller steps are clamped to keep output monotonic.
    pub backward_tolerance: Duration,
    /// Cut a segment once it holds this many bytes, whatever its duration (protects memory
    /// against streams whose timestamps never advance).
    pub max_segment_bytes: usize,
    /// Sequence number of the first segment.
    pub first_sequence: u64,
    /// The input timestamp (ms) that maps to [`OUTPUT_START_90K`]; `None`: the first frame's.
    /// Variants of one stream given the same anchor get the same timestamps.
    pub timeline_anchor_ms: Option<u32>,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            target_duration: Duration::from_secs(2),
            max_fragment: Duration::from_secs(6),
            window: 6,
            jump_threshold: Duration::from_secs(5),
            backward_tolerance: Duration::from_millis(500),
            max_segment_bytes: 64 * 1024 * 1024,
            first_sequence: 0,
            timeline_anchor_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmenterError {
    #[error("bad AVC data: {0}")]
    Avc(#[from] AvcError),
    #[error("bad AAC data: {0}")]
    Aac(#[from] AacError),
    #[error("video codec {0:?} is not supported for HLS/MPEG-TS (only H.264/AVC); frame dropped")]
    UnsupportedVideoCodec(VideoCodec),
    #[error("audio format {0:?} is not supported for HLS/MPEG-TS (only AAC); frame dropped")]
    UnsupportedAudioCodec(SoundFormat),
    #[error("video frame before any AVC sequence header; frame dropped")]
    MissingVideoConfig,
    #[error("audio frame before any AAC sequence header; frame dropped")]
    MissingAudioConfig,
}

/// A completed MPEG-TS segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub sequence: u64,
    /// From timestamps: next segment's first DTS minus this one's; for the last segment, its
    /// last frame's timestamp plus one frame duration.
    pub duration: Duration,
    /// Same, in 90 kHz ticks.
    pub duration_90k: u64,
    /// DTS of the first frame, in 90 kHz ticks on the output timeline (unwrapped).
    pub start_dts_90k: u64,
    /// Write `#EXT-X-DISCONTINUITY` before this segment.
    pub discontinuity: bool,
    /// PAT, PMT, then PES packets; a whole number of 188-byte packets.
    pub data: Bytes,
    /// The first video frame of the segment is a key frame (always true for audio-only).
    pub starts_with_keyframe: bool,
}

impl Segment {
    /// The playlist entry for this segment under `uri`.
    pub fn to_ref(&self, uri: String) -> SegmentRef {
        SegmentRef::new(self.sequence, self.duration, self.discontinuity, uri)
    }
}

/// Video facts for master playlists and stream listings.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// RFC 6381, e.g. `avc1.64001f`.
    pub codec: String,
    /// Displayed size from the SPS, when it parsed.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second from the SPS VUI, when present.
    pub frame_rate: Option<f64>,
}

/// Audio facts for master playlists and stream listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// RFC 6381, e.g. `mp4a.40.2`.
    pub codec: String,
    pub sample_rate: u32,
    pub channels: Option<u8>,
}

/// What the segmenter knows about the stream so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamInfo {
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
    /// Mean bitrate of the MPEG-TS output over the last `window` segments, bits per second.
    pub average_bitrate_bps: Option<u64>,
    /// Highest single-segment bitrate over the same segments (what HLS BANDWIDTH means).
    pub peak_bitrate_bps: Option<u64>,
}

impl StreamInfo {
    /// Codec strings for `CODECS=`, video first.
    pub fn codecs(&self) -> Vec<String> {
        self.video
            .iter()
            .map(|v| v.codec.clone())
            .chain(self.audio.iter().map(|a| a.codec.clone()))
            .collect()
    }
}

/// A frame waiting in the reorder buffer; timestamps on the output timeline, 90 kHz.
#[derive(Debug)]
struct Frame {
    dts: u64,
    pts: u64,
    keyframe: bool,
    /// Timeline epoch; a frame from a newer epoch than the open segment starts a new,
    /// discontinuous segment.
    epoch: u64,
    /// Annex B access unit, or one ADTS frame.
    data: Vec<u8>,
}

fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros() * 9 / 100).unwrap_or(u64::MAX)
}

fn ticks_to_duration(t: u64) -> Duration {
    Duration::from_secs(t / 90_000) + Duration::from_nanos((t % 90_000) * 100_000 / 9)
}

/// The segment being built.
#[derive(Debug)]
struct OpenSegment {
    start_dts: u64,
    /// Estimated end (latest frame DTS plus that frame's duration), 90 kHz.
    end_estimate: u64,
    epoch: u64,
    discontinuity: bool,
    /// `None` until the first video frame is written.
    first_video_key: Option<bool>,
    data: Vec<u8>,
}

/// The live segmenter. See the module documentation.
#[derive(Debug)]
pub struct LiveSegmenter {
    config: SegmenterConfig,
    avc: Option<AvcConfig>,
    avc_raw: Vec<u8>,
    sps: Option<SpsInfo>,
    asc: Option<AudioSpecificConfig>,
    asc_raw: Vec<u8>,
    timeline: Timeline,
    vq: VecDeque<Frame>,
    aq: VecDeque<Frame>,
    /// Track set of the current muxer; `None` until the first frame is released.
    muxer: Option<TsMuxer>,
    open: Option<OpenSegment>,
    /// The next segment to open is discontinuous (after `finish` or a track change).
    next_discontinuity: bool,
    audio_pes: Vec<u8>,
    audio_pes_pts: u64,
    audio_pes_frames: usize,
    next_sequence: u64,
    /// (bytes, duration in ticks) of recent segments, for the bitrate estimate.
    recent: VecDeque<(usize, u64)>,
    ready: Vec<Segment>,
}

impl LiveSegmenter {
    pub fn new(config: SegmenterConfig) -> Self {
        let next_sequence = config.first_sequence;
        let timeline = Timeline::new(config.jump_threshold, config.backward_tolerance)
            .anchored(config.timeline_anchor_ms);
        LiveSegmenter {
            config,
            avc: None,
            avc_raw: Vec::new(),
            sps: None,
            asc: None,
            asc_raw: Vec::new(),
            timeline,
            vq: VecDeque::new(),
            aq: VecDeque::new(),
            muxer: None,
            open: None,
            next_discontinuity: false,
            audio_pes: Vec::new(),
            audio_pes_pts: 0,
            audio_pes_frames: 0,
            next_sequence,
            recent: VecDeque::new(),
            ready: Vec::new(),
        }
    }

    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// Sequence number the next completed segment will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Facts known so far (codecs from sequence headers, bitrate from completed segments).
    pub fn stream_info(&self) -> StreamInfo {
        let video = self.avc.as_ref().map(|cfg| VideoInfo {
            codec: self
                .sps
                .as_ref()
                .map_or_else(|| cfg.codec_string(), SpsInfo::codec_string),
            resolution: self.sps.as_ref().map(|s| (s.width, s.height)),
            frame_rate: self.sps.as_ref().and_then(|s| s.frame_rate),
        });
        let audio = self.asc.as_ref().map(|asc| AudioInfo {
            codec: asc.codec_string(),
            sample_rate: asc.sbr.map_or(asc.sample_rate, |(_, rate)| rate),
            channels: asc.channels(),
        });
        let (total_bytes, total_ticks) = self
            .recent
            .iter()
            .fold((0u64, 0u64), |(b, t), &(sb, st)| (b + sb as u64, t + st));
        let average_bitrate_bps = (total_ticks > 0).then(|| total_bytes * 8 * 90_000 / total_ticks);
        // Very short segments (forced cuts) would inflate the peak; ignore those under half
        // the target.
        let min_ticks = ticks(self.config.target_duration) / 2;
        let peak_bitrate_bps = self
            .recent
            .iter()
            .filter(|&&(_, t)| t > 0 && t >= min_ticks)
            .map(|&(b, t)| b as u64 * 8 * 90_000 / t)
            .max()
            .or(average_bitrate_bps);
        StreamInfo {
            video,
            audio,
            average_bitrate_bps,
            peak_bitrate_bps,
        }
    }

    /// Handles one RTMP/FLV video message: sequence headers update the decoder configuration,
    /// coded frames are queued. Returns the segments completed by this call.
    pub fn push_video_tag(
        &mut self,
        ts_ms: u32,
        tag: &VideoTag<'_>,
    ) -> Result<Vec<Segment>, SegmenterError> {
        if tag.codec != VideoCodec::Avc {
            return Err(SegmenterError::UnsupportedVideoCodec(tag.codec));
        }
        match tag.packet_type {
            VideoPacketType::SequenceHeader => {
                self.set_avc_config_bytes(tag.payload)?;
                Ok(Vec::new())
            }
            VideoPacketType::Nalu => match tag.frame_type {
                FrameType::Key | FrameType::Inter => self.push_video_frame(
                    ts_ms,
                    tag.composition_time_ms,
                    tag.frame_type == FrameType::Key,
                    tag.payload,
                ),
                // Generated key frames and command frames carry nothing to play.
                FrameType::Other(_) => Ok(Vec::new()),
            },
            VideoPacketType::EndOfSequence | VideoPacketType::Other(_) => Ok(Vec::new()),
        }
    }

    /// Handles one RTMP/FLV audio message. Returns the segments completed by this call.
    pub fn push_audio_tag(
        &mut self,
        ts_ms: u32,
        tag: &AudioTag<'_>,
    ) -> Result<Vec<Segment>, SegmenterError> {
        if tag.format != SoundFormat::Aac {
            return Err(SegmenterError::UnsupportedAudioCodec(tag.format));
        }
        match tag.packet_type {
            AacPacketType::SequenceHeader => {
                self.set_audio_config_bytes(tag.payload)?;
                Ok(Vec::new())
            }
            AacPacketType::Raw => self.push_aac_frame(ts_ms, tag.payload),
            AacPacketType::Other(_) => Ok(Vec::new()),
        }
    }

    /// Sets the AVC decoder configuration (an AVCDecoderConfigurationRecord). Re-sending the
    /// same record is a no-op; a different one makes the next video frame start a new,
    /// discontinuous segment.
    pub fn set_avc_config_bytes(&mut self, record: &[u8]) -> Result<(), SegmenterError> {
        if self.avc.is_some() && self.avc_raw == record {
            return Ok(());
        }
        let cfg = AvcConfig::parse(record)?;
        // Size and frame rate are informational; a stream whose SPS h264-reader cannot parse
        // is still packaged.
        self.sps = cfg.sps_info().ok();
        if self.avc.is_some() {
            self.timeline.bump_epoch(Track::Video);
        }
        self.avc = Some(cfg);
        self.avc_raw = record.to_vec();
        Ok(())
    }

    /// Sets the AAC AudioSpecificConfig. It must be representable in ADTS (object types 1..=4
    /// or explicit SBR/PS over LC, an indexed sampling rate). A changed config makes the next
    /// audio frame start a new, discontinuous segment.
    pub fn set_audio_config_bytes(&mut self, asc_bytes: &[u8]) -> Result<(), SegmenterError> {
        if self.asc.is_some() && self.asc_raw == asc_bytes {
            return Ok(());
        }
        let asc = AudioSpecificConfig::parse(asc_bytes)?;
        asc.adts_header(0)?;
        if self.asc.is_some() {
            self.timeline.bump_epoch(Track::Audio);
        }
        self.asc = Some(asc);
        self.asc_raw = asc_bytes.to_vec();
        Ok(())
    }

    /// Queues one AVC access unit: `avcc` holds length-prefixed NAL units, `dts_ms` is the
    /// RTMP timestamp, `cts_ms` the composition offset (PTS = DTS + CTS).
    pub fn push_video_frame(
        &mut self,
        dts_ms: u32,
        cts_ms: i32,
        keyframe: bool,
        avcc: &[u8],
    ) -> Result<Vec<Segment>, SegmenterError> {
        let Some(cfg) = self.avc.as_ref() else {
            return Err(SegmenterError::MissingVideoConfig);
        };
        let mut data = Vec::with_capacity(avcc.len() + 64);
        let info = avc::avcc_to_annexb(avcc, cfg.nal_length_size, &mut data, Some(cfg), keyframe)?;
        if !info.has_slice {
            // SEI-only or empty messages would become empty pictures.
            return Ok(Vec::new());
        }
        let keyframe = keyframe || info.has_idr;
        let (dts, epoch) = self.timeline.map(Track::Video, dts_ms);
        // A negative composition offset would put PTS before DTS; treat it as 0.
        let pts = dts + u64::from(cts_ms.max(0).unsigned_abs()) * 90;
        self.vq.push_back(Frame {
            dts,
            pts,
            keyframe,
            epoch,
            data,
        });
        self.release(false);
        Ok(std::mem::take(&mut self.ready))
    }

    /// Queues one raw AAC frame (no ADTS header) with its RTMP timestamp in milliseconds.
    pub fn push_aac_frame(
        &mut self,
        ts_ms: u32,
        raw: &[u8],
    ) -> Result<Vec<Segment>, SegmenterError> {
        let Some(asc) = self.asc.as_ref() else {
            return Err(SegmenterError::MissingAudioConfig);
        };
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let header = asc.adts_header(raw.len())?;
        let mut data = Vec::with_capacity(header.len() + raw.len());
        data.extend_from_slice(&header);
        data.extend_from_slice(raw);
        let (dts, epoch) = self.timeline.map(Track::Audio, ts_ms);
        self.aq.push_back(Frame {
            dts,
            pts: dts,
            keyframe: true,
            epoch,
            data,
        });
        self.release(false);
        Ok(std::mem::take(&mut self.ready))
    }

    /// Ends the stream: releases every queued frame and completes the open segment. The
    /// segmenter can be reused afterwards; the next segment is marked discontinuous.
    pub fn finish(&mut self) -> Vec<Segment> {
        self.release(true);
        if let Some(seg) = self.open.take() {
            let end = seg.end_estimate;
            self.close(seg, end);
        }
        self.next_discontinuity = true;
        std::mem::take(&mut self.ready)
    }

    /// True while frames of `track` are expected, so the other stream should wait for them.
    fn expects(&self, track: Track) -> bool {
        match track {
            // Before the first release, assume video may still come (sequence headers can
            // trail the first audio frames).
            Track::Video => self.avc.is_some() || self.muxer.is_none(),
            Track::Audio => self.asc.is_some(),
        }
    }

    fn overdue(q: &VecDeque<Frame>) -> bool {
        match (q.front(), q.back()) {
            (Some(f), Some(b)) => {
                q.len() >= MAX_QUEUED_FRAMES
                    || b.dts.saturating_sub(f.dts) >= INTERLEAVE_WAIT_MS * 90
            }
            _ => false,
        }
    }

    /// Moves frames from the reorder queues into segments in DTS order.
    fn release(&mut self, force: bool) {
        loop {
            let pick = match (self.vq.front(), self.aq.front()) {
                (Some(v), Some(a)) => {
                    if a.dts < v.dts {
                        Track::Audio
                    } else {
                        Track::Video
                    }
                }
                (Some(_), None) => {
                    if force || !self.expects(Track::Audio) || Self::overdue(&self.vq) {
                        Track::Video
                    } else {
                        break;
                    }
                }
                (None, Some(_)) => {
                    if force || !self.expects(Track::Video) || Self::overdue(&self.aq) {
                        Track::Audio
                    } else {
                        break;
                    }
                }
                (None, None) => break,
            };
            let frame = match pick {
                Track::Video => self.vq.pop_front(),
                Track::Audio => self.aq.pop_front(),
            };
            if let Some(frame) = frame {
                self.emit(pick, frame);
            }
        }
    }

    fn wanted_tracks(&self) -> (bool, bool) {
        (self.avc.is_some(), self.asc.is_some())
    }

    /// Places one frame: opens, cuts and writes segments.
    fn emit(&mut self, track: Track, frame: Frame) {
        let wanted = self.wanted_tracks();
        let muxer_tracks = self.muxer.as_ref().map(|m| (m.has_video(), m.has_audio()));
        let tracks_changed = muxer_tracks.is_some_and(|t| t != wanted);
        // A frame at which a segment may start cleanly under the wanted track set.
        let boundary = if wanted.0 {
            track == Track::Video && frame.keyframe
        } else {
            track == Track::Audio
        };

        let Some(seg) = self.open.as_ref() else {
            if boundary && (wanted.0 || wanted.1) {
                if tracks_changed || self.muxer.is_none() {
                    self.next_discontinuity |= self.muxer.is_some();
                    self.muxer = Some(TsMuxer::new(wanted.0, wanted.1));
                }
                self.open_segment(&frame, 0, 0);
                self.write(track, frame);
            }
            // Frames before the first key frame cannot be decoded: dropped.
            return;
        };

        let rel = frame.dts.saturating_sub(seg.start_dts);
        // A new timeline epoch (timestamp jump, changed decoder config) or a changed track set
        // starts a discontinuous segment.
        // A frame from before the segment start (possible right after a rebase, when the other
        // stream's clock placed it) does not start a segment, except when the size cap forces
        // it; segment starts stay monotonic either way (see `open_segment`).
        let in_order = frame.dts >= seg.start_dts;
        let discontinuity = in_order && (frame.epoch > seg.epoch || (tracks_changed && boundary));
        let cut = discontinuity
            || (in_order && boundary && rel >= ticks(self.config.target_duration))
            || rel >= ticks(self.config.max_fragment)
            || seg.data.len() >= self.config.max_segment_bytes;
        if cut {
            let mut min_epoch = 0;
            let mut min_start = 0;
            if let Some(seg) = self.open.take() {
                min_epoch = seg.epoch;
                min_start = seg.start_dts;
                self.close(seg, frame.dts);
            }
            if tracks_changed && boundary {
                self.muxer = Some(TsMuxer::new(wanted.0, wanted.1));
            }
            self.next_discontinuity |= discontinuity;
            self.open_segment(&frame, min_epoch, min_start);
        }
        self.write(track, frame);
    }

    /// Opens a segment starting at `first`. Its epoch is never below `min_epoch` (the previous
    /// segment's), so a straggler from before a jump cannot make the next new-epoch frame cut
    /// again; its start is never below `min_start` (the previous segment's start).
    fn open_segment(&mut self, first: &Frame, min_epoch: u64, min_start: u64) {
        let start_dts = first.dts.max(min_start);
        let mut data = Vec::with_capacity(256 * 1024);
        if let Some(m) = self.muxer.as_mut() {
            m.write_tables(&mut data);
        }
        self.open = Some(OpenSegment {
            start_dts,
            end_estimate: start_dts,
            epoch: first.epoch.max(min_epoch),
            discontinuity: std::mem::take(&mut self.next_discontinuity),
            first_video_key: None,
            data,
        });
    }

    fn write(&mut self, track: Track, frame: Frame) {
        let frame_ticks = self.frame_ticks(track);
        let Some(muxer) = self.muxer.as_mut() else {
            return;
        };
        let Some(seg) = self.open.as_mut() else {
            return;
        };
        match track {
            Track::Video if muxer.has_video() => {
                seg.first_video_key.get_or_insert(frame.keyframe);
                muxer.write_video(
                    &mut seg.data,
                    frame.pts,
                    frame.dts,
                    frame.keyframe,
                    &frame.data,
                );
            }
            Track::Audio if muxer.has_audio() => {
                let expected = self.audio_pes_pts + self.audio_pes_frames as u64 * frame_ticks;
                let contiguous = frame.pts.abs_diff(expected) <= frame_ticks / 2;
                if self.audio_pes_frames > 0
                    && (!contiguous
                        || self.audio_pes.len() + frame.data.len() > MAX_AUDIO_PES_BYTES)
                {
                    flush_audio(
                        muxer,
                        seg,
                        &mut self.audio_pes,
                        &mut self.audio_pes_frames,
                        self.audio_pes_pts,
                    );
                }
                if self.audio_pes_frames == 0 {
                    self.audio_pes_pts = frame.pts;
                }
                self.audio_pes.extend_from_slice(&frame.data);
                self.audio_pes_frames += 1;
                if self.audio_pes_frames >= AUDIO_FRAMES_PER_PES {
                    flush_audio(
                        muxer,
                        seg,
                        &mut self.audio_pes,
                        &mut self.audio_pes_frames,
                        self.audio_pes_pts,
                    );
                }
            }
            // The muxer does not carry this track (it appeared after the segment started).
            _ => return,
        }
        // Durations are measured on decode time, like the cuts between segments.
        seg.end_estimate = seg.end_estimate.max(frame.dts + frame_ticks);
    }

    /// Duration of one frame of `track` in 90 kHz ticks, estimated.
    fn frame_ticks(&self, track: Track) -> u64 {
        match track {
            Track::Video => {
                if let Some(step_ms) = self.timeline.video_step_ms() {
                    step_ms * 90
                } else {
                    match self.sps.as_ref().and_then(|s| s.frame_rate) {
                        Some(fps) if fps >= 1.0 => (90_000.0 / fps) as u64,
                        _ => 3_000,
                    }
                }
            }
            Track::Audio => self
                .asc
                .as_ref()
                .map_or(1_920, |a| a.frame_duration_90k().max(1)),
        }
    }

    fn close(&mut self, mut seg: OpenSegment, end_dts: u64) {
        if let Some(muxer) = self.muxer.as_mut() {
            flush_audio(
                muxer,
                &mut seg,
                &mut self.audio_pes,
                &mut self.audio_pes_frames,
                self.audio_pes_pts,
            );
        }
        self.audio_pes.clear();
        self.audio_pes_frames = 0;
        let duration_90k = end_dts.saturating_sub(seg.start_dts);
        let has_video = self.muxer.as_ref().is_some_and(TsMuxer::has_video);
        let segment = Segment {
            sequence: self.next_sequence,
            duration: ticks_to_duration(duration_90k),
            duration_90k,
            start_dts_90k: seg.start_dts,
            discontinuity: seg.discontinuity,
            starts_with_keyframe: !has_video || seg.first_video_key.unwrap_or(false),
            data: Bytes::from(seg.data),
        };
        self.next_sequence += 1;
        self.recent.push_back((segment.data.len(), duration_90k));
        while self.recent.len() > self.config.window.max(1) {
            self.recent.pop_front();
        }
        self.ready.push(segment);
    }
}

fn flush_audio(
    muxer: &mut TsMuxer,
    seg: &mut OpenSegment,
    pes: &mut Vec<u8>,
    frames: &mut usize,
    pts: u64,
) {
    if *frames > 0 {
        // Cannot fail: MAX_AUDIO_PES_BYTES + one ADTS frame stays below the PES limit.
        let _ = muxer.write_audio(&mut seg.data, pts, pes);
    }
    pes.clear();
    *frames = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::tests::HIGH_720P30_AVCC;
    use crate::playlist::LiveWindow;
    use crate::ts::demux::{Pes, demux};
    use crate::ts::{AUDIO_PID, VIDEO_PID};
    use std::collections::HashMap;

    /// AAC LC, 48 kHz, stereo.
    const ASC: [u8; 2] = [0x11, 0x90];

    fn avcc(nal: &[u8]) -> Vec<u8> {
        let mut v = (nal.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(nal);
        v
    }

    fn idr(n: u32) -> Vec<u8> {
        avcc(&[0x65, 0x88, (n >> 8) as u8, n as u8])
    }

    fn p_frame(n: u32) -> Vec<u8> {
        avcc(&[0x41, 0x9a, (n >> 8) as u8, n as u8])
    }

    fn segmenter(config: SegmenterConfig) -> LiveSegmenter {
        let mut s = LiveSegmenter::new(config);
        s.set_avc_config_bytes(HIGH_720P30_AVCC).unwrap();
        s.set_audio_config_bytes(&ASC).unwrap();
        s
    }

    /// Pushes 30 fps video (key frame every `gop` frames, counting from `first_frame`) and
    /// 48 kHz AAC, interleaved by timestamp, for frames `frames` with timestamps
    /// `base_ms + i * 1000 / 30`. Returns the completed segments.
    fn push_av(
        s: &mut LiveSegmenter,
        base_ms: u32,
        frames: std::ops::Range<u32>,
        gop: u32,
        with_audio: bool,
    ) -> Vec<Segment> {
        let mut out = Vec::new();
        let start_ms = frames.start * 1000 / 30;
        let end_ms = frames.end * 1000 / 30;
        let mut audio_n = (u64::from(start_ms) * 48 / 1024) as u32;
        for i in frames {
            let v_ms = i * 1000 / 30;
            while with_audio && audio_n * 1024 / 48 <= v_ms && audio_n * 1024 / 48 < end_ms {
                let a_ms = audio_n * 1024 / 48;
                out.extend(
                    s.push_aac_frame(base_ms.wrapping_add(a_ms), &[0x21, 0x10, audio_n as u8])
                        .unwrap(),
                );
                audio_n += 1;
            }
            let data = if i % gop == 0 { idr(i) } else { p_frame(i) };
            out.extend(
                s.push_video_frame(base_ms.wrapping_add(v_ms), 66, i % gop == 0, &data)
                    .unwrap(),
            );
        }
        out
    }

    /// Demuxes consecutive segments with shared continuity counters and checks that video DTS
    /// and audio PTS increase across all of them. Returns the PES packets per segment.
    fn check_segments(segments: &[Segment]) -> Vec<Vec<Pes>> {
        let mut ccs = HashMap::new();
        let mut last_video_dts = None;
        let mut last_audio_pts = None;
        let mut all = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let (pes, tables) = demux(&seg.data, &mut ccs);
            assert_eq!(
                &tables[..2],
                &[0, crate::ts::PMT_PID],
                "segment {i} starts with PAT+PMT"
            );
            for p in &pes {
                if p.pid == VIDEO_PID {
                    let dts = p.dts.or(p.pts).unwrap();
                    assert!(p.pts.unwrap() >= dts, "segment {i}: PTS below DTS");
                    if let Some(last) = last_video_dts {
                        assert!(dts > last, "segment {i}: video DTS {dts} after {last}");
                    }
                    last_video_dts = Some(dts);
                } else if p.pid == AUDIO_PID {
                    let pts = p.pts.unwrap();
                    if let Some(last) = last_audio_pts {
                        assert!(pts > last, "segment {i}: audio PTS {pts} after {last}");
                    }
                    last_audio_pts = Some(pts);
                }
            }
            if let Some(next) = segments.get(i + 1) {
                assert_eq!(
                    seg.start_dts_90k + seg.duration_90k,
                    next.start_dts_90k,
                    "segment {i} duration reaches the next start"
                );
                assert_eq!(next.sequence, seg.sequence + 1);
            }
            all.push(pes);
        }
        all
    }

    fn first_video(pes: &[Pes]) -> &Pes {
        pes.iter()
            .find(|p| p.pid == VIDEO_PID)
            .expect("segment has video")
    }

    #[test]
    fn cuts_at_key_frames_once_target_is_reached() {
        let mut s = segmenter(SegmenterConfig::default());
        let mut segs = push_av(&mut s, 5_000, 0..300, 60, true);
        segs.extend(s.finish());
        assert_eq!(segs.len(), 5);
        let pes = check_segments(&segs);
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(seg.sequence, i as u64);
            assert!(!seg.discontinuity);
            assert!(seg.starts_with_keyframe);
            if i < 4 {
                assert_eq!(seg.duration, Duration::from_secs(2), "segment {i}");
            } else {
                // The last one ends at its last video frame (9966 ms) plus one 33 ms step.
                assert_eq!(seg.duration_90k, (9_966 + 33 - 8_000) * 90);
            }
            assert!(first_video(&pes[i]).random_access);
            assert!(first_video(&pes[i]).pcr.is_some());
            assert!(
                pes[i].iter().any(|p| p.pid == AUDIO_PID),
                "segment {i} has audio"
            );
        }
        assert_eq!(segs[0].start_dts_90k, OUTPUT_START_90K);
        // Key frames carry SPS and PPS in Annex B, after the AUD.
        let first = first_video(&pes[0]);
        assert_eq!(&first.payload[..6], &crate::avc::AUD_NAL);
        assert_eq!(first.payload[10] & 0x1f, 7);
        assert_eq!(first.pts.unwrap() - first.dts.unwrap(), 66 * 90);
    }

    #[test]
    fn video_before_the_first_key_frame_is_dropped() {
        let mut s = segmenter(SegmenterConfig::default());
        let mut segs = Vec::new();
        // Start mid-GOP: frames 50..89 are P frames, 90 is the first key frame.
        segs.extend(push_av(&mut s, 0, 50..200, 90, true));
        segs.extend(s.finish());
        let pes = check_segments(&segs);
        assert!(segs[0].starts_with_keyframe);
        let v = first_video(&pes[0]);
        assert!(v.random_access);
        assert_eq!(segs[0].start_dts_90k, v.dts.unwrap());
        // The first frame pushed (audio at 1664 ms) maps to OUTPUT_START; the first key frame
        // is at 3000 ms.
        assert_eq!(segs[0].start_dts_90k, OUTPUT_START_90K + 1_336 * 90);
        assert!(
            pes[0]
                .iter()
                .filter(|p| p.pid == AUDIO_PID)
                .all(|p| p.pts.unwrap() >= segs[0].start_dts_90k),
            "audio before the first key frame is dropped"
        );
    }

    #[test]
    fn max_fragment_forces_a_cut_without_key_frames() {
        let config = SegmenterConfig {
            target_duration: Duration::from_secs(2),
            max_fragment: Duration::from_secs(3),
            ..SegmenterConfig::default()
        };
        let mut s = segmenter(config);
        let mut segs = push_av(&mut s, 0, 0..300, 100_000, true);
        segs.extend(s.finish());
        check_segments(&segs);
        assert_eq!(segs.len(), 4);
        assert!(segs[0].starts_with_keyframe);
        for seg in &segs[1..] {
            assert!(!seg.starts_with_keyframe);
        }
        for seg in &segs[..3] {
            assert!(seg.duration >= Duration::from_secs(3));
            assert!(
                seg.duration < Duration::from_millis(3_050),
                "{:?}",
                seg.duration
            );
        }
    }

    fn jump_test(second_base_ms: u32) -> Vec<Segment> {
        let mut s = segmenter(SegmenterConfig::default());
        let mut segs = push_av(&mut s, 100_000, 0..150, 60, true);
        // The encoder's clock jumps; the next frame is a key frame as after a restart.
        segs.extend(push_av(&mut s, second_base_ms, 0..150, 60, true));
        segs.extend(s.finish());
        segs
    }

    fn assert_one_discontinuity(segs: &[Segment]) {
        let pes = check_segments(segs);
        let disc: Vec<_> = segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.discontinuity)
            .collect();
        assert_eq!(disc.len(), 1, "{segs:#?}");
        let (i, d) = disc[0];
        assert!(d.starts_with_keyframe);
        // 150 frames = 5 s before the jump: segments start at 0, 2 and 4 s; the third is cut
        // by the jump.
        assert_eq!(i, 3);
        assert_eq!(segs[2].start_dts_90k, OUTPUT_START_90K + 4_000 * 90);
        // The new timeline continues one frame after the last output frame (video at
        // 4966 ms; the first new frame is audio, so the gap is one audio frame, 21 ms).
        let last_before = pes[2]
            .iter()
            .map(|p| p.dts.or(p.pts).unwrap())
            .max()
            .unwrap();
        assert_eq!(last_before, OUTPUT_START_90K + 4_966 * 90);
        assert_eq!(d.start_dts_90k, last_before + 21 * 90);
        for seg in segs {
            assert!(seg.duration > Duration::ZERO);
        }
    }

    #[test]
    fn backward_jump_is_a_discontinuity_with_continuous_output() {
        assert_one_discontinuity(&jump_test(0));
    }

    #[test]
    fn forward_jump_is_a_discontinuity_with_continuous_output() {
        assert_one_discontinuity(&jump_test(1_000_000));
    }

    #[test]
    fn small_timestamp_jitter_is_not_a_discontinuity() {
        let mut s = segmenter(SegmenterConfig::default());
        let mut segs = push_av(&mut s, 10_000, 0..100, 30, true);
        // 200 ms backwards (within tolerance), then 3 s forwards (below the threshold).
        segs.extend(push_av(&mut s, 10_000 - 200, 100..200, 30, true));
        segs.extend(push_av(&mut s, 10_000 + 3_000, 200..300, 30, true));
        segs.extend(s.finish());
        check_segments(&segs);
        assert!(segs.iter().all(|s| !s.discontinuity));
    }

    #[test]
    fn rtmp_timestamp_wrap_is_continuous() {
        let mut s = segmenter(SegmenterConfig::default());
        let mut segs = push_av(&mut s, u32::MAX - 3_000, 0..300, 60, true);
        segs.extend(s.finish());
        check_segments(&segs);
        assert_eq!(segs.len(), 5);
        assert!(segs.iter().all(|s| !s.discontinuity));
    }

    #[test]
    fn audio_only_streams_cut_at_target_duration() {
        let mut s = LiveSegmenter::new(SegmenterConfig::default());
        s.set_audio_config_bytes(&ASC).unwrap();
        let mut segs = Vec::new();
        for n in 0..470u32 {
            segs.extend(s.push_aac_frame(n * 1024 / 48, &[0x21, n as u8]).unwrap());
        }
        segs.extend(s.finish());
        let pes = check_segments(&segs);
        assert_eq!(segs.len(), 5, "{segs:#?}");
        for (seg, pes) in segs.iter().zip(&pes) {
            assert!(seg.starts_with_keyframe);
            assert!(pes.iter().all(|p| p.pid == AUDIO_PID));
            assert!(pes[0].pcr.is_some(), "PCR on the audio PID");
        }
        for seg in &segs[..4] {
            let ms = seg.duration.as_millis();
            assert!((2_000..2_030).contains(&ms), "{ms}");
        }
        let info = s.stream_info();
        assert!(info.video.is_none());
        assert_eq!(info.codecs(), ["mp4a.40.2"]);
    }

    #[test]
    fn stream_info_reports_codecs_size_rate_and_bitrate() {
        let mut s = segmenter(SegmenterConfig::default());
        assert_eq!(s.stream_info().average_bitrate_bps, None);
        let segs = push_av(&mut s, 0, 0..300, 60, true);
        assert_eq!(segs.len(), 4);
        let info = s.stream_info();
        let video = info.video.as_ref().unwrap();
        assert_eq!(video.codec, "avc1.64001f");
        assert_eq!(video.resolution, Some((1280, 720)));
        assert_eq!(video.frame_rate, Some(30.0));
        let audio = info.audio.as_ref().unwrap();
        assert_eq!(audio.sample_rate, 48_000);
        assert_eq!(audio.channels, Some(2));
        assert_eq!(info.codecs(), ["avc1.64001f", "mp4a.40.2"]);
        let bytes: usize = segs.iter().map(|s| s.data.len()).sum();
        let ticks: u64 = segs.iter().map(|s| s.duration_90k).sum();
        assert_eq!(
            info.average_bitrate_bps,
            Some(bytes as u64 * 8 * 90_000 / ticks)
        );
        let peak = segs
            .iter()
            .map(|s| s.data.len() as u64 * 8 * 90_000 / s.duration_90k)
            .max();
        assert_eq!(info.peak_bitrate_bps, peak);
    }

    #[test]
    fn finish_flushes_the_partial_segment_with_an_estimated_duration() {
        let mut s = segmenter(SegmenterConfig::default());
        let segs = push_av(&mut s, 0, 0..45, 60, false);
        assert!(segs.is_empty());
        let last = s.finish();
        assert_eq!(last.len(), 1);
        // 45 frames at 30 fps: last frame at 1466 ms (+ 66 ms composition) + one frame.
        let ms = last[0].duration.as_millis();
        assert!((1_499..=1_600).contains(&ms), "{ms}");
        assert!(s.finish().is_empty(), "nothing left");
    }

    #[test]
    fn stream_without_key_frames_stays_bounded() {
        let mut s = segmenter(SegmenterConfig::default());
        for i in 0..5_000u32 {
            let out = s.push_video_frame(i * 33, 0, false, &p_frame(i)).unwrap();
            assert!(out.is_empty());
        }
        assert!(s.vq.len() <= MAX_QUEUED_FRAMES);
        assert!(s.open.is_none());
        assert!(s.finish().is_empty());
    }

    #[test]
    fn stuck_timestamps_are_cut_by_size() {
        let config = SegmenterConfig {
            max_segment_bytes: 20_000,
            ..SegmenterConfig::default()
        };
        let mut s = segmenter(config);
        s.set_audio_config_bytes(&ASC).unwrap();
        let mut segs = Vec::new();
        let big = avcc(&[0x65; 1_000]);
        for _ in 0..200 {
            segs.extend(s.push_video_frame(0, 0, true, &big).unwrap());
        }
        segs.extend(s.finish());
        check_segments(&segs);
        assert!(segs.len() >= 9, "{}", segs.len());
        assert!(segs.iter().all(|s| s.data.len() < 20_000 + 2_000));
    }

    #[test]
    fn repeated_sequence_header_is_not_a_discontinuity_but_a_new_one_is() {
        let mut s = segmenter(SegmenterConfig::default());
        let mut segs = push_av(&mut s, 0, 0..90, 30, true);
        s.set_avc_config_bytes(HIGH_720P30_AVCC).unwrap();
        segs.extend(push_av(&mut s, 0, 90..180, 30, true));
        assert!(segs.iter().all(|s| !s.discontinuity));
        let mut changed = HIGH_720P30_AVCC.to_vec();
        changed[3] = 0x28; // level 4.0
        s.set_avc_config_bytes(&changed).unwrap();
        segs.extend(push_av(&mut s, 0, 180..270, 30, true));
        segs.extend(s.finish());
        check_segments(&segs);
        let disc: Vec<_> = segs.iter().filter(|s| s.discontinuity).collect();
        assert_eq!(disc.len(), 1);
        assert_eq!(disc[0].start_dts_90k, OUTPUT_START_90K + 6_000 * 90);
        assert_eq!(
            s.stream_info().video.unwrap().codec,
            "avc1.64001f",
            "SPS wins"
        );
    }

    #[test]
    fn bad_input_is_reported_and_dropped() {
        let mut s = LiveSegmenter::new(SegmenterConfig::default());
        assert_eq!(
            s.push_video_frame(0, 0, true, &idr(0)),
            Err(SegmenterError::MissingVideoConfig)
        );
        assert_eq!(
            s.push_aac_frame(0, &[1]),
            Err(SegmenterError::MissingAudioConfig)
        );
        let hevc = VideoTag::parse(&[0x1c, 1, 0, 0, 0, 1]).unwrap();
        assert_eq!(
            s.push_video_tag(0, &hevc),
            Err(SegmenterError::UnsupportedVideoCodec(VideoCodec::Hevc))
        );
        let mp3 = AudioTag::parse(&[0x2f, 0xff]).unwrap();
        assert_eq!(
            s.push_audio_tag(0, &mp3),
            Err(SegmenterError::UnsupportedAudioCodec(SoundFormat::Mp3))
        );
        assert!(matches!(
            s.set_avc_config_bytes(&[1, 2]),
            Err(SegmenterError::Avc(_))
        ));
        // USAC parses but cannot be carried in ADTS.
        assert!(matches!(
            s.set_audio_config_bytes(&[0xf9, 0x5e, 0x00, 0xad, 0x9c, 0x20]),
            Err(SegmenterError::Aac(AacError::AdtsObjectType(42)))
        ));
        s.set_avc_config_bytes(HIGH_720P30_AVCC).unwrap();
        assert!(matches!(
            s.push_video_frame(0, 0, true, &[0, 0, 0, 9, 0x65]),
            Err(SegmenterError::Avc(AvcError::NalOverrun { .. }))
        ));
    }

    #[test]
    fn flv_tags_drive_the_segmenter() {
        let mut s = LiveSegmenter::new(SegmenterConfig::default());
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend_from_slice(HIGH_720P30_AVCC);
        s.push_video_tag(0, &VideoTag::parse(&seq).unwrap())
            .unwrap();
        s.push_audio_tag(0, &AudioTag::parse(&[0xaf, 0, 0x11, 0x90]).unwrap())
            .unwrap();
        let mut segs = Vec::new();
        for i in 0..130u32 {
            let mut body = vec![if i % 60 == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend(if i % 60 == 0 { idr(i) } else { p_frame(i) });
            let tag = VideoTag::parse(&body).unwrap();
            segs.extend(s.push_video_tag(i * 1000 / 30, &tag).unwrap());
            let audio_body = [0xaf, 1, 0x21, i as u8];
            let audio = AudioTag::parse(&audio_body).unwrap();
            segs.extend(s.push_audio_tag(i * 1000 / 30, &audio).unwrap());
        }
        segs.extend(s.finish());
        check_segments(&segs);
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| s.starts_with_keyframe));
    }

    #[test]
    fn playlist_target_duration_covers_every_segment() {
        let config = SegmenterConfig {
            max_fragment: Duration::from_millis(2_500),
            ..SegmenterConfig::default()
        };
        let mut s = segmenter(config);
        // GOP of 2.3 s: segments are 2.3 s, or 2.5 s where max_fragment bites.
        let mut segs = push_av(&mut s, 0, 0..600, 69, true);
        segs.extend(s.finish());
        let mut window = LiveWindow::new(6, 2);
        for seg in &segs {
            window.push(seg.to_ref(format!("{}.ts", seg.sequence)));
            let text = window.render(false);
            let target: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
                .unwrap()
                .parse()
                .unwrap();
            for extinf in text.lines().filter_map(|l| l.strip_prefix("#EXTINF:")) {
                let d: f64 = extinf.trim_end_matches(',').parse().unwrap();
                assert!(d <= target, "{d} > {target}");
            }
        }
        assert_eq!(window.target_duration(), 3);
    }
}
