//! The LL-HLS packager of one rendition: access units in, fMP4 parts and segments out.
//!
//! Parts are cut on the video timeline: a frame whose end would take the open part past the
//! part target starts the next part, so no part is longer than the target (unless one frame
//! alone is). Segments are cut at the first key frame once a segment reaches the segment
//! target, or at any frame once it reaches the maximum. A part that starts with a key frame is
//! independent. Each video frame is placed when the next one arrives (its duration is the
//! difference of their decode times); audio frames wait in a queue and go into the part whose
//! time span covers their decode time. Audio-only renditions cut on audio frames.
//!
//! Timestamps are 90 kHz ticks on one continuous timeline (see [`crate::timeline`]); the
//! packager has no clock of its own: each frame carries the wall-clock time it arrived, and a
//! segment's `EXT-X-PROGRAM-DATE-TIME` is the arrival time of its first frame.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::ticks;
use crate::fmp4::{
    self, AUDIO_TRACK_ID, AudioParams, Sample, TrackRun, VIDEO_TRACK_ID, VideoParams,
};

/// Audio frames held at most while no video frame places them (a stalled video track).
const MAX_QUEUED_AUDIO: usize = 1_024;

/// Packager settings. Durations are media time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagerConfig {
    /// No part is longer than this (`EXT-X-PART-INF:PART-TARGET`).
    pub part_target: Duration,
    /// Segments are cut at the first key frame once they are this long.
    pub segment_target: Duration,
    /// A segment is cut here even without a key frame.
    pub max_segment: Duration,
    /// Media sequence number of the first segment; also the first part number.
    pub first_sequence: u64,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            part_target: Duration::from_millis(334),
            segment_target: Duration::from_secs(2),
            max_segment: Duration::from_secs(10),
            first_sequence: 0,
        }
    }
}

/// The tracks of a rendition (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracks {
    pub video: Option<VideoParams>,
    pub audio: Option<AudioParams>,
}

/// One H.264 access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Decode time, 90 kHz; strictly increasing.
    pub dts: u64,
    /// Presentation time, 90 kHz.
    pub pts: u64,
    /// An IDR picture: a segment or independent part may start here.
    pub keyframe: bool,
    /// NAL units, each with a 4-byte big-endian length prefix.
    pub data: Bytes,
    /// Wall-clock time the frame arrived at the origin.
    pub received: SystemTime,
}

/// One raw AAC frame (no ADTS header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Decode (= presentation) time, 90 kHz.
    pub dts: u64,
    pub data: Bytes,
    pub received: SystemTime,
}

/// A segment opens; its parts follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStart {
    pub msn: u64,
    /// The init segment its fragments need ([`Event::Init`] with this id came first).
    pub init_id: u64,
    /// Decoding restarts here (new tracks or codec parameters): `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Wall-clock arrival of the segment's first frame.
    pub program_date_time: SystemTime,
}

/// A completed part: one `moof` + `mdat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The segment it belongs to.
    pub msn: u64,
    /// Position in its segment, from 0.
    pub index: u32,
    /// Number across segments (its URI).
    pub number: u64,
    /// 90 kHz ticks.
    pub duration_90k: u64,
    /// Starts with a key frame (always true for audio-only).
    pub independent: bool,
    pub data: Bytes,
}

/// A segment is complete: its bytes are its parts' bytes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEnd {
    pub msn: u64,
    /// 90 kHz ticks: the sum of its parts' durations.
    pub duration_90k: u64,
}

/// What the packager produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new init segment, for the segments from media sequence `id` on.
    Init {
        id: u64,
        data: Bytes,
    },
    SegmentStart(SegmentStart),
    Part(Part),
    SegmentEnd(SegmentEnd),
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    start: u64,
    parts: u32,
}

#[derive(Debug, Default)]
struct OpenPart {
    start: u64,
    /// Whether its first video frame is a key frame; `None` before one is placed.
    first_key: Option<bool>,
    video: Vec<Sample>,
    video_base: u64,
    video_data: Vec<u8>,
}

/// An audio frame waiting for its part: (DTS in 90 kHz, decode time in the audio timescale,
/// data).
type QueuedAudio = (u64, u64, Bytes);

/// The packager. See the module documentation.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    tracks: Tracks,
    init_id: u64,
    init_sent: bool,
    next_msn: u64,
    next_part: u64,
    fragment_sequence: u32,
    segment: Option<OpenSegment>,
    part: OpenPart,
    /// The last video frame, placed when the next one gives its duration.
    held: Option<VideoFrame>,
    last_video_duration: u64,
    audio: VecDeque<QueuedAudio>,
    /// Decode time of the next audio frame if it follows without a gap (audio timescale).
    audio_next: Option<u64>,
    last_audio_dts: Option<u64>,
    last_pdt: Option<SystemTime>,
    discontinuity_next: bool,
    events: Vec<Event>,
}

