//! One live stream's ladder: the GStreamer pipeline, its input ([`Transcoder::push`]), its
//! outputs (a bounded channel of [`Output`]), the detection of a ladder that cannot keep up,
//! and its lifecycle ([`Transcoder::finish`], drop).
//!
//! Threads: the caller's (push), appsrc's streaming thread (parse + decode), one per rung
//! (behind its queue: scale + encode + appsink), and a control thread that watches the bus
//! and delivers events raised by `push`, so `push` itself never waits on the channel.
//!
//! Timestamps: input in FLV milliseconds (DTS + composition offset), carried as nanoseconds
//! (exact multiples of 1 ms) through GStreamer, and back to milliseconds on the output: a
//! rung's frame has exactly the PTS of the source frame it was made from.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use media::avc::{self, AvcConfig, AvcError, nal_type};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::{Backpressure, LiveAbrConfig, LiveError, PlannedRung, plan};

const NS_PER_MS: u64 = 1_000_000;
/// x264's maximum IDR interval: larger than any sane source GOP, so that the only IDRs are the
/// forced ones at the source's keyframes (about 55 minutes at 30 fps).
const KEY_INT_MAX: u32 = 100_000;
/// How often the control thread looks at its flags when nothing happens on the bus.
/// Decoder errors tolerated before the ladder stops: none. (libav resets its count between
/// frames, so a larger value never trips even on a stream of pure noise.)
const DECODER_MAX_ERRORS: i32 = 0;
const CONTROL_TICK: Duration = Duration::from_millis(100);

/// The start of a rung's output, sent before its first frame (and again should its encoder
/// renegotiate): everything the rung's packager needs besides the frames.
#[derive(Debug, Clone, PartialEq)]
pub struct RungStart {
    /// Index of the rung in [`Transcoder::rungs`].
    pub rung: usize,
    /// Variant name suffix, e.g. `_480`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
    /// The rung's AVCDecoderConfigurationRecord, for
    /// `media::hls::LiveSegmenter::set_avc_config_bytes`.
    pub avc_record: Bytes,
}

/// One encoded access unit of a rung, shaped for `media::hls::LiveSegmenter::push_video_frame`
/// (`dts_ms`, `cts_ms`, `keyframe`, `avcc`).
#[derive(Debug, Clone, PartialEq)]
pub struct RungFrame {
    /// Index of the rung in [`Transcoder::rungs`].
    pub rung: usize,
    /// Decode time in ms on the source's timeline.
    pub dts_ms: u32,
    /// PTS - DTS in ms. The rungs have no B-frames, but they keep the source's DTS, so this
    /// is the source's reorder delay.
    pub cts_ms: i32,
    /// An IDR access unit; there is one exactly at every source keyframe's PTS.
    pub keyframe: bool,
    /// Length-prefixed (4-byte) NAL units, as in FLV. Parameter sets are in the rung's
    /// [`RungStart::avc_record`], not in band.
    pub avcc: Bytes,
}

impl RungFrame {
    /// PTS in ms on the source's timeline.
    pub fn pts_ms(&self) -> u64 {
        u64::from(self.dts_ms) + u64::from(self.cts_ms.max(0).unsigned_abs())
    }

    /// The access unit as Annex B (AUD first, SPS and PPS before every IDR), for MPEG-TS or a
    /// raw `.h264` file. `config` is the rung's parsed [`RungStart::avc_record`].
    pub fn annex_b(&self, config: &AvcConfig) -> Result<Vec<u8>, AvcError> {
        let mut out = Vec::with_capacity(self.avcc.len() + 64);
        avc::avcc_to_annexb(
            &self.avcc,
            config.nal_length_size,
            &mut out,
            Some(config),
            self.keyframe,
        )?;
        Ok(out)
    }
}

