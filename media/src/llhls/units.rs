//! RTMP/FLV tags in, access units out: the front end of the passthrough rendition.
//!
//! Sequence headers set the decoder configuration; coded frames come out as [`Unit`]s with
//! timestamps on one continuous 90 kHz timeline ([`Timeline`]). The track set is announced
//! ([`Unit::Tracks`]) before the first frame and again whenever it changes: a new sequence
//! header with different content, or video appearing in a stream that started audio-only. A
//! stream counts as audio-only when no AVC sequence header arrived within its first second
//! of audio; audio before that is dropped (it would have no video to start with).

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::packager::{AudioFrame, Tracks, VideoFrame};
use crate::aac::AudioSpecificConfig;
use crate::avc::{self, AvcConfig};
use crate::flv::{
    AacPacketType, AudioTag, FrameType, SoundFormat, VideoCodec, VideoPacketType, VideoTag,
};
use crate::fmp4::{AudioParams, VideoParams, avcc_record};
use crate::hls::{AudioInfo, SegmenterError, StreamInfo, VideoInfo};
use crate::timeline::{Timeline, Track};

/// Audio that may arrive before the video sequence header without making the stream
/// audio-only, in 90 kHz ticks.
const VIDEO_WAIT_90K: u64 = 90_000;

/// What the front end hands the packager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// The tracks from now on (first, or changed).
    Tracks(Tracks),
    Video(VideoFrame),
    Audio(AudioFrame),
}

/// The front end. See the module documentation.
#[derive(Debug)]
pub struct TagUnits {
    timeline: Timeline,
    video: Option<(AvcConfig, VideoParams)>,
    avc_raw: Vec<u8>,
    audio: Option<AudioParams>,
    asc_raw: Vec<u8>,
    /// The tracks last announced.
    announced: Option<Tracks>,
    /// First audio DTS seen while no video configuration was known.
    audio_without_video_since: Option<u64>,
}

impl Default for TagUnits {
    fn default() -> Self {
        TagUnits {
            timeline: Timeline::new(Duration::from_secs(5), Duration::from_millis(500)),
            video: None,
            avc_raw: Vec::new(),
            audio: None,
            asc_raw: Vec::new(),
            announced: None,
            audio_without_video_since: None,
        }
    }
}

impl TagUnits {
    pub fn new() -> Self {
        Self::default()
    }

    /// A front end whose output timeline starts at input timestamp `anchor_ms` (see
    /// `Timeline::anchored`): variants of one stream given the same anchor line up.
    pub fn anchored(anchor_ms: Option<u32>) -> Self {
        let mut units = Self::default();
        units.timeline = units.timeline.anchored(anchor_ms);
        units
    }

    /// Codecs, picture size and frame rate, audio rate and channels, from the sequence headers
    /// (no bitrates: the caller measures those on its output).
    pub fn stream_info(&self) -> StreamInfo {
        let video = self.video.as_ref().map(|(cfg, _)| {
            let sps = cfg.sps_info().ok();
            VideoInfo {
                codec: sps
                    .as_ref()
                    .map_or_else(|| cfg.codec_string(), |s| s.codec_string()),
                resolution: sps.as_ref().map(|s| (s.width, s.height)),
                frame_rate: sps.as_ref().and_then(|s| s.frame_rate),
            }
        });
        let audio = AudioSpecificConfig::parse(&self.asc_raw)
            .ok()
            .filter(|_| self.audio.is_some())
            .map(|asc| AudioInfo {
                codec: asc.codec_string(),
                sample_rate: asc.sbr.map_or(asc.sample_rate, |(_, rate)| rate),
                channels: asc.channels(),
            });
        StreamInfo {
            video,
            audio,
            ..StreamInfo::default()
        }
    }

    /// Handles one RTMP video message at `ts_ms` that arrived at `received`.
    pub fn push_video_tag(
        &mut self,
        ts_ms: u32,
        tag: &VideoTag<'_>,
        received: SystemTime,
    ) -> Result<Vec<Unit>, SegmenterError> {
        if tag.codec != VideoCodec::Avc {
            return Err(SegmenterError::UnsupportedVideoCodec(tag.codec));
        }
        match (tag.packet_type, tag.frame_type) {
            (VideoPacketType::SequenceHeader, _) => {
                self.set_avc_config(tag.payload)?;
                Ok(Vec::new())
            }
            (VideoPacketType::Nalu, FrameType::Key | FrameType::Inter) => self.video_frame(
                ts_ms,
                tag.composition_time_ms,
                tag.frame_type == FrameType::Key,
                tag.payload,
                received,
            ),
            _ => Ok(Vec::new()),
        }
    }

