//! Live ABR at the origin: the publisher's H.264 goes to a [`live::Transcoder`] (GStreamer,
//! IDRs at the source's keyframes) and each rung it outputs is packaged by the same
//! [`Packer`] as the passthrough, with the source's audio, on the passthrough's timeline and
//! numbering, so every variant cuts its segments at the same instants.
//!
//! The publisher's connection never waits for the ladder: [`Transcoder::push`] does not block,
//! audio goes to the rung packagers over a bounded channel (`try_send`), and packaging runs on
//! its own task. When the machine cannot keep up, the transcoder drops its highest rung: the
//! rung leaves the master playlist, its URLs answer 404 (players switch to another variant),
//! and the log and `spherecast_origin_ladder_rungs_dropped_total` say so. Any other failure
//! of the ladder leaves the stream with its passthrough variant only.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use live::{DropReason, LiveAbrConfig, LiveError, Output, Pushed, Transcoder};
use media::flv::{AacPacketType, AudioTag, FrameType, VideoCodec, VideoPacketType, VideoTag};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{ApplicationConfig, HlsConfig};
use crate::metrics::Metrics;
use crate::packer::{Packer, Start};
use crate::streams::LiveStream;

/// Audio messages waiting for the packaging task; beyond this the rungs lose audio frames
/// (counted) rather than hold the publisher.
const AUDIO_QUEUE: usize = 1_024;
/// Source audio kept for a rung that starts late: its first segment gets the audio of its
/// first frames, which arrived before the encoder produced them (ms of media).
const AUDIO_HISTORY_MS: i64 = 5_000;

/// What the publisher's side sends the packaging task.
enum Input {
    /// A new transcoder's output: rung packers start over.
    Generation {
        output: mpsc::Receiver<Output>,
        start: Start,
    },
    /// An FLV audio message of the source.
    Audio { ts_ms: u32, data: Bytes },
}

/// The ladder of one publish. Lives with its `Publication`.
pub struct Ladder {
    stream: Arc<LiveStream>,
    config: LiveAbrConfig,
    metrics: Metrics,
    /// The source's current AVCDecoderConfigurationRecord.
    record: Option<Bytes>,
    transcoder: Option<Transcoder>,
    input: Option<mpsc::Sender<Input>>,
    task: Option<JoinHandle<()>>,
    /// Where the passthrough's numbering and timeline start.
    start: Start,
    /// The ladder has been given up for this publish (it failed, or no rung fits).
    stopped: bool,
    bad_units: u64,
}

impl Ladder {
    pub fn new(
        stream: Arc<LiveStream>,
        config: LiveAbrConfig,
        application: &ApplicationConfig,
        hls: &HlsConfig,
        metrics: &Metrics,
        start: Start,
    ) -> Self {
        let (tx, rx) = mpsc::channel(AUDIO_QUEUE);
        let packaging = Packaging {
            stream: stream.clone(),
            application: application.clone(),
            hls: hls.clone(),
            metrics: metrics.clone(),
            rungs: Vec::new(),
            audio_header: None,
            audio_history: VecDeque::new(),
        };
        Ladder {
            stream,
            config,
            metrics: metrics.clone(),
            record: None,
            transcoder: None,
            input: Some(tx),
            task: Some(tokio::spawn(packaging.run(rx))),
            start,
            stopped: false,
            bad_units: 0,
        }
    }