/// What comes out of a running ladder, in the order the rungs produce it (rungs interleave).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A rung's parameters, before its first frame.
    Start(RungStart),
    /// An encoded access unit.
    Frame(RungFrame),
    /// The ladder could not keep up and stopped transcoding this rung (for good): remove the
    /// variant from the master playlist.
    RungDropped {
        rung: usize,
        name: String,
        reason: String,
    },
    /// The ladder stopped on an error (e.g. the decoder refused the input); no more frames
    /// follow. The passthrough is not affected.
    Failed(LiveError),
}

/// Why [`Transcoder::push`] did not queue an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Nothing is decodable before the stream's first keyframe.
    BeforeFirstKeyframe,
    /// The input queue is full: the ladder is behind real time.
    QueueFull,
    /// An earlier access unit was dropped; the decoder restarts at the next keyframe.
    WaitingForKeyframe,
    /// The access unit has no coded picture (e.g. SEI only).
    NoPicture,
    /// Every rung has been dropped.
    NoRungLeft,
}

/// What [`Transcoder::push`] did with an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Dropped(DropReason),
}

/// Counters of a ladder (for logs and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Access units handed to `push`.
    pub frames_in: u64,
    /// Access units queued for decoding.
    pub frames_queued: u64,
    /// Access units not queued, for any [`DropReason`].
    pub frames_dropped: u64,
    /// Access units dropped because the input queue was full (the ladder was behind).
    pub frames_dropped_behind: u64,
    /// Rungs dropped because the ladder could not keep up.
    pub rungs_dropped: u64,
    /// Frames each rung delivered, by rung index.
    pub frames_out: Vec<u64>,
}

struct Rung {
    planned: PlannedRung,
    /// Source keyframe PTS (ns) this rung's encoder has yet to see, in push order (which is
    /// PTS order: no frame before an IDR in decode order is presented after it).
    keyframes: Mutex<VecDeque<u64>>,
    /// Source DTS (ns) of the frames queued for this rung, in decode order. The n-th frame
    /// out (in presentation order, no B-frames) takes the n-th DTS in: the rung then has the
    /// source's DTS and PTS timelines exactly, so a segmenter rebasing on the first DTS puts
    /// every variant on the same clock.
    dts: Mutex<VecDeque<u64>>,
    /// PTS (ns) of the rung's newest output frame; `u64::MAX` before the first input.
    last_out_ns: AtomicU64,
    frames_out: AtomicU64,
    dropped: AtomicBool,
    eos: AtomicBool,
}