    /// Handles one RTMP audio message at `ts_ms` that arrived at `received`.
    pub fn push_audio_tag(
        &mut self,
        ts_ms: u32,
        tag: &AudioTag<'_>,
        received: SystemTime,
    ) -> Result<Vec<Unit>, SegmenterError> {
        if tag.format != SoundFormat::Aac {
            return Err(SegmenterError::UnsupportedAudioCodec(tag.format));
        }
        match tag.packet_type {
            AacPacketType::SequenceHeader => {
                self.set_audio_config(tag.payload)?;
                Ok(Vec::new())
            }
            AacPacketType::Raw => self.audio_frame(ts_ms, tag.payload, received),
            AacPacketType::Other(_) => Ok(Vec::new()),
        }
    }

    fn set_avc_config(&mut self, record: &[u8]) -> Result<(), SegmenterError> {
        if self.video.is_some() && self.avc_raw == record {
            return Ok(());
        }
        let cfg = AvcConfig::parse(record)?;
        let (width, height) = cfg
            .sps_info()
            .map_or((0, 0), |s| (s.width as u16, s.height as u16));
        let params = VideoParams {
            avcc: avcc_record(&cfg, record),
            width,
            height,
        };
        if self.video.is_some() {
            self.timeline.bump_epoch(Track::Video);
        }
        self.video = Some((cfg, params));
        self.avc_raw = record.to_vec();
        Ok(())
    }

    fn set_audio_config(&mut self, raw: &[u8]) -> Result<(), SegmenterError> {
        if self.audio.is_some() && self.asc_raw == raw {
            return Ok(());
        }
        let asc = AudioSpecificConfig::parse(raw)?;
        if asc.sample_rate == 0 {
            return Err(SegmenterError::Aac(
                crate::aac::AacError::AdtsExplicitFrequency(0),
            ));
        }
        if self.audio.is_some() {
            self.timeline.bump_epoch(Track::Audio);
        }
        self.audio = Some(AudioParams::new(&asc, raw));
        self.asc_raw = raw.to_vec();
        Ok(())
    }

    /// The tracks as configured now, announced if they differ from the last announcement.
    fn announce(&mut self, out: &mut Vec<Unit>, audio_only_ok: bool) {
        let tracks = Tracks {
            video: self.video.as_ref().map(|v| v.1.clone()),
            audio: self.audio.clone(),
        };
        if tracks.video.is_none() && !audio_only_ok {
            return;
        }
        if self.announced.as_ref() != Some(&tracks) {
            self.announced = Some(tracks.clone());
            out.push(Unit::Tracks(tracks));
        }
    }

    fn video_frame(
        &mut self,
        dts_ms: u32,
        cts_ms: i32,
        keyframe: bool,
        payload: &[u8],
        received: SystemTime,
    ) -> Result<Vec<Unit>, SegmenterError> {
        let Some((cfg, _)) = self.video.as_ref() else {
            return Err(SegmenterError::MissingVideoConfig);
        };
        let mut data = Vec::with_capacity(payload.len() + 16);
        let mut has_slice = false;
        let mut has_idr = false;
        for nal in avc::nal_units(payload, cfg.nal_length_size) {
            let nal = nal?;
            let Some(&header) = nal.first() else { continue };
            let kind = header & 0x1f;
            has_slice |= (avc::nal_type::NON_IDR_SLICE..=avc::nal_type::IDR_SLICE).contains(&kind);
            has_idr |= kind == avc::nal_type::IDR_SLICE;
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        if !has_slice {
            // SEI-only or empty messages would become empty pictures.
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.announce(&mut out, false);
        let (dts, _) = self.timeline.map(Track::Video, dts_ms);
        // A negative composition offset would put PTS before DTS; treat it as 0.
        let pts = dts + u64::from(cts_ms.max(0).unsigned_abs()) * 90;
        out.push(Unit::Video(VideoFrame {
            dts,
            pts,
            keyframe: keyframe || has_idr,
            data: Bytes::from(data),
            received,
        }));
        Ok(out)
    }

    fn audio_frame(
        &mut self,
        ts_ms: u32,
        raw: &[u8],
        received: SystemTime,
    ) -> Result<Vec<Unit>, SegmenterError> {
        if self.audio.is_none() {
            return Err(SegmenterError::MissingAudioConfig);
        }
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let (dts, _) = self.timeline.map(Track::Audio, ts_ms);
        let mut out = Vec::new();
        if self.video.is_none() {
            let since = *self.audio_without_video_since.get_or_insert(dts);
            if dts.saturating_sub(since) < VIDEO_WAIT_90K && self.announced.is_none() {
                return Ok(out);
            }
        }
        self.announce(&mut out, true);
        out.push(Unit::Audio(AudioFrame {
            dts,
            data: Bytes::copy_from_slice(raw),
            received,
        }));
        Ok(out)
    }
}