    /// A source video message: a new decoder configuration (re)starts the transcoder, access
    /// units are queued for it.
    pub fn video(&mut self, ts_ms: u32, tag: &VideoTag<'_>) {
        if self.stopped || tag.codec != VideoCodec::Avc {
            return;
        }
        match (tag.packet_type, tag.frame_type) {
            (VideoPacketType::SequenceHeader, _) => self.configure(tag.payload),
            (VideoPacketType::Nalu, FrameType::Key | FrameType::Inter) => {
                let Some(transcoder) = self.transcoder.as_mut() else {
                    return;
                };
                match transcoder.push(
                    ts_ms,
                    tag.composition_time_ms,
                    tag.frame_type == FrameType::Key,
                    tag.payload,
                ) {
                    Ok(Pushed::Queued) => {}
                    Ok(Pushed::Dropped(DropReason::QueueFull)) => {
                        self.metrics.ladder_frames_dropped.inc();
                    }
                    Ok(Pushed::Dropped(_)) => {}
                    Err(LiveError::BadAccessUnit { dts_ms, source }) => {
                        self.bad_units += 1;
                        if self.bad_units.is_power_of_two() {
                            warn!(stream = %self.stream.name, dts_ms, error = %source, count = self.bad_units, "Live ladder skipped a malformed access unit; it resumes at the next keyframe.");
                        }
                    }
                    Err(e) => {
                        // The packaging task also gets `Output::Failed` and removes the rungs.
                        error!(stream = %self.stream.name, error = %e, "Live ladder stopped; the stream goes on with its passthrough variant only.");
                        self.transcoder = None;
                        self.stopped = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// A source audio message, for every rung.
    pub fn audio(&mut self, ts_ms: u32, data: &Bytes) {
        if self.stopped {
            return;
        }
        let Some(input) = &self.input else {
            return;
        };
        let message = Input::Audio {
            ts_ms,
            data: data.clone(),
        };
        if input.try_send(message).is_err() {
            self.metrics.ladder_audio_dropped.inc();
        }
    }

    fn configure(&mut self, record: &[u8]) {
        if self.record.as_deref() == Some(record) {
            return;
        }
        let first = self.record.is_none();
        self.record = Some(Bytes::copy_from_slice(record));
        // A changed configuration (the encoder restarted with other settings) restarts the
        // ladder: the old one stops without draining, its rungs are replaced.
        if self.transcoder.take().is_some() {
            info!(stream = %self.stream.name, "The source's video configuration changed; the live ladder restarts.");
        }
        let start = if first {
            self.start
        } else {
            // Fresh numbers: the replaced rungs' segments stay cached under theirs.
            Start {
                first_sequence: crate::packer::session_first_sequence(),
                ..self.start
            }
        };
        let name = self.stream.name.clone();
        let config = self.config.clone();
        // Building and starting the pipeline takes a few milliseconds of blocking calls.
        let started = tokio::task::block_in_place(|| Transcoder::start(&name, &config, record));
        match started {
            Ok((transcoder, output)) => {
                self.transcoder = Some(transcoder);
                if let Some(input) = &self.input {
                    // Rare and small: waiting here is fine, and the task is always reading.
                    let message = Input::Generation { output, start };
                    if tokio::task::block_in_place(|| input.blocking_send(message)).is_err() {
                        self.stopped = true;
                    }
                }
            }
            Err(LiveError::NoRungFits { width, height }) => {
                info!(stream = %name, width, height, "The source is narrower than every rung of the live ladder; it is served as its passthrough variant only.");
                self.stopped = true;
            }
            Err(e) => {
                self.metrics.ladder_failures.inc();
                error!(stream = %name, error = %e, "Live ladder could not start; the stream is served as its passthrough variant only.");
                self.stopped = true;
            }
        }
    }

    /// The end of the publish: the encoders drain, the rungs' last segments go out. Returns
    /// when every rung is finished (before the stream's playlists get `#EXT-X-ENDLIST`).
    pub async fn finish(mut self) {
        if let Some(transcoder) = self.transcoder.take() {
            let name = self.stream.name.clone();
            let drained = tokio::task::spawn_blocking(move || transcoder.finish()).await;
            match drained {
                Ok(Ok(stats)) => {
                    info!(stream = %name, frames_in = stats.frames_in, frames_dropped = stats.frames_dropped, rungs_dropped = stats.rungs_dropped, frames_out = ?stats.frames_out, "Live ladder finished.");
                }
                Ok(Err(e)) => {
                    warn!(stream = %name, error = %e, "Live ladder did not finish cleanly; its last frames are lost.")
                }
                Err(e) => error!(stream = %name, error = %e, "Live ladder finisher panicked."),
            }
        }
        self.input = None;
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            error!(stream = %self.stream.name, error = %e, "Live ladder packaging panicked.");
        }
    }
}

/// One rung being packaged.
struct Rung {
    packer: Packer,
    /// No frame packaged yet: the first one brings the audio header and recent audio along.
    waiting: bool,
}

/// The packaging task's state.
struct Packaging {
    stream: Arc<LiveStream>,
    application: ApplicationConfig,
    hls: HlsConfig,
    metrics: Metrics,
    /// By the transcoder's rung index; `None` before its start or after a drop.
    rungs: Vec<Option<Rung>>,
    /// The source's latest AAC sequence header.
    audio_header: Option<(u32, Bytes)>,
    /// Recent raw AAC messages (ts, FLV body), oldest first.
    audio_history: VecDeque<(u32, Bytes)>,
}

impl Packaging {
    async fn run(mut self, mut input: mpsc::Receiver<Input>) {
        let mut output: Option<mpsc::Receiver<Output>> = None;
        let mut start = Start {
            first_sequence: 0,
            anchor_ms: None,
        };
        loop {
            tokio::select! {
                message = input.recv() => match message {
                    Some(Input::Generation { output: next, start: next_start }) => {
                        self.close_all();
                        output = Some(next);
                        start = next_start;
                    }
                    Some(Input::Audio { ts_ms, data }) => self.audio(ts_ms, data),
                    None => break,
                },
                out = next_output(&mut output) => match out {
                    Some(out) => self.output(out, start),
                    None => output = None,
                },
            }
        }
        // The publish ended and the transcoder has drained: take what it left, then finish.
        if let Some(mut rx) = output {
            while let Some(out) = rx.recv().await {
                self.output(out, start);
            }
        }
        for rung in self.rungs.iter_mut().flatten() {
            rung.packer.finish(&self.metrics);
        }
        let active = self.rungs.iter().flatten().count();
        self.metrics.ladder_rungs.dec_by(active as i64);
    }

    fn output(&mut self, out: Output, start: Start) {
        match out {
            Output::Start(rung) => {
                let record = rung.avc_record;
                if let Some(Some(existing)) = self.rungs.get_mut(rung.rung) {
                    // The encoder renegotiated: the packager starts a discontinuous segment.
                    video_header(&mut existing.packer, &self.metrics, &record);
                    return;
                }
                let suffix = rung.name.trim_start_matches('_').to_owned();
                let mut packer = Packer::new(
                    self.stream.clone(),
                    &suffix,
                    &self.application,
                    &self.hls,
                    start,
                );
                video_header(&mut packer, &self.metrics, &record);
                if self.rungs.len() <= rung.rung {
                    self.rungs.resize_with(rung.rung + 1, || None);
                }
                self.rungs[rung.rung] = Some(Rung {
                    packer,
                    waiting: true,
                });
                self.metrics.ladder_rungs.inc();
                info!(stream = %self.stream.name, variant = %format!("{}_{suffix}", self.stream.name), width = rung.width, height = rung.height, kbps = rung.video_kbps, "Live ladder rung started.");
            }
            Output::Frame(frame) => {
                let Some(Some(rung)) = self.rungs.get_mut(frame.rung) else {
                    return;
                };
                if rung.waiting {
                    rung.waiting = false;
                    if let Some((ts, header)) = &self.audio_header {
                        audio_message(&mut rung.packer, &self.metrics, *ts, header);
                    }
                    for (ts, data) in &self.audio_history {
                        if ts_diff(*ts, frame.dts_ms) >= 0 {
                            audio_message(&mut rung.packer, &self.metrics, *ts, data);
                        }
                    }
                }
                let tag = VideoTag {
                    frame_type: if frame.keyframe {
                        FrameType::Key
                    } else {
                        FrameType::Inter
                    },
                    codec: VideoCodec::Avc,
                    packet_type: VideoPacketType::Nalu,
                    composition_time_ms: frame.cts_ms,
                    enhanced: false,
                    payload: &frame.avcc,
                };
                rung.packer.video_tag(&self.metrics, frame.dts_ms, &tag);
            }
            Output::RungDropped { rung, name, reason } => {
                self.metrics.ladder_rungs_dropped.inc();
                warn!(stream = %self.stream.name, variant = %format!("{}{name}", self.stream.name), %reason, "Live ladder dropped its highest rung: this machine cannot transcode the whole ladder in real time. The rung leaves the master playlist; players move to another variant.");
                if let Some(slot) = self.rungs.get_mut(rung)
                    && let Some(dropped) = slot.take()
                {
                    self.stream.remove_rendition(dropped.packer.suffix());
                    self.metrics.ladder_rungs.dec();
                }
            }
            Output::Failed(e) => {
                self.metrics.ladder_failures.inc();
                error!(stream = %self.stream.name, error = %e, "Live ladder failed; the stream goes on with its passthrough variant only.");
                self.remove_all();
            }
        }
    }

    fn audio(&mut self, ts_ms: u32, data: Bytes) {
        let Ok(tag) = AudioTag::parse(&data) else {
            // The passthrough already counted and logged it.
            return;
        };
        if tag.packet_type == AacPacketType::SequenceHeader {
            self.audio_header = Some((ts_ms, data.clone()));
        } else {
            self.audio_history.push_back((ts_ms, data.clone()));
            while self
                .audio_history
                .front()
                .is_some_and(|(old, _)| ts_diff(ts_ms, *old) > AUDIO_HISTORY_MS)
            {
                self.audio_history.pop_front();
            }
        }
        for rung in self.rungs.iter_mut().flatten() {
            if !rung.waiting {
                rung.packer.audio_tag(&self.metrics, ts_ms, &tag);
            }
        }
    }

    /// A new transcoder replaces the old one: its rungs end and leave the stream.
    fn close_all(&mut self) {
        for rung in self.rungs.iter_mut().flatten() {
            rung.packer.finish(&self.metrics);
        }
        self.remove_all();
    }

    fn remove_all(&mut self) {
        for rung in self.rungs.drain(..).flatten() {
            self.stream.remove_rendition(rung.packer.suffix());
            self.metrics.ladder_rungs.dec();
        }
    }
}

/// The next output of the current transcoder; pending while there is none.
async fn next_output(output: &mut Option<mpsc::Receiver<Output>>) -> Option<Output> {
    match output {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn video_header(packer: &mut Packer, metrics: &Metrics, record: &[u8]) {
    let tag = VideoTag {
        frame_type: FrameType::Key,
        codec: VideoCodec::Avc,
        packet_type: VideoPacketType::SequenceHeader,
        composition_time_ms: 0,
        enhanced: false,
        payload: record,
    };
    packer.video_tag(metrics, 0, &tag);
}

fn audio_message(packer: &mut Packer, metrics: &Metrics, ts_ms: u32, data: &Bytes) {
    if let Ok(tag) = AudioTag::parse(data) {
        packer.audio_tag(metrics, ts_ms, &tag);
    }
}

/// Signed difference `a - b` of two 32-bit RTMP timestamps (ms), modulo 2^32.
fn ts_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}