/// State shared by the caller's thread, the streaming threads and the control thread.
struct Shared {
    stream: String,
    rungs: Vec<Rung>,
    tx: mpsc::Sender<Output>,
    /// Events raised on the caller's thread, delivered by the control thread.
    pending: Mutex<VecDeque<Output>>,
    failure: Mutex<Option<LiveError>>,
    /// Signalled on a rung's EOS, a dropped rung and a failure.
    changed: Condvar,
    changed_lock: Mutex<()>,
    /// Give up delivering (shutdown after a timeout, or the transcoder was dropped).
    abort: AtomicBool,
    /// Ask the control thread to exit.
    stop: AtomicBool,
    frames_in: AtomicU64,
    frames_queued: AtomicU64,
    frames_dropped: AtomicU64,
    frames_dropped_behind: AtomicU64,
    rungs_dropped: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the ladder down with a poisoned lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Sends on the bounded channel, waiting while it is full (the consumer is slow, which
    /// holds the ladder back like a slow encoder would). Returns false when the receiver is
    /// gone or the transcoder is shutting down without waiting.
    fn deliver(&self, mut out: Output) -> bool {
        loop {
            match self.tx.try_send(out) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if self.abort.load(Ordering::Relaxed) {
                        return false;
                    }
                    out = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    fn flush_pending(&self) {
        loop {
            let Some(ev) = lock(&self.pending).pop_front() else {
                return;
            };
            if !self.deliver(ev) {
                return;
            }
        }
    }

    fn failure(&self) -> Option<LiveError> {
        lock(&self.failure).clone()
    }

    fn notify(&self) {
        let _guard = lock(&self.changed_lock);
        self.changed.notify_all();
    }

    fn fail(&self, err: LiveError) {
        {
            let mut f = lock(&self.failure);
            if f.is_some() {
                return;
            }
            *f = Some(err.clone());
        }
        error!(stream = %self.stream, error = %err, "Live ABR ladder stopped.");
        lock(&self.pending).push_back(Output::Failed(err));
        self.notify();
    }

    /// All rungs still running have delivered their EOS.
    fn drained(&self) -> bool {
        self.rungs
            .iter()
            .all(|r| r.dropped.load(Ordering::SeqCst) || r.eos.load(Ordering::SeqCst))
    }

    fn stats(&self) -> Stats {
        Stats {
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_queued: self.frames_queued.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
            frames_dropped_behind: self.frames_dropped_behind.load(Ordering::Relaxed),
            rungs_dropped: self.rungs_dropped.load(Ordering::Relaxed),
            frames_out: self
                .rungs
                .iter()
                .map(|r| r.frames_out.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Pops every pending source keyframe at or before `pts_ns`; true when the frame at `pts_ns`
/// must be an IDR. A keyframe whose own frame never reached the encoder (the decoder dropped
/// it) makes the next frame the IDR, so the rung stays decodable from there.
fn take_keyframe(pending: &mut VecDeque<u64>, pts_ns: u64) -> bool {
    let mut force = false;
    while pending.front().is_some_and(|&k| k <= pts_ns) {
        pending.pop_front();
        force = true;
    }
    force
}

/// A running live ladder for one stream. Dropping it stops the pipeline without draining.
pub struct Transcoder {
    shared: Arc<Shared>,
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    valves: Vec<gst::Element>,
    control: Option<JoinHandle<()>>,
    nal_length_size: u8,
    backpressure: Backpressure,
    input_queue_frames: u64,
    max_lag_ns: u64,
    drain_timeout: Duration,
    /// True until the next keyframe is queued (start, and after a drop).
    waiting_for_keyframe: bool,
    /// No further rung is dropped before the input reaches this PTS (ns): the ladder gets time
    /// to catch up after a drop.
    hold_until_ns: u64,
    started: bool,
}

fn make(factory: &str) -> Result<gst::Element, LiveError> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        LiveError::Gstreamer(format!("the GStreamer element {factory} is not available"))
    })
}

fn gst_err(err: impl std::fmt::Display) -> LiveError {
    LiveError::Gstreamer(err.to_string())
}

impl Transcoder {
    /// Starts the ladder of `stream` (a name for logs) from the publisher's
    /// AVCDecoderConfigurationRecord (the payload of the FLV AVC sequence header). Rungs wider
    /// than the source are left out; when none is left this is [`LiveError::NoRungFits`].
    ///
    /// The receiver must be read until it closes (after [`Transcoder::finish`] or drop): a
    /// full channel holds the ladder back, and a ladder held back loses rungs.
    pub fn start(
        stream: &str,
        config: &LiveAbrConfig,
        avc_record: &[u8],
    ) -> Result<(Transcoder, mpsc::Receiver<Output>), LiveError> {
        config.validate()?;
        let avc = AvcConfig::parse(avc_record).map_err(LiveError::BadCodecConfig)?;
        let sps = avc.sps_info().map_err(LiveError::BadCodecConfig)?;
        let planned = plan(&config.rungs, sps.width, sps.height);
        if planned.is_empty() {
            return Err(LiveError::NoRungFits {
                width: sps.width,
                height: sps.height,
            });
        }
        gst::init().map_err(gst_err)?;

        let (tx, rx) = mpsc::channel(config.output_capacity);
        let shared = Arc::new(Shared {
            stream: stream.to_owned(),
            rungs: planned
                .into_iter()
                .map(|planned| Rung {
                    planned,
                    keyframes: Mutex::new(VecDeque::new()),
                    dts: Mutex::new(VecDeque::new()),
                    last_out_ns: AtomicU64::new(u64::MAX),
                    frames_out: AtomicU64::new(0),
                    dropped: AtomicBool::new(false),
                    eos: AtomicBool::new(false),
                })
                .collect(),
            tx,
            pending: Mutex::new(VecDeque::new()),
            failure: Mutex::new(None),
            changed: Condvar::new(),
            changed_lock: Mutex::new(()),
            abort: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            frames_in: AtomicU64::new(0),
            frames_queued: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            frames_dropped_behind: AtomicU64::new(0),
            rungs_dropped: AtomicU64::new(0),
        });

        let (pipeline, appsrc, valves) = build(&shared, config, avc_record, &sps)?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| gst_err("the pipeline has no bus"))?;
        let control = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("live-abr-{stream}"))
                .spawn(move || control_loop(&shared, &bus))
                .map_err(gst_err)?
        };
        let mut transcoder = Transcoder {
            shared,
            pipeline,
            appsrc,
            valves,
            control: Some(control),
            nal_length_size: avc.nal_length_size,
            backpressure: config.backpressure,
            input_queue_frames: u64::from(config.input_queue_frames),
            max_lag_ns: config.max_lag_ms.saturating_mul(NS_PER_MS),
            drain_timeout: Duration::from_millis(config.drain_timeout_ms),
            waiting_for_keyframe: true,
            hold_until_ns: 0,
            started: false,
        };
        if let Err(err) = transcoder.pipeline.set_state(gst::State::Playing) {
            transcoder.shutdown(true);
            return Err(transcoder
                .shared
                .failure()
                .unwrap_or_else(|| LiveError::Pipeline(format!("it does not start: {err}"))));
        }
        info!(
            stream,
            rungs = ?transcoder.rungs().iter().map(|r| format!("{}={}x{}", r.name, r.width, r.height)).collect::<Vec<_>>(),
            "Live ABR ladder started."
        );
        Ok((transcoder, rx))
    }

    /// The planned rungs, narrowest first; [`RungFrame::rung`] indexes this.
    pub fn rungs(&self) -> Vec<PlannedRung> {
        self.shared
            .rungs
            .iter()
            .map(|r| r.planned.clone())
            .collect()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Queues one access unit: `avcc` holds length-prefixed NAL units (as in the FLV tag, with
    /// the record's NAL length size), `dts_ms` is the RTMP timestamp and `cts_ms` the
    /// composition offset (PTS = DTS + CTS), exactly the arguments of
    /// `media::hls::LiveSegmenter::push_video_frame`. `keyframe` is the FLV frame type; an
    /// access unit with an IDR slice counts as a keyframe either way.
    ///
    /// Never blocks with [`Backpressure::Drop`] (the default). Errors: a malformed access unit
    /// (nothing queued, counted as dropped; the ladder carries on from the next keyframe) or the ladder has stopped (the error it stopped
    /// on; the caller drops the ladder and keeps the passthrough).
    pub fn push(
        &mut self,
        dts_ms: u32,
        cts_ms: i32,
        keyframe: bool,
        avcc: &[u8],
    ) -> Result<Pushed, LiveError> {
        if let Some(err) = self.shared.failure() {
            return Err(err);
        }
        self.shared.frames_in.fetch_add(1, Ordering::Relaxed);
        let mut has_idr = false;
        let mut has_slice = false;
        for nal in avc::nal_units(avcc, self.nal_length_size) {
            let nal = match nal {
                Ok(nal) => nal,
                Err(source) => {
                    // Frames after it may reference it: the decoder restarts at a keyframe.
                    self.waiting_for_keyframe = true;
                    self.shared.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(LiveError::BadAccessUnit { dts_ms, source });
                }
            };
            let t = nal.first().map_or(0, |h| h & 0x1f);
            has_idr |= t == nal_type::IDR_SLICE;
            has_slice |= (nal_type::NON_IDR_SLICE..=nal_type::IDR_SLICE).contains(&t);
        }
        if !has_slice {
            return Ok(self.dropped(DropReason::NoPicture));
        }
        let keyframe = keyframe || has_idr;
        let dts_ns = u64::from(dts_ms) * NS_PER_MS;
        let pts_ns = dts_ns + u64::from(cts_ms.max(0).unsigned_abs()) * NS_PER_MS;

        if self.waiting_for_keyframe && !keyframe {
            let reason = if self.started {
                DropReason::WaitingForKeyframe
            } else {
                DropReason::BeforeFirstKeyframe
            };
            return Ok(self.dropped(reason));
        }
        if self
            .shared
            .rungs
            .iter()
            .all(|r| r.dropped.load(Ordering::SeqCst))
        {
            return Ok(self.dropped(DropReason::NoRungLeft));
        }
        if !self.started {
            for r in &self.shared.rungs {
                r.last_out_ns.store(pts_ns, Ordering::SeqCst);
            }
            self.started = true;
        }
        if self.backpressure == Backpressure::Drop {
            let queued = self.appsrc.current_level_buffers();
            if queued >= self.input_queue_frames {
                self.waiting_for_keyframe = true;
                self.shared
                    .frames_dropped_behind
                    .fetch_add(1, Ordering::Relaxed);
                self.behind(
                    pts_ns,
                    format!(
                        "the input queue is full ({queued} access units): the ladder is behind \
                         real time"
                    ),
                );
                return Ok(self.dropped(DropReason::QueueFull));
            }
            self.check_lag(pts_ns);
        }
        self.waiting_for_keyframe = false;
        for r in &self.shared.rungs {
            if r.dropped.load(Ordering::SeqCst) {
                continue;
            }
            lock(&r.dts).push_back(dts_ns);
            if keyframe {
                lock(&r.keyframes).push_back(pts_ns);
            }
        }
        let mut buffer = gst::Buffer::from_slice(avcc.to_vec());
        {
            let b = buffer
                .get_mut()
                .ok_or_else(|| gst_err("a fresh buffer is not writable"))?;
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            b.set_dts(gst::ClockTime::from_nseconds(dts_ns));
            if !keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        if let Err(flow) = self.appsrc.push_buffer(buffer) {
            return Err(self
                .shared
                .failure()
                .unwrap_or_else(|| LiveError::Pipeline(format!("it refused input: {flow:?}"))));
        }
        self.shared.frames_queued.fetch_add(1, Ordering::Relaxed);
        Ok(Pushed::Queued)
    }

    fn dropped(&self, reason: DropReason) -> Pushed {
        self.shared.frames_dropped.fetch_add(1, Ordering::Relaxed);
        Pushed::Dropped(reason)
    }

    /// Drops the highest rung when any running rung's newest output lags the newest input by
    /// more than the limit.
    fn check_lag(&mut self, input_ns: u64) {
        let worst = self
            .shared
            .rungs
            .iter()
            .filter(|r| !r.dropped.load(Ordering::SeqCst))
            .map(|r| {
                (
                    r,
                    input_ns.saturating_sub(r.last_out_ns.load(Ordering::SeqCst)),
                )
            })
            .max_by_key(|&(_, lag)| lag);
        if let Some((rung, lag)) = worst
            && lag > self.max_lag_ns
        {
            let reason = format!(
                "rung {} is {} ms behind the input (limit {} ms): the encoders cannot keep up \
                 with real time",
                rung.planned.name,
                lag / NS_PER_MS,
                self.max_lag_ns / NS_PER_MS
            );
            self.behind(input_ns, reason);
        }
    }

    /// The ladder cannot keep up: stop feeding the highest rung still running, unless a rung
    /// was dropped so recently that the others are still catching up.
    fn behind(&mut self, input_ns: u64, reason: String) {
        if input_ns < self.hold_until_ns {
            return;
        }
        let Some(index) = (0..self.shared.rungs.len())
            .rev()
            .find(|&i| !self.shared.rungs[i].dropped.load(Ordering::SeqCst))
        else {
            return;
        };
        let rung = &self.shared.rungs[index];
        rung.dropped.store(true, Ordering::SeqCst);
        self.valves[index].set_property("drop", true);
        lock(&rung.dts).clear();
        self.shared.rungs_dropped.fetch_add(1, Ordering::Relaxed);
        // The remaining rungs may still have a backlog (the input queue); give them twice the
        // lag limit of media time before judging again.
        self.hold_until_ns = input_ns.saturating_add(self.max_lag_ns.saturating_mul(2));
        warn!(
            stream = %self.shared.stream,
            rung = %rung.planned.name,
            %reason,
            "Live ABR rung dropped: the machine cannot keep up."
        );
        lock(&self.shared.pending).push_back(Output::RungDropped {
            rung: index,
            name: rung.planned.name.clone(),
            reason,
        });
        self.shared.notify();
        self.wake_control();
    }

    fn wake_control(&self) {
        if let Some(bus) = self.pipeline.bus() {
            let s = gst::Structure::new_empty("live-abr-wake");
            let _ = bus.post(gst::message::Application::new(s));
        }
    }

    /// Ends the stream: lets every running rung encode what is queued, delivers the last
    /// frames and stops the pipeline. The output channel closes when the transcoder is gone.
    pub fn finish(mut self) -> Result<Stats, LiveError> {
        let _ = self.appsrc.end_of_stream();
        let deadline = Instant::now() + self.drain_timeout;
        let mut timed_out = false;
        {
            let mut guard = lock(&self.shared.changed_lock);
            while !self.shared.drained() && self.shared.failure().is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    break;
                }
                guard = self
                    .shared
                    .changed
                    .wait_timeout(guard, left.min(CONTROL_TICK))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        self.shutdown(timed_out);
        if let Some(err) = self.shared.failure() {
            return Err(err);
        }
        if timed_out {
            return Err(LiveError::DrainTimeout(self.drain_timeout));
        }
        let stats = self.shared.stats();
        info!(stream = %self.shared.stream, ?stats, "Live ABR ladder finished.");
        Ok(stats)
    }

    /// Stops the control thread (after it delivered pending events, unless `abort`) and the
    /// pipeline. Idempotent.
    fn shutdown(&mut self, abort: bool) {
        if abort {
            self.shared.abort.store(true, Ordering::SeqCst);
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake_control();
        if let Some(control) = self.control.take() {
            // The last events wait for room in the channel, but not forever: a consumer that
            // stopped reading must not hang the caller.
            let deadline = Instant::now() + self.drain_timeout;
            while !control.is_finished() {
                if Instant::now() >= deadline {
                    self.shared.abort.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = control.join();
        }
        // Streaming threads waiting on a full channel must not hold up the state change.
        self.shared.abort.store(true, Ordering::SeqCst);
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        self.shutdown(true);
    }
}

/// Watches the bus (errors stop the ladder) and delivers events raised by `push`.
fn control_loop(shared: &Shared, bus: &gst::Bus) {
    loop {
        let msg = bus.timed_pop(gst::ClockTime::from_nseconds(CONTROL_TICK.as_nanos() as u64));
        if let Some(msg) = msg {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let element = e
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_else(|| "the pipeline".into());
                    shared.fail(LiveError::Stopped {
                        element,
                        message: e.error().to_string(),
                        debug: e.debug().map(|d| d.to_string()).unwrap_or_default(),
                    });
                }
                gst::MessageView::Warning(w) => {
                    debug!(stream = %shared.stream, warning = %w.error(), "Live ABR pipeline warning.");
                }
                _ => {}
            }
        }
        shared.flush_pending();
        if shared.stop.load(Ordering::SeqCst) {
            shared.flush_pending();
            return;
        }
    }
}

type Built = (gst::Pipeline, gst_app::AppSrc, Vec<gst::Element>);

fn build(
    shared: &Arc<Shared>,
    config: &LiveAbrConfig,
    avc_record: &[u8],
    sps: &avc::SpsInfo,
) -> Result<Built, LiveError> {
    let pipeline = gst::Pipeline::with_name(&format!("live-abr-{}", shared.stream));
    let caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(avc_record.to_vec()))
        .field("width", i32::try_from(sps.width).unwrap_or(i32::MAX))
        .field("height", i32::try_from(sps.height).unwrap_or(i32::MAX))
        .build();
    let block = config.backpressure == Backpressure::Block;
    let appsrc = gst_app::AppSrc::builder()
        .caps(&caps)
        .is_live(true)
        .do_timestamp(false)
        .format(gst::Format::Time)
        .max_buffers(u64::from(config.input_queue_frames))
        .max_bytes(0)
        .block(block)
        .build();
    let parse = make("h264parse")?;
    let decode = make("avdec_h264")?;
    // Garbage in the stream stops the ladder (the passthrough carries on) instead of
    // producing garbage forever.
    decode.set_property("max-errors", DECODER_MAX_ERRORS);
    let convert = make("videoconvert")?;
    let raw = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        )
        .build()
        .map_err(gst_err)?;
    let tee = make("tee")?;
    let head = [appsrc.upcast_ref(), &parse, &decode, &convert, &raw, &tee];
    pipeline.add_many(head).map_err(gst_err)?;
    gst::Element::link_many(head).map_err(gst_err)?;

    let mut valves = Vec::new();
    for (index, rung) in shared.rungs.iter().enumerate() {
        let r = &rung.planned;
        let valve = make("valve")?;
        let queue = gst::ElementFactory::make("queue")
            .property("max-size-buffers", config.rung_queue_frames)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", 0u64)
            .build()
            .map_err(gst_err)?;
        let scale = make("videoscale")?;
        scale.set_property("add-borders", false);
        let size = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("width", i32::try_from(r.width).unwrap_or(i32::MAX))
                    .field("height", i32::try_from(r.height).unwrap_or(i32::MAX))
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .build(),
            )
            .build()
            .map_err(gst_err)?;
        let enc = make("x264enc")?;
        enc.set_property_from_str("speed-preset", r.preset.as_str());
        enc.set_property_from_str("tune", "zerolatency");
        enc.set_property("bitrate", r.video_kbps);
        enc.set_property("bframes", 0u32);
        enc.set_property("key-int-max", KEY_INT_MAX);
        // Only the forced IDRs: no scene-cut keyframes (some presets enable them).
        enc.set_property("option-string", "scenecut=0");
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "avc")
                    .field("alignment", "au")
                    .build(),
            )
            .sync(false)
            .max_buffers(1)
            .build();
        sink.set_callbacks(rung_callbacks(shared.clone(), index));
        let enc_sink = enc
            .static_pad("sink")
            .ok_or_else(|| gst_err("x264enc has no sink pad"))?;
        let probe_shared = shared.clone();
        enc_sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buffer.pts() else {
                return gst::PadProbeReturn::Ok;
            };
            let rung = &probe_shared.rungs[index];
            if take_keyframe(&mut lock(&rung.keyframes), pts.nseconds()) {
                // Serialized, so the encoder sees it right before this frame, and applies it
                // to the next frame it gets: this one.
                let event = gst_video::DownstreamForceKeyUnitEvent::builder()
                    .timestamp(pts)
                    .all_headers(true)
                    .build();
                if !pad.send_event(event) {
                    warn!(stream = %probe_shared.stream, rung = %rung.planned.name, "The encoder refused a key unit request.");
                }
            }
            gst::PadProbeReturn::Ok
        });
        let chain = [&valve, &queue, &scale, &size, &enc, sink.upcast_ref()];
        pipeline.add_many(chain).map_err(gst_err)?;
        gst::Element::link_many(chain).map_err(gst_err)?;
        tee.link(&valve).map_err(gst_err)?;
        valves.push(valve);
    }
    Ok((pipeline, appsrc, valves))
}

