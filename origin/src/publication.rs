//! One publish session of a stream: checks codecs, feeds the live packaging (the MPEG-TS
//! segmenter, or the LL-HLS front end and packager, as the application says) and the recorder,
//! and hands the finished recording to the upload spool.
//!
//! The recorder and the segmenter are independent: a recording that fails (disk full) stops
//! cleanly while live HLS goes on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use media::flv::{AudioTag, SoundFormat, VideoCodec, VideoTag};
use media::llhls::units::{TagUnits, Unit};
use media::llhls::{Event, Packager, PackagerConfig};
use tracing::{debug, error, info, warn};

use crate::Origin;
use crate::config::{ApplicationConfig, HlsFormat};
use crate::record::{FinishedRecording, RecordError, Recorder};
use crate::streams::{LiveStream, MediaInfo};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("stream {stream:?}: unsupported video codec {codec}; publish H.264 (AVC)")]
    UnsupportedVideo { stream: String, codec: String },
    #[error("stream {stream:?}: unsupported audio codec {codec}; publish AAC")]
    UnsupportedAudio { stream: String, codec: String },
}

enum Recording {
    /// Recording is off, or nothing arrived yet.
    Idle,
    Active(Box<Recorder>),
    /// Stopped by an error; the session goes on without a recording.
    Failed,
}

/// The live packaging of a publication.
enum Live {
    Ts(Box<media::hls::LiveSegmenter>),
    Ll(Box<LlLive>),
}