impl Packager {
    pub fn new(config: PackagerConfig, tracks: Tracks) -> Self {
        let first = config.first_sequence;
        Packager {
            config,
            tracks,
            init_id: first,
            init_sent: false,
            next_msn: first,
            next_part: first,
            fragment_sequence: 1,
            segment: None,
            part: OpenPart::default(),
            held: None,
            last_video_duration: 0,
            audio: VecDeque::new(),
            audio_next: None,
            last_audio_dts: None,
            last_pdt: None,
            discontinuity_next: false,
            events: Vec::new(),
        }
    }

    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

    pub fn tracks(&self) -> &Tracks {
        &self.tracks
    }

    /// Adds a video access unit; ignored when the rendition has no video track.
    pub fn push_video(&mut self, frame: VideoFrame) -> Vec<Event> {
        if self.tracks.video.is_none() {
            return Vec::new();
        }
        match self.held.take() {
            Some(previous) if self.segment.is_some() => {
                let duration = frame.dts.saturating_sub(previous.dts).max(1);
                self.last_video_duration = duration;
                self.place_video(previous, duration);
                self.held = Some(frame);
            }
            _ => {
                // Nothing before the first key frame can be decoded.
                if frame.keyframe {
                    self.audio.retain(|a| a.0 >= frame.dts);
                    self.open_segment(frame.dts, frame.received);
                    self.held = Some(frame);
                }
            }
        }
        std::mem::take(&mut self.events)
    }

    /// Adds an AAC frame; ignored when the rendition has no audio track.
    pub fn push_audio(&mut self, frame: AudioFrame) -> Vec<Event> {
        let Some(params) = self.tracks.audio.as_ref() else {
            return Vec::new();
        };
        let rate = u128::from(params.sample_rate.max(1));
        let per_frame = u64::from(params.frame_samples.max(1));
        let frame_ticks = (u128::from(per_frame) * 90_000 / rate) as u64;
        let actual = (u128::from(frame.dts) * rate / 90_000) as u64;
        // Frames that follow on without a gap get back-to-back decode times, so timestamp
        // rounding (RTMP has milliseconds) does not leave holes; a real gap resynchronises.
        let decode = match self.audio_next {
            Some(next) if next.abs_diff(actual) <= 2 * per_frame => next,
            _ => actual,
        };
        self.audio_next = Some(decode + per_frame);
        self.last_audio_dts = Some(frame.dts);
        if self.tracks.video.is_none() {
            self.place_audio_only(frame.dts, frame_ticks, frame.received);
        }
        self.audio.push_back((frame.dts, decode, frame.data));
        if self.audio.len() > MAX_QUEUED_AUDIO {
            self.audio.pop_front();
        }
        std::mem::take(&mut self.events)
    }

    /// Ends the stream: places the last frame and completes the open part and segment.
    pub fn finish(&mut self) -> Vec<Event> {
        self.close_all();
        std::mem::take(&mut self.events)
    }

    /// Changes the tracks (a new codec configuration): completes the open segment; the next
    /// one gets a new init segment and a discontinuity. The same tracks change nothing.
    pub fn reconfigure(&mut self, tracks: Tracks) -> Vec<Event> {
        if tracks == self.tracks {
            return Vec::new();
        }
        self.close_all();
        self.tracks = tracks;
        self.init_sent = false;
        self.discontinuity_next = true;
        std::mem::take(&mut self.events)
    }

    fn close_all(&mut self) {
        let mut end = None;
        if let Some(last) = self.held.take()
            && self.segment.is_some()
        {
            let duration = if self.last_video_duration > 0 {
                self.last_video_duration
            } else {
                3_000
            };
            end = Some(last.dts + duration);
            self.place_video(last, duration);
        }
        if self.tracks.video.is_none()
            && let (Some(dts), Some(params)) = (self.last_audio_dts, self.tracks.audio.as_ref())
        {
            end = Some(
                dts + u64::from(params.frame_samples) * 90_000
                    / u64::from(params.sample_rate.max(1)),
            );
        }
        if let Some(end) = end
            && self.segment.is_some()
        {
            self.close_part(end, true);
            self.close_segment(end);
        }
        self.audio.clear();
        self.audio_next = None;
        self.last_audio_dts = None;
    }

    /// Places a video frame whose duration is known: cuts first if it starts a segment or
    /// would overrun the part.
    fn place_video(&mut self, frame: VideoFrame, duration: u64) {
        let Some(segment) = self.segment.as_ref() else {
            return;
        };
        let elapsed = frame.dts.saturating_sub(segment.start);
        let new_segment = elapsed > 0
            && ((frame.keyframe && elapsed >= ticks(self.config.segment_target))
                || elapsed >= ticks(self.config.max_segment));
        if new_segment {
            self.close_part(frame.dts, false);
            self.close_segment(frame.dts);
            self.open_segment(frame.dts, frame.received);
        } else if !self.part.video.is_empty()
            && frame.dts + duration - self.part.start > ticks(self.config.part_target)
        {
            self.close_part(frame.dts, false);
            self.open_part(frame.dts);
        }
        let part = &mut self.part;
        if part.video.is_empty() {
            part.video_base = frame.dts;
            part.first_key = Some(frame.keyframe);
        }
        part.video.push(Sample {
            duration: u32::try_from(duration).unwrap_or(u32::MAX),
            size: u32::try_from(frame.data.len()).unwrap_or(u32::MAX),
            sync: frame.keyframe,
            cts_offset: i32::try_from(frame.pts as i64 - frame.dts as i64).unwrap_or(0),
        });
        part.video_data.extend_from_slice(&frame.data);
    }