fn rung_callbacks(shared: Arc<Shared>, index: usize) -> gst_app::AppSinkCallbacks {
    let eos_shared = shared.clone();
    let mut last_caps: Option<gst::Caps> = None;
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let rung = &shared.rungs[index];
            if rung.dropped.load(Ordering::SeqCst) {
                return Ok(gst::FlowSuccess::Ok);
            }
            if let Some(caps) = sample.caps()
                && last_caps.as_ref().is_none_or(|c| c.as_ref() != caps)
            {
                let start = rung_start(index, rung, caps).ok_or_else(|| {
                    shared.fail(LiveError::Pipeline(format!(
                        "rung {}: the encoder's caps carry no usable codec_data: {caps}",
                        rung.planned.name
                    )));
                    gst::FlowError::NotNegotiated
                })?;
                last_caps = Some(caps.to_owned());
                if !shared.deliver(Output::Start(start)) {
                    return Ok(gst::FlowSuccess::Ok);
                }
            }
            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
            // x264enc shifts its output timestamps (and its segment) by 1000 hours to leave
            // room for negative DTS; running time is the source's timeline again, since the
            // input segment starts at 0.
            let segment = sample
                .segment()
                .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                .ok_or(gst::FlowError::Error)?;
            let pts = buffer
                .pts()
                .and_then(|t| segment.to_running_time(t))
                .ok_or(gst::FlowError::Error)?
                .nseconds();
            // Never above the PTS: true for any valid source, kept for a broken one.
            let dts = lock(&rung.dts).pop_front().unwrap_or(pts).min(pts);
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let avcc = Bytes::copy_from_slice(
                buffer
                    .map_readable()
                    .map_err(|_| gst::FlowError::Error)?
                    .as_slice(),
            );
            rung.last_out_ns.store(pts, Ordering::SeqCst);
            rung.frames_out.fetch_add(1, Ordering::Relaxed);
            let frame = RungFrame {
                rung: index,
                dts_ms: u32::try_from(dts / NS_PER_MS).unwrap_or(u32::MAX),
                cts_ms: i32::try_from((pts - dts) / NS_PER_MS).unwrap_or(i32::MAX),
                keyframe,
                avcc,
            };
            shared.deliver(Output::Frame(frame));
            Ok(gst::FlowSuccess::Ok)
        })
        .eos(move |_| {
            eos_shared.rungs[index].eos.store(true, Ordering::SeqCst);
            eos_shared.notify();
        })
        .build()
}