/// What a tag became: MPEG-TS segments, or access units for the LL-HLS packager.
enum Out {
    Ts(Vec<media::hls::Segment>),
    Ll(Vec<Unit>),
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
    fn stream_info(&self) -> media::hls::StreamInfo {
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

pub struct Publication {
    pub stream: Arc<LiveStream>,
    /// Where the stream's name is claimed; released by `finish`, or by `drop` if a panic
    /// unwinds past the connection, so a name is never held forever.
    streams: crate::streams::Streams,
    released: bool,
    live: Live,
    recording: Recording,
    record_enabled: bool,
    segments: u64,
    bad_tags: u64,
}

impl Publication {
    pub fn new(origin: &Origin, stream: Arc<LiveStream>, application: &ApplicationConfig) -> Self {
        let hls = &origin.config.hls;
        // Segment URIs must never repeat across sessions of one name (they are cached for
        // 15 minutes): each session numbers its segments from its start in milliseconds.
        let first_sequence = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let live = match application.hls {
            HlsFormat::Ts => Live::Ts(Box::new(media::hls::LiveSegmenter::new(
                media::hls::SegmenterConfig {
                    target_duration: hls.target_duration,
                    max_fragment: hls.max_fragment,
                    window: hls.window,
                    first_sequence,
                    ..Default::default()
                },
            ))),
            HlsFormat::LlHls => Live::Ll(Box::new(LlLive {
                units: TagUnits::new(),
                config: PackagerConfig {
                    part_target: application.part_target,
                    segment_target: application.segment_target,
                    max_segment: hls.max_fragment,
                    first_sequence,
                },
                packager: None,
                open: (0, 0),
                recent: VecDeque::new(),
                window: hls.window.max(1),
                master_set: false,
            })),
        };
        Self {
            stream,
            streams: origin.streams.clone(),
            released: false,
            live,
            recording: Recording::Idle,
            record_enabled: origin.config.record.enabled,
            segments: 0,
            bad_tags: 0,
        }
    }

    pub fn on_video(&mut self, origin: &Origin, ts_ms: u32, data: Bytes) -> Result<(), MediaError> {
        let tag = match VideoTag::parse(&data) {
            Ok(tag) => tag,
            Err(e) => {
                self.bad_tag("video", &e);
                return Ok(());
            }
        };
        match tag.codec {
            VideoCodec::Avc => {}
            other => {
                let codec = codec_name(&other);
                error!(stream = %self.stream.name, %codec, "Publish rejected: unsupported video codec.");
                origin.metrics.publishes_rejected.inc();
                return Err(MediaError::UnsupportedVideo {
                    stream: self.stream.name.clone(),
                    codec,
                });
            }
        }
        self.record(origin, |r| r.write_video(ts_ms, &data));
        let out = match &mut self.live {
            Live::Ts(segmenter) => segmenter.push_video_tag(ts_ms, &tag).map(Out::Ts),
            Live::Ll(ll) => ll
                .units
                .push_video_tag(ts_ms, &tag, SystemTime::now())
                .map(Out::Ll),
        };
        self.deliver(origin, "video", out);
        Ok(())
    }

    pub fn on_audio(&mut self, origin: &Origin, ts_ms: u32, data: Bytes) -> Result<(), MediaError> {
        let tag = match AudioTag::parse(&data) {
            Ok(tag) => tag,
            Err(e) => {
                self.bad_tag("audio", &e);
                return Ok(());
            }
        };
        if tag.format != SoundFormat::Aac {
            let codec = format!("{:?}", tag.format);
            error!(stream = %self.stream.name, %codec, "Publish rejected: unsupported audio codec.");
            origin.metrics.publishes_rejected.inc();
            return Err(MediaError::UnsupportedAudio {
                stream: self.stream.name.clone(),
                codec,
            });
        }
        self.record(origin, |r| r.write_audio(ts_ms, &data));
        let out = match &mut self.live {
            Live::Ts(segmenter) => segmenter.push_audio_tag(ts_ms, &tag).map(Out::Ts),
            Live::Ll(ll) => ll
                .units
                .push_audio_tag(ts_ms, &tag, SystemTime::now())
                .map(Out::Ll),
        };
        self.deliver(origin, "audio", out);
        Ok(())
    }

    fn deliver(
        &mut self,
        origin: &Origin,
        kind: &str,
        out: Result<Out, media::hls::SegmenterError>,
    ) {
        match out {
            Ok(Out::Ts(segments)) => self.publish(origin, segments),
            Ok(Out::Ll(units)) => self.package(origin, units),
            Err(e) => self.bad_tag(kind, &e),
        }
    }

    /// Feeds access units to the LL-HLS packager, made when the tracks are first announced.
    fn package(&mut self, origin: &Origin, units: Vec<Unit>) {
        let Live::Ll(ll) = &mut self.live else {
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
        self.publish_ll(origin, events);
    }

    /// Hands packager output to the stream and keeps the master playlist and the bitrate
    /// current.
    fn publish_ll(&mut self, origin: &Origin, events: Vec<Event>) {
        let Live::Ll(ll) = &mut self.live else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let mut master_due = !ll.master_set;
        for event in &events {
            match event {
                Event::Part(part) => {
                    origin.metrics.parts_written.inc();
                    ll.open.0 += part.data.len() as u64;
                    ll.open.1 += part.duration_90k;
                }
                Event::SegmentEnd(_) => {
                    origin.metrics.segments_written.inc();
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
        if let Some(rendition) = &self.stream.ll {
            rendition.apply(events);
        }
        if master_due && (has_parts || ll.master_set) {
            ll.master_set = true;
            let info = ll.stream_info();
            set_info(&self.stream, &info);
            self.stream
                .set_master_playlist(master_playlist(&self.stream.name, &info));
        }
    }

    /// Ends the session: the last segment and `#EXT-X-ENDLIST`, the recording finalised and
    /// handed to the upload spool.
    pub async fn finish(mut self, origin: &Origin) {
        match &mut self.live {
            Live::Ts(segmenter) => {
                let last = segmenter.finish();
                self.publish(origin, last);
            }
            Live::Ll(ll) => {
                let last = ll
                    .packager
                    .as_mut()
                    .map(Packager::finish)
                    .unwrap_or_default();
                self.publish_ll(origin, last);
            }
        }
        origin.streams.release(&self.stream);
        self.released = true;
        if self.segments == 0 {
            origin.streams.remove(&self.stream);
        }
        let recording = std::mem::replace(&mut self.recording, Recording::Idle);
        if let Recording::Active(recorder) = recording {
            let finished = tokio::task::spawn_blocking(move || recorder.finish()).await;
            match finished {
                Ok(Ok(done)) => self.submit(origin, done),
                // Only sequence headers arrived: there is nothing to keep, and the file is gone.
                Ok(Err(RecordError::Empty { path })) => {
                    debug!(stream = %self.stream.name, file = %path.display(), "Recording had no frames; nothing kept.");
                }
                Ok(Err(e)) => {
                    origin.metrics.recordings_failed.inc();
                    error!(stream = %self.stream.name, error = %e, "Recording could not be finalised.");
                    if let Some(kept) = e.into_salvaged() {
                        self.submit(origin, kept);
                    }
                }
                Err(e) => {
                    error!(stream = %self.stream.name, error = %e, "Recording finaliser panicked.")
                }
            }
        }
        info!(stream = %self.stream.name, segments = self.segments, "Publish finished.");
    }

    fn publish(&mut self, origin: &Origin, segments: Vec<media::hls::Segment>) {
        if segments.is_empty() {
            return;
        }
        let Live::Ts(segmenter) = &self.live else {
            return;
        };
        let info = segmenter.stream_info();
        set_info(&self.stream, &info);
        let master = master_playlist(&self.stream.name, &info);
        for segment in segments {
            self.segments += 1;
            origin.metrics.segments_written.inc();
            self.stream.push_segment(segment, master.clone());
        }
    }

    /// Runs `write` on the active recorder, starting it on the first tag. A failure stops the
    /// recording (what was written is kept and uploaded), never the stream.
    fn record(
        &mut self,
        origin: &Origin,
        write: impl FnOnce(
            &mut Recorder,
        ) -> Result<Option<FinishedRecording>, crate::record::RecordError>,
    ) {
        if !self.record_enabled {
            return;
        }
        if let Recording::Idle = self.recording {
            let max = origin.config.record.max_size_kib.saturating_mul(1024);
            match Recorder::create(
                &origin.recording_dir,
                &self.stream.name,
                self.stream.started_at,
                max,
            ) {
                Ok(recorder) => self.recording = Recording::Active(Box::new(recorder)),
                Err(e) => {
                    origin.metrics.recordings_failed.inc();
                    error!(stream = %self.stream.name, error = %e, "Recording could not start; live HLS goes on.");
                    self.recording = Recording::Failed;
                }
            }
        }
        let Recording::Active(recorder) = &mut self.recording else {
            return;
        };
        // A rollover fsyncs a part of up to max_size_kib: keep it off the async workers so
        // other streams and HTTP are not stalled. Plain writes go to the page cache.
        let written = if recorder.rollover_due() {
            tokio::task::block_in_place(|| write(recorder))
        } else {
            write(recorder)
        };
        match written {
            Ok(Some(part)) => self.submit(origin, part),
            Ok(None) => {}
            Err(e) => {
                origin.metrics.recordings_failed.inc();
                error!(stream = %self.stream.name, error = %e, "Recording stopped; live HLS goes on.");
                if let Recording::Active(recorder) =
                    std::mem::replace(&mut self.recording, Recording::Failed)
                    && let Some(partial) = tokio::task::block_in_place(|| recorder.abandon())
                {
                    self.submit(origin, partial);
                }
            }
        }
    }

    /// Hands a finished recording to the upload spool. Moving it can mean a copy across file
    /// systems, so it runs on the blocking pool, off the connection's task.
    fn submit(&self, origin: &Origin, done: FinishedRecording) {
        origin.metrics.recordings_finished.inc();
        info!(stream = %self.stream.name, file = %done.file_name, duration = ?done.duration, bytes = done.size, "Recording finished.");
        let spool = origin.spool.clone();
        origin.tasks.spawn_blocking(move || {
            if let Err(e) = spool.submit(&done) {
                error!(file = %done.path.display(), error = %e, "Recording stays where it is: the spool refused it.");
            }
        });
    }

    fn bad_tag(&mut self, kind: &str, error: &dyn std::fmt::Display) {
        self.bad_tags += 1;
        // One line per power of two keeps a broken encoder from flooding the log.
        if self.bad_tags.is_power_of_two() {
            warn!(stream = %self.stream.name, kind, count = self.bad_tags, %error, "Skipped a malformed media tag.");
        }
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        if !self.released {
            error!(stream = %self.stream.name, "Publish ended without finishing; its recording is recovered at the next start.");
            self.streams.release(&self.stream);
        }
    }
}

/// Publishes what the packager knows about the media for the streams API.
fn set_info(stream: &LiveStream, info: &media::hls::StreamInfo) {
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

/// The master playlist: one variant, the source, with what the SPS and the
/// AudioSpecificConfig say and the peak segment bitrate measured so far.
fn master_playlist(name: &str, info: &media::hls::StreamInfo) -> Bytes {
    let video = info.video.as_ref();
    let variant = media::playlist::Variant {
        bandwidth: info.peak_bitrate_bps.unwrap_or(0).max(1),
        average_bandwidth: info.average_bitrate_bps,
        resolution: video.and_then(|v| v.resolution),
        codecs: info.codecs(),
        frame_rate: video.and_then(|v| v.frame_rate),
        uri: format!("{name}_src/index.m3u8"),
    };
    Bytes::from(media::playlist::master_playlist(&[variant]))
}

fn codec_name(codec: &VideoCodec) -> String {
    match codec {
        VideoCodec::Avc => "H.264".into(),
        VideoCodec::Hevc => "HEVC".into(),
        other => format!("{other:?}"),
    }
}