    /// Audio-only: cuts before the frame at `dts` when it starts a segment or would overrun
    /// the part.
    fn place_audio_only(&mut self, dts: u64, frame_ticks: u64, received: SystemTime) {
        let Some(segment) = self.segment.as_ref() else {
            self.open_segment(dts, received);
            return;
        };
        let part_has_audio = self.audio.iter().any(|a| a.0 >= self.part.start);
        if dts.saturating_sub(segment.start) >= ticks(self.config.segment_target) {
            self.close_part(dts, false);
            self.close_segment(dts);
            self.open_segment(dts, received);
        } else if part_has_audio
            && dts + frame_ticks - self.part.start > ticks(self.config.part_target)
        {
            self.close_part(dts, false);
            self.open_part(dts);
        }
    }

    fn open_segment(&mut self, start: u64, received: SystemTime) {
        if !self.init_sent {
            self.init_id = self.next_msn;
            let data = fmp4::init_segment(self.tracks.video.as_ref(), self.tracks.audio.as_ref());
            self.events.push(Event::Init {
                id: self.init_id,
                data: Bytes::from(data),
            });
            self.init_sent = true;
        }
        // Program date-times never go backwards, even if the wall clock does.
        let pdt = match self.last_pdt {
            Some(last) if received <= last => last + Duration::from_millis(1),
            _ => received,
        };
        self.last_pdt = Some(pdt);
        let msn = self.next_msn;
        self.next_msn += 1;
        self.events.push(Event::SegmentStart(SegmentStart {
            msn,
            init_id: self.init_id,
            discontinuity: std::mem::take(&mut self.discontinuity_next),
            program_date_time: pdt,
        }));
        self.segment = Some(OpenSegment {
            msn,
            start,
            parts: 0,
        });
        self.open_part(start);
    }

    fn open_part(&mut self, start: u64) {
        self.part = OpenPart {
            start,
            ..OpenPart::default()
        };
    }

    /// Completes the open part at `end` (90 kHz) with the queued audio before `end` (all of
    /// it when `last`).
    fn close_part(&mut self, end: u64, last: bool) {
        let Some(segment) = self.segment.as_mut() else {
            return;
        };
        let mut audio = Vec::new();
        while let Some(front) = self.audio.front() {
            if !last && front.0 >= end {
                break;
            }
            audio.extend(self.audio.pop_front());
        }
        let part = std::mem::take(&mut self.part);
        if part.video.is_empty() && audio.is_empty() {
            return;
        }
        let mut runs = Vec::with_capacity(2);
        if !part.video.is_empty() {
            runs.push(TrackRun {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: part.video_base,
                samples: &part.video,
                data: &part.video_data,
            });
        }
        let per_frame = self
            .tracks
            .audio
            .as_ref()
            .map_or(1024, |a| a.frame_samples.max(1));
        let audio_samples: Vec<Sample> = audio
            .iter()
            .enumerate()
            .map(|(i, (_, decode, data))| {
                let duration = audio
                    .get(i + 1)
                    .map(|next| next.1.saturating_sub(*decode))
                    .filter(|&d| d > 0 && d <= u64::from(u32::MAX))
                    .map_or(per_frame, |d| d as u32);
                Sample {
                    duration,
                    size: u32::try_from(data.len()).unwrap_or(u32::MAX),
                    sync: true,
                    cts_offset: 0,
                }
            })
            .collect();
        let audio_data: Vec<u8> = audio.iter().flat_map(|a| a.2.iter().copied()).collect();
        if let Some(first) = audio.first() {
            runs.push(TrackRun {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: first.1,
                samples: &audio_samples,
                data: &audio_data,
            });
        }
        let data = fmp4::fragment(self.fragment_sequence, &runs);
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        let independent = self.tracks.video.is_none() || part.first_key.unwrap_or(false);
        self.events.push(Event::Part(Part {
            msn: segment.msn,
            index: segment.parts,
            number: self.next_part,
            duration_90k: end.saturating_sub(part.start),
            independent,
            data: Bytes::from(data),
        }));
        segment.parts += 1;
        self.next_part += 1;
    }

    fn close_segment(&mut self, end: u64) {
        if let Some(segment) = self.segment.take() {
            self.events.push(Event::SegmentEnd(SegmentEnd {
                msn: segment.msn,
                duration_90k: end.saturating_sub(segment.start),
            }));
        }
    }
}
