//! One publish session of a stream: checks codecs, feeds the live packaging of the
//! passthrough variant (MPEG-TS segments or LL-HLS parts, as the application says), the live
//! ladder when the application has one, and the recorder, and hands the finished recording
//! to the upload spool.
//!
//! The recorder, the passthrough and the ladder are independent: a recording that fails
//! (disk full) stops cleanly while live HLS goes on, and a ladder that fails or falls behind
//! never holds the passthrough.

use std::sync::Arc;

use bytes::Bytes;
use media::flv::{AudioTag, SoundFormat, VideoCodec, VideoTag};
use tracing::{debug, error, info, warn};

use crate::Origin;
use crate::config::ApplicationConfig;
use crate::ladder::Ladder;
use crate::packer::{Packer, Start, session_first_sequence};
use crate::record::{FinishedRecording, RecordError, Recorder};
use crate::streams::{LiveStream, SOURCE};

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

pub struct Publication {
    pub stream: Arc<LiveStream>,
    /// Where the stream's name is claimed; released by `finish`, or by `drop` if a panic
    /// unwinds past the connection, so a name is never held forever.
    streams: crate::streams::Streams,
    released: bool,
    /// The passthrough's packaging, made by the first media message.
    source: Option<Packer>,
    /// Numbering of this session's segments; the timeline anchor is the first message's
    /// timestamp, shared by the passthrough and every rung of the ladder.
    start: Start,
    ladder: Option<Ladder>,
    application: ApplicationConfig,
    recording: Recording,
    record_enabled: bool,
    bad_tags: u64,
}

impl Publication {
    pub fn new(origin: &Origin, stream: Arc<LiveStream>, application: &ApplicationConfig) -> Self {
        Self {
            stream,
            streams: origin.streams.clone(),
            released: false,
            source: None,
            start: Start {
                first_sequence: session_first_sequence(),
                anchor_ms: None,
            },
            ladder: None,
            application: application.clone(),
            recording: Recording::Idle,
            record_enabled: origin.config.record.enabled,
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
        self.begin(origin, ts_ms)
            .video_tag(&origin.metrics, ts_ms, &tag);
        if let Some(ladder) = self.ladder.as_mut() {
            ladder.video(ts_ms, &tag);
        }
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
        self.begin(origin, ts_ms)
            .audio_tag(&origin.metrics, ts_ms, &tag);
        if let Some(ladder) = self.ladder.as_mut() {
            ladder.audio(ts_ms, &data);
        }
        Ok(())
    }

    /// The passthrough's packer, made (with the ladder, when the application has one) by the
    /// first media message: its timestamp anchors every variant's timeline.
    fn begin(&mut self, origin: &Origin, ts_ms: u32) -> &mut Packer {
        if self.source.is_none() {
            self.start.anchor_ms = Some(ts_ms);
            let hls = &origin.config.hls;
            self.source = Some(Packer::new(
                self.stream.clone(),
                SOURCE,
                &self.application,
                hls,
                self.start,
            ));
            if let Some(config) = self.application.ladder.clone() {
                self.ladder = Some(Ladder::new(
                    self.stream.clone(),
                    config,
                    &self.application,
                    hls,
                    &origin.metrics,
                    self.start,
                ));
            }
        }
        self.source.as_mut().expect("made above")
    }

    /// Ends the session: the last segment and `#EXT-X-ENDLIST`, the recording finalised and
    /// handed to the upload spool.
    pub async fn finish(mut self, origin: &Origin) {
        if let Some(source) = self.source.as_mut() {
            source.finish(&origin.metrics);
        }
        if let Some(ladder) = self.ladder.take() {
            ladder.finish().await;
        }
        origin.streams.release(&self.stream);
        self.released = true;
        let segments = self.source.as_ref().map_or(0, Packer::segments);
        if segments == 0 {
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
        info!(stream = %self.stream.name, segments, "Publish finished.");
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

fn codec_name(codec: &VideoCodec) -> String {
    match codec {
        VideoCodec::Avc => "H.264".into(),
        VideoCodec::Hevc => "HEVC".into(),
        other => format!("{other:?}"),
    }
}
