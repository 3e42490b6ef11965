//! The live packaging of one variant of a stream (the passthrough `_src`, or a rung of the
//! live ladder): FLV-shaped tags in, MPEG-TS segments or LL-HLS parts out, published to the
//! variant's rendition, with the master playlist kept current (codecs, size, measured
//! bitrate). The passthrough and every rung use this same packager, so they cut at the same
//! keyframes on one timeline.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use media::flv::{AudioTag, VideoTag};
use media::hls::{SegmenterError, StreamInfo};
use media::llhls::units::{TagUnits, Unit};
use media::llhls::{Event, Packager, PackagerConfig};
use tracing::warn;

use crate::config::{ApplicationConfig, HlsConfig, HlsFormat};
use crate::metrics::Metrics;
use crate::streams::{LiveStream, MediaInfo, Rendition, SOURCE, VariantInfo};

/// Where a packer's timeline and numbering start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Media sequence (and LL-HLS part number) of the first segment.
    pub first_sequence: u64,
    /// The input timestamp (ms) that maps to the start of the output timeline; every variant
    /// of a publish gets the same one, so their timestamps agree. `None`: the first frame's.
    pub anchor_ms: Option<u32>,
}

enum Kind {
    Ts(Box<media::hls::LiveSegmenter>),
    Ll(Box<LlLive>),
}

/// LL-HLS: the tag front end, the packager (made once the tracks are known) and the bitrate
/// measured on its output.
struct LlLive {
    units: TagUnits,
    config: PackagerConfig,
    packager: Option<Packager>,
    /// Bytes and 90 kHz ticks of the open segment's parts.
    open: (u64, u64),
    /// Bytes and ticks of recent complete segments, newest last.
    recent: VecDeque<(u64, u64)>,
    window: usize,
    master_set: bool,
}

impl LlLive {
    fn stream_info(&self) -> StreamInfo {
        let mut info = self.units.stream_info();
        let min_ticks = self.config.segment_target.as_millis() as u64 * 90 / 2;
        let measured: Vec<(u64, u64)> = if self.recent.is_empty() {
            vec![self.open]
        } else {
            self.recent.iter().copied().collect()
        };
        let (bytes, ticks) = measured
            .iter()
            .fold((0, 0), |(b, t), &(sb, st)| (b + sb, t + st));
        info.average_bitrate_bps = (ticks > 0).then(|| bytes * 8 * 90_000 / ticks);
        info.peak_bitrate_bps = measured
            .iter()
            .filter(|&&(_, t)| t > 0 && t >= min_ticks)
            .map(|&(b, t)| b * 8 * 90_000 / t)
            .max()
            .or(info.average_bitrate_bps);
        info
    }
}

/// Packages one variant. See the module documentation.
pub struct Packer {
    stream: Arc<LiveStream>,
    /// `src` or a rung's suffix (`480`).
    suffix: String,
    kind: Kind,
    segments: u64,
    bad_tags: u64,
}

impl Packer {
    pub fn new(
        stream: Arc<LiveStream>,
        suffix: &str,
        application: &ApplicationConfig,
        hls: &HlsConfig,
        start: Start,
    ) -> Self {
        let kind = match application.hls {
            HlsFormat::Ts => Kind::Ts(Box::new(media::hls::LiveSegmenter::new(
                media::hls::SegmenterConfig {
                    target_duration: hls.target_duration,
                    max_fragment: hls.max_fragment,
                    window: hls.window,
                    first_sequence: start.first_sequence,
                    timeline_anchor_ms: start.anchor_ms,
                    ..Default::default()
                },
            ))),
            HlsFormat::LlHls => Kind::Ll(Box::new(LlLive {
                units: TagUnits::anchored(start.anchor_ms),
                config: PackagerConfig {
                    part_target: application.part_target,
                    segment_target: application.segment_target,
                    max_segment: hls.max_fragment,
                    first_sequence: start.first_sequence,
                },
                packager: None,
                open: (0, 0),
                recent: VecDeque::new(),
                window: hls.window.max(1),
                master_set: false,
            })),
        };
        stream.add_rendition(suffix);
        Packer {
            stream,
            suffix: suffix.to_owned(),
            kind,
            segments: 0,
            bad_tags: 0,
        }
    }

    /// Segments completed so far.
    pub fn segments(&self) -> u64 {
        self.segments
    }

    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// One video message (sequence header or access unit).
    pub fn video_tag(&mut self, metrics: &Metrics, ts_ms: u32, tag: &VideoTag<'_>) {
        let out = match &mut self.kind {
            Kind::Ts(segmenter) => segmenter.push_video_tag(ts_ms, tag).map(Out::Ts),
            Kind::Ll(ll) => ll
                .units
                .push_video_tag(ts_ms, tag, SystemTime::now())
                .map(Out::Ll),
        };
        self.deliver(metrics, "video", out);
    }

    /// One audio message (sequence header or raw AAC frame).
    pub fn audio_tag(&mut self, metrics: &Metrics, ts_ms: u32, tag: &AudioTag<'_>) {
        let out = match &mut self.kind {
            Kind::Ts(segmenter) => segmenter.push_audio_tag(ts_ms, tag).map(Out::Ts),
            Kind::Ll(ll) => ll
                .units
                .push_audio_tag(ts_ms, tag, SystemTime::now())
                .map(Out::Ll),
        };
        self.deliver(metrics, "audio", out);
    }