fn rung_start(index: usize, rung: &Rung, caps: &gst::CapsRef) -> Option<RungStart> {
    let s = caps.structure(0)?;
    let codec_data = s.get::<gst::Buffer>("codec_data").ok()?;
    let record = Bytes::copy_from_slice(codec_data.map_readable().ok()?.as_slice());
    Some(RungStart {
        rung: index,
        name: rung.planned.name.clone(),
        width: s.get::<i32>("width").ok()?.try_into().ok()?,
        height: s.get::<i32>("height").ok()?.try_into().ok()?,
        video_kbps: rung.planned.video_kbps,
        avc_record: record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_is_forced_exactly_at_its_pts() {
        let mut pending: VecDeque<u64> = [1000, 3000].into();
        assert!(!take_keyframe(&mut pending, 999));
        assert!(take_keyframe(&mut pending, 1000));
        assert!(!take_keyframe(&mut pending, 2000));
        assert_eq!(pending, [3000]);
    }

    #[test]
    fn a_missed_keyframe_forces_the_next_frame_once() {
        let mut pending: VecDeque<u64> = [1000, 1500, 3000].into();
        assert!(take_keyframe(&mut pending, 2000));
        assert_eq!(pending, [3000]);
        assert!(!take_keyframe(&mut pending, 2100));
    }

    #[test]
    fn frame_pts_adds_a_positive_composition_offset_only() {
        let f = |cts_ms| RungFrame {
            rung: 0,
            dts_ms: 1000,
            cts_ms,
            keyframe: false,
            avcc: Bytes::new(),
        };
        assert_eq!(f(0).pts_ms(), 1000);
        assert_eq!(f(66).pts_ms(), 1066);
        assert_eq!(f(-5).pts_ms(), 1000);
    }
}