    /// The end of the publish: the last segment (or part) goes out.
    pub fn finish(&mut self, metrics: &Metrics) {
        match &mut self.kind {
            Kind::Ts(segmenter) => {
                let last = segmenter.finish();
                self.publish_ts(metrics, last);
            }
            Kind::Ll(ll) => {
                let last = ll
                    .packager
                    .as_mut()
                    .map(Packager::finish)
                    .unwrap_or_default();
                self.publish_ll(metrics, last);
            }
        }
    }

    fn deliver(&mut self, metrics: &Metrics, kind: &str, out: Result<Out, SegmenterError>) {
        match out {
            Ok(Out::Ts(segments)) => self.publish_ts(metrics, segments),
            Ok(Out::Ll(units)) => self.package(metrics, units),
            Err(e) => self.bad_tag(kind, &e),
        }
    }

    /// Feeds access units to the LL-HLS packager, made when the tracks are first announced.
    fn package(&mut self, metrics: &Metrics, units: Vec<Unit>) {
        let Kind::Ll(ll) = &mut self.kind else {
            return;
        };
        let mut events = Vec::new();
        for unit in units {
            match unit {
                Unit::Tracks(tracks) => match ll.packager.as_mut() {
                    Some(packager) => events.extend(packager.reconfigure(tracks)),
                    None => ll.packager = Some(Packager::new(ll.config.clone(), tracks)),
                },
                Unit::Video(frame) => {
                    if let Some(packager) = ll.packager.as_mut() {
                        events.extend(packager.push_video(frame));
                    }
                }
                Unit::Audio(frame) => {
                    if let Some(packager) = ll.packager.as_mut() {
                        events.extend(packager.push_audio(frame));
                    }
                }
            }
        }
        self.publish_ll(metrics, events);
    }

    /// Hands packager output to the rendition and keeps the master playlist current.
    fn publish_ll(&mut self, metrics: &Metrics, events: Vec<Event>) {
        let Kind::Ll(ll) = &mut self.kind else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let mut master_due = !ll.master_set;
        for event in &events {
            match event {
                Event::Part(part) => {
                    metrics.parts_written.inc();
                    ll.open.0 += part.data.len() as u64;
                    ll.open.1 += part.duration_90k;
                }
                Event::SegmentEnd(_) => {
                    metrics.segments_written.inc();
                    self.segments += 1;
                    ll.recent.push_back(std::mem::take(&mut ll.open));
                    while ll.recent.len() > ll.window {
                        ll.recent.pop_front();
                    }
                    master_due = true;
                }
                _ => {}
            }
        }
        let has_parts = events.iter().any(|e| matches!(e, Event::Part(_)));
        self.stream.apply_ll(&self.suffix, events);
        if master_due && (has_parts || ll.master_set) {
            ll.master_set = true;
            let info = ll.stream_info();
            self.announce(&info);
        }
    }

    fn publish_ts(&mut self, metrics: &Metrics, segments: Vec<media::hls::Segment>) {
        if segments.is_empty() {
            return;
        }
        let Kind::Ts(segmenter) = &self.kind else {
            return;
        };
        let info = segmenter.stream_info();
        let Some(rendition) = self.stream.rendition(&self.suffix) else {
            return;
        };
        let Rendition::Ts(rendition) = &*rendition else {
            return;
        };
        for segment in segments {
            self.segments += 1;
            metrics.segments_written.inc();
            rendition.push_segment(segment);
        }
        self.announce(&info);
    }

    /// Lists the variant in the master playlist with what is known of it; the passthrough's
    /// facts also feed the streams API.
    fn announce(&self, info: &StreamInfo) {
        if self.suffix == SOURCE {
            set_info(&self.stream, info);
        }
        let video = info.video.as_ref();
        self.stream.set_variant(
            &self.suffix,
            VariantInfo {
                bandwidth: info.peak_bitrate_bps.unwrap_or(0).max(1),
                average_bandwidth: info.average_bitrate_bps,
                resolution: video.and_then(|v| v.resolution),
                codecs: info.codecs(),
                frame_rate: video.and_then(|v| v.frame_rate),
            },
        );
    }

    fn bad_tag(&mut self, kind: &str, error: &dyn std::fmt::Display) {
        self.bad_tags += 1;
        // One line per power of two keeps a broken encoder from flooding the log.
        if self.bad_tags.is_power_of_two() {
            warn!(stream = %self.stream.name, variant = %self.suffix, kind, count = self.bad_tags, %error, "Skipped a malformed media tag.");
        }
    }
}

/// What a tag became: MPEG-TS segments, or access units for the LL-HLS packager.
enum Out {
    Ts(Vec<media::hls::Segment>),
    Ll(Vec<Unit>),
}

/// Publishes what the packager knows about the media for the streams API.
fn set_info(stream: &LiveStream, info: &StreamInfo) {
    stream.set_info(MediaInfo {
        video_codec: info.video.as_ref().map(|v| v.codec.clone()),
        audio_codec: info.audio.as_ref().map(|a| a.codec.clone()),
        width: info.video.as_ref().and_then(|v| v.resolution).map(|r| r.0),
        height: info.video.as_ref().and_then(|v| v.resolution).map(|r| r.1),
        frame_rate: info.video.as_ref().and_then(|v| v.frame_rate),
        audio_sample_rate: info.audio.as_ref().map(|a| a.sample_rate),
        audio_channels: info.audio.as_ref().and_then(|a| a.channels),
        bitrate: info.average_bitrate_bps,
    });
}

/// Segment numbers that never repeat across sessions of one name (segments are cached for
/// 15 minutes): a session numbers from its start in milliseconds since the epoch.
pub fn session_first_sequence() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
