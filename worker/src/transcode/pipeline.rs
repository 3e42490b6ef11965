//! The transcoding pipeline. One decode feeds every rung:
//!
//! ```text
//! filesrc ! decodebin ─video─ queue ! videoconvert ! videorate ! I420@fps,bt709 ! tee ─┬─ queue ! videoscale ! WxH ! x264enc ! appsink   (per rung)
//!                                                                                      └─ queue ! videoscale ! equirect WxH ! spherecastproject ! x264enc ! appsink  (per cubemap rung)
//!                     └audio─ queue ! audioconvert ! audioresample ! audiorate ! 48 kHz stereo ! tee ─┬─ queue ! avenc_aac ! appsink   (per distinct bitrate)
//! ```
//!
//! Every x264enc gets the same frames with an IDR every `keyframe_interval_frames` and no
//! scene-cut key frames, so all renditions have IDRs at the same instants. The appsinks hand
//! encoded frames over a bounded channel to one packaging thread, which runs a
//! [`VodPackager`] per rendition and writes segments to disk as they complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use media::hls::OUTPUT_START_90K;
use media::vod::{AudioFrame, RenditionFacts, VideoFrame, VodConfig, VodPackager, VodSegment};

use super::TranscodeError;
use crate::ladder::PlannedRung;

/// Everything the pipeline needs to know, decided by the job beforehand. Cubemap rungs of a
/// 360 source are rungs like the others, with `cubemap` set: their branch scales the
/// equirect picture to the detail the rung carries and projects it (`spherecastproject`).
#[derive(Debug, Clone)]
pub struct TranscodePlan {
    pub input: PathBuf,
    /// Renditions are written to `out_dir/<name>/`.
    pub out_dir: PathBuf,
    /// Video rungs, tallest first; empty for a source without video.
    pub rungs: Vec<PlannedRung>,
    /// Output frame rate.
    pub fps: (u32, u32),
    pub keyframe_interval_frames: u32,
    pub segment_duration: Duration,
    /// The source has an audio stream to encode.
    pub audio: bool,
    /// Bitrate of the audio-only rendition; 0 for none.
    pub audio_only_kbps: u32,
    /// Source duration, for progress.
    pub duration: Option<Duration>,
    pub progress_interval: Duration,
    /// Threads each cubemap branch's projection may use.
    pub projection_threads: u32,
}

/// A progress report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Media time processed.
    pub position: Duration,
    pub duration: Option<Duration>,
    /// Wall time since the pipeline started.
    pub elapsed: Duration,
}

impl Progress {
    /// Media seconds per wall second.
    pub fn speed(&self) -> f64 {
        self.position.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// 0..=100, when the duration is known.
    pub fn percent(&self) -> Option<f64> {
        let total = self.duration?.as_secs_f64();
        (total > 0.0).then(|| (self.position.as_secs_f64() / total * 100.0).min(100.0))
    }

    /// Estimated wall time left.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.duration?.saturating_sub(self.position).as_secs_f64();
        let speed = self.speed();
        (speed > 0.0).then(|| Duration::from_secs_f64(left / speed))
    }
}

/// One finished rendition on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionOutput {
    /// Folder name under the output folder (the rung name, or `audio`).
    pub name: String,
    pub facts: RenditionFacts,
    /// Output frame rate, for video renditions.
    pub frame_rate: Option<f64>,
    /// Segment files relative to the output folder, in order.
    pub segments: Vec<String>,
    /// `NAME/index.m3u8`.
    pub playlist: String,
    /// `NAME/iframes.m3u8`, for video renditions.
    pub iframe_playlist: Option<String>,
    /// The cubemap layout of a cubemap rendition; `None` for flat (and equirect) video and
    /// audio.
    pub cubemap: Option<crate::immersive::CubemapLayout>,
}

/// What flows from the appsinks to the packaging thread.
enum Packet {
    Video(usize, VideoFrame),
    AudioConfig(usize, Vec<u8>),
    Audio(usize, AudioFrame),
    VideoEnded(usize),
    AudioEnded(usize),
    Finish,
}

struct RenditionSetup {
    name: String,
    dir: PathBuf,
    packager: VodPackager,
    frame_rate: Option<f64>,
    segments: Vec<String>,
    cubemap: Option<crate::immersive::CubemapLayout>,
}

const AUDIO_RENDITION: &str = "audio";
/// One colour matrix through the whole video chain. Untagged caps default by frame size (BT.601
/// below 720 lines, BT.709 above), so without this GStreamer would convert every SD rung's
/// colours from an HD source; x264 tags the streams with it.
const COLORIMETRY: &str = "bt709";
const PACKET_QUEUE: usize = 256;
const POLL: Duration = Duration::from_millis(200);

/// Runs the plan to completion. Blocking: call it from a blocking thread. `cancel` is checked
/// every 200 ms; `on_progress` is called every `progress_interval`.
pub fn transcode(
    plan: &TranscodePlan,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Vec<RenditionOutput>, TranscodeError> {
    super::init()?;
    let fps = plan.fps.0 as f64 / plan.fps.1.max(1) as f64;
    let target_90k = (plan.segment_duration.as_nanos() * 9 / 100_000) as u64;

    // Renditions: one per rung, then audio-only. Audio encoders: one per distinct bitrate.
    let mut renditions = Vec::new();
    let mut audio_bitrates: Vec<u32> = Vec::new();
    let mut audio_routes: Vec<Vec<usize>> = Vec::new();
    let mut route_audio = |kbps: u32, rendition: usize| {
        let i = audio_bitrates
            .iter()
            .position(|&b| b == kbps)
            .unwrap_or_else(|| {
                audio_bitrates.push(kbps);
                audio_routes.push(Vec::new());
                audio_bitrates.len() - 1
            });
        audio_routes[i].push(rendition);
    };
    for rung in &plan.rungs {
        if plan.audio {
            route_audio(rung.audio_kbps, renditions.len());
        }
        let mut rendition = setup(
            &plan.out_dir,
            &rung.name,
            target_90k,
            true,
            plan.audio,
            Some(fps),
        )?;
        rendition.cubemap = rung.cubemap.as_ref().map(|c| c.layout);
        renditions.push(rendition);
    }
    if plan.audio && plan.audio_only_kbps > 0 {
        route_audio(plan.audio_only_kbps, renditions.len());
        renditions.push(setup(
            &plan.out_dir,
            AUDIO_RENDITION,
            target_90k,
            false,
            true,
            None,
        )?);
    }
    if renditions.is_empty() {
        return Err(TranscodeError::Pipeline(
            "nothing to produce: no video rungs and no audio".to_owned(),
        ));
    }

    let (tx, rx) = sync_channel::<Packet>(PACKET_QUEUE);
    let pipeline = gst::Pipeline::new();
    let built = build(&pipeline, plan, &audio_bitrates, &tx);
    if let Err(err) = built {
        let _ = pipeline.set_state(gst::State::Null);
        return Err(err);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let packaging = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("vod-packager".into())
            .spawn(move || package(rx, renditions, audio_routes, &stop))
            .map_err(|err| TranscodeError::Pipeline(format!("cannot start a thread: {err}")))?
    };

    let outcome = run_bus(&pipeline, plan, cancel, &packaging, on_progress);
    let _ = pipeline.set_state(gst::State::Null);
    match outcome {
        Ok(()) => {
            let _ = tx.send(Packet::Finish);
            drop(tx);
            drop(pipeline);
            packaging
                .join()
                .map_err(|_| TranscodeError::Pipeline("the packaging thread panicked".into()))?
        }
        Err(err) => {
            stop.store(true, Ordering::Relaxed);
            drop(tx);
            drop(pipeline);
            // A packaging failure (disk full) makes the appsinks fail, which the bus reports
            // as a generic flow error: the packager's own error says more.
            match packaging.join() {
                Ok(Err(packaging_err)) if !matches!(err, TranscodeError::Cancelled) => {
                    Err(packaging_err)
                }
                _ => Err(err),
            }
        }
    }
}

fn setup(
    out_dir: &Path,
    name: &str,
    target_90k: u64,
    has_video: bool,
    has_audio: bool,
    frame_rate: Option<f64>,
) -> Result<RenditionSetup, TranscodeError> {
    let dir = out_dir.join(name);
    std::fs::create_dir_all(&dir).map_err(|err| TranscodeError::Io {
        path: dir.clone(),
        message: err.to_string(),
    })?;
    Ok(RenditionSetup {
        name: name.to_owned(),
        dir,
        packager: VodPackager::new(VodConfig {
            target_duration_90k: target_90k,
            has_video,
            has_audio,
        }),
        frame_rate,
        segments: Vec::new(),
        cubemap: None,
    })
}

fn make(factory: &str) -> Result<gst::Element, TranscodeError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|err| TranscodeError::Pipeline(format!("cannot create {factory}: {err}")))
}

fn link_err(err: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Pipeline(format!("cannot link the pipeline: {err}"))
}

/// A queue bounded by buffer count only (raw 1080p frames are 3 MB: a byte limit would leave
/// a branch almost no slack). A few raw frames are enough to keep the branches busy: deeper
/// queues only cost memory (16 + 8 per rung measured 48 MB more at 1080p, no faster).
fn queue(buffers: u32) -> Result<gst::Element, TranscodeError> {
    let q = make("queue")?;
    q.set_property("max-size-buffers", buffers);
    q.set_property("max-size-bytes", 0u32);
    q.set_property("max-size-time", 0u64);
    Ok(q)
}

fn build(
    pipeline: &gst::Pipeline,
    plan: &TranscodePlan,
    audio_bitrates: &[u32],
    tx: &SyncSender<Packet>,
) -> Result<(), TranscodeError> {
    let src = make("filesrc")?;
    src.set_property("location", plan.input.to_string_lossy().as_ref());
    let decode = make("decodebin")?;
    pipeline.add_many([&src, &decode]).map_err(link_err)?;
    src.link(&decode).map_err(link_err)?;

    let video_entry = if plan.rungs.is_empty() {
        None
    } else {
        Some(build_video(pipeline, plan, tx)?)
    };
    let audio_entry = if plan.audio && !audio_bitrates.is_empty() {
        Some(build_audio(pipeline, audio_bitrates, tx)?)
    } else {
        None
    };

    // Decoded streams appear as pads: the first video and the first audio go to their
    // branches, anything else to a fakesink.
    let entries = Arc::new(Mutex::new((video_entry, audio_entry)));
    let weak = pipeline.downgrade();
    let for_pads = entries.clone();
    decode.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let kind = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let target = {
            let mut entries = for_pads.lock().expect("pad table lock");
            if kind.starts_with("video/") {
                entries.0.take()
            } else if kind.starts_with("audio/") {
                entries.1.take()
            } else {
                None
            }
        };
        let linked = match target {
            Some(sink) => pad.link(&sink).is_ok(),
            None => false,
        };
        if !linked {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            if let Ok(sink) = gst::ElementFactory::make("fakesink").build() {
                sink.set_property("sync", false);
                if pipeline.add(&sink).is_ok() {
                    let _ = sink.sync_state_with_parent();
                    if let Some(sink_pad) = sink.static_pad("sink") {
                        let _ = pad.link(&sink_pad);
                    }
                }
            }
        }
    });
    // A branch whose stream never shows up gets EOS, so the pipeline can still finish.
    decode.connect_no_more_pads(move |_| {
        let mut entries = entries.lock().expect("pad table lock");
        for pad in [entries.0.take(), entries.1.take()].into_iter().flatten() {
            pad.send_event(gst::event::Eos::new());
        }
    });
    Ok(())
}

fn build_video(
    pipeline: &gst::Pipeline,
    plan: &TranscodePlan,
    tx: &SyncSender<Packet>,
) -> Result<gst::Pad, TranscodeError> {
    let q = queue(4)?;
    let convert = make("videoconvert")?;
    let rate = make("videorate")?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("colorimetry", COLORIMETRY)
                .field(
                    "framerate",
                    gst::Fraction::new(plan.fps.0 as i32, plan.fps.1 as i32),
                )
                .build(),
        )
        .build()
        .map_err(link_err)?;
    let tee = make("tee")?;
    pipeline
        .add_many([&q, &convert, &rate, &caps, &tee])
        .map_err(link_err)?;
    gst::Element::link_many([&q, &convert, &rate, &caps, &tee]).map_err(link_err)?;

    for (index, rung) in plan.rungs.iter().enumerate() {
        let q = queue(3)?;
        let scale = make("videoscale")?;
        scale.set_property("add-borders", false);
        // Lanczos with a 3-lobe envelope: as sharp as ffmpeg's default scaler (SSIM 0.9986
        // against a Lanczos reference at 1080p to 360p, where the default 2-tap bilinear
        // aliases, 0.984); its cost is small next to x264's.
        scale.set_property_from_str("method", "lanczos");
        scale.set_property("envelope", 3.0f64);
        // A cubemap rung scales the equirect picture to the detail it carries, then projects.
        let scaled = match &rung.cubemap {
            Some(cubemap) => cubemap.equirect,
            None => (rung.width, rung.height),
        };
        let size = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("width", scaled.0 as i32)
                    .field("height", scaled.1 as i32)
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .field("colorimetry", COLORIMETRY)
                    .build(),
            )
            .build()
            .map_err(link_err)?;
        let project = match &rung.cubemap {
            Some(cubemap) => {
                super::project::register()
                    .map_err(|err| TranscodeError::Pipeline(err.to_string()))?;
                let project = make(super::project::ELEMENT)?;
                project.set_property("layout", cubemap.layout.layout().ffmpeg_name());
                project.set_property("width", rung.width);
                project.set_property("height", rung.height);
                project.set_property("threads", plan.projection_threads.max(1));
                Some(project)
            }
            None => None,
        };
        let enc = make("x264enc")?;
        enc.set_property("bitrate", rung.video_kbps);
        enc.set_property_from_str("speed-preset", &rung.preset);
        enc.set_property("key-int-max", plan.keyframe_interval_frames);
        // ABR with a VBV of `bitrate` and a 2 s buffer: segment peaks stay far below 200 %.
        enc.set_property("vbv-buf-capacity", 2000u32);
        enc.set_property("option-string", "scenecut=0");
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .field("profile", rung.profile.as_str())
                    .build(),
            )
            .sync(false)
            .build();
        sink.set_callbacks(video_callbacks(index, tx.clone()));
        let sink: gst::Element = sink.upcast();
        let chain: Vec<&gst::Element> = [&q, &scale, &size]
            .into_iter()
            .chain(project.as_ref())
            .chain([&enc, &sink])
            .collect();
        pipeline.add_many(chain.iter().copied()).map_err(link_err)?;
        gst::Element::link_many(std::iter::once(&tee).chain(chain.iter().copied()))
            .map_err(link_err)?;
    }
    q.static_pad("sink")
        .ok_or_else(|| TranscodeError::Pipeline("queue without a sink pad".into()))
}

fn build_audio(
    pipeline: &gst::Pipeline,
    bitrates: &[u32],
    tx: &SyncSender<Packet>,
) -> Result<gst::Pad, TranscodeError> {
    let q = queue(64)?;
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let rate = make("audiorate")?;
    rate.set_property("skip-to-first", true);
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("rate", 48_000i32)
                .field("channels", 2i32)
                .build(),
        )
        .build()
        .map_err(link_err)?;
    let tee = make("tee")?;
    pipeline
        .add_many([&q, &convert, &resample, &rate, &caps, &tee])
        .map_err(link_err)?;
    gst::Element::link_many([&q, &convert, &resample, &rate, &caps, &tee]).map_err(link_err)?;
    for (index, &kbps) in bitrates.iter().enumerate() {
        let q = queue(64)?;
        let enc = make("avenc_aac")?;
        enc.set_property("bitrate", i32::try_from(kbps * 1000).unwrap_or(i32::MAX));
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("audio/mpeg")
                    .field("mpegversion", 4i32)
                    .field("stream-format", "raw")
                    .build(),
            )
            .sync(false)
            .build();
        sink.set_callbacks(audio_callbacks(index, tx.clone()));
        let sink: gst::Element = sink.upcast();
        pipeline.add_many([&q, &enc, &sink]).map_err(link_err)?;
        gst::Element::link_many([&tee, &q, &enc, &sink]).map_err(link_err)?;
    }
    q.static_pad("sink")
        .ok_or_else(|| TranscodeError::Pipeline("queue without a sink pad".into()))
}

/// A buffer time as 90 kHz ticks on the output timeline (running time, shifted so that the
/// first frame sits at [`OUTPUT_START_90K`] and slightly negative DTS stay positive).
fn ticks_90k(sample: &gst::Sample, t: Option<gst::ClockTime>) -> Option<u64> {
    let t = t?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let running = segment.to_running_time_full(t)?;
    let ns: i128 = match running {
        gst::Signed::Positive(v) => i128::from(v.nseconds()),
        gst::Signed::Negative(v) => -i128::from(v.nseconds()),
    };
    let ticks = (ns * 9 + 50_000).div_euclid(100_000);
    u64::try_from(i128::from(OUTPUT_START_90K) + ticks).ok()
}

fn video_callbacks(index: usize, tx: SyncSender<Packet>) -> gst_app::AppSinkCallbacks {
    let eos_tx = tx.clone();
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
            let pts = ticks_90k(&sample, buffer.pts()).ok_or(gst::FlowError::Error)?;
            let dts = ticks_90k(&sample, buffer.dts()).unwrap_or(pts).min(pts);
            let duration = buffer
                .duration()
                .map_or(0, |d| (d.nseconds() as u128 * 9 / 100_000) as u64);
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let frame = VideoFrame {
                pts_90k: pts,
                dts_90k: dts,
                duration_90k: duration,
                keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                annexb: map.as_slice().to_vec(),
            };
            tx.send(Packet::Video(index, frame))
                .map_err(|_| gst::FlowError::Error)?;
            Ok(gst::FlowSuccess::Ok)
        })
        .eos(move |_| {
            let _ = eos_tx.send(Packet::VideoEnded(index));
        })
        .build()
}

fn audio_callbacks(index: usize, tx: SyncSender<Packet>) -> gst_app::AppSinkCallbacks {
    let eos_tx = tx.clone();
    let mut configured = false;
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            if !configured {
                let codec_data = sample
                    .caps()
                    .and_then(|c| c.structure(0))
                    .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                    .ok_or(gst::FlowError::NotNegotiated)?;
                let asc = codec_data
                    .map_readable()
                    .map_err(|_| gst::FlowError::Error)?
                    .to_vec();
                tx.send(Packet::AudioConfig(index, asc))
                    .map_err(|_| gst::FlowError::Error)?;
                configured = true;
            }
            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
            let Some(pts) = ticks_90k(&sample, buffer.pts()) else {
                // Encoder priming output before time zero: nothing to play.
                return Ok(gst::FlowSuccess::Ok);
            };
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let frame = AudioFrame {
                pts_90k: pts,
                raw: map.as_slice().to_vec(),
            };
            tx.send(Packet::Audio(index, frame))
                .map_err(|_| gst::FlowError::Error)?;
            Ok(gst::FlowSuccess::Ok)
        })
        .eos(move |_| {
            let _ = eos_tx.send(Packet::AudioEnded(index));
        })
        .build()
}

/// Waits for the end of the stream, reporting progress; any error message ends it.
fn run_bus(
    pipeline: &gst::Pipeline,
    plan: &TranscodePlan,
    cancel: &AtomicBool,
    packaging: &std::thread::JoinHandle<Result<Vec<RenditionOutput>, TranscodeError>>,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(), TranscodeError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| TranscodeError::Pipeline("pipeline without a bus".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| pipeline_error(&bus, "the pipeline does not start"))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TranscodeError::Cancelled);
        }
        if packaging.is_finished() {
            return Err(TranscodeError::Pipeline(
                "the packaging thread stopped early".into(),
            ));
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(POLL.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            match msg.view() {
                gst::MessageView::Eos(_) => return Ok(()),
                gst::MessageView::Error(err) => return Err(classify(err)),
                _ => {}
            }
        }
        if last_report.elapsed() >= plan.progress_interval {
            last_report = Instant::now();
            on_progress(Progress {
                position: slowest_sink_position(pipeline),
                duration: plan.duration,
                elapsed: started.elapsed(),
            });
        }
    }
}

/// Media time every branch has reached. The pipeline's own position query answers with the
/// furthest sink, and the audio branches finish long before the video encoders (decodebin's
/// multiqueue lets the demuxer read ahead), which made a job report 100 % a third of the way in.
fn slowest_sink_position(pipeline: &gst::Pipeline) -> Duration {
    pipeline
        .iterate_sinks()
        .into_iter()
        .filter_map(|sink| sink.ok()?.query_position::<gst::ClockTime>())
        .min()
        .map_or(Duration::ZERO, |p| Duration::from_nanos(p.nseconds()))
}

/// The first error on the bus after a failed state change, or `fallback`.
fn pipeline_error(bus: &gst::Bus, fallback: &str) -> TranscodeError {
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        .and_then(|msg| match msg.view() {
            gst::MessageView::Error(err) => Some(classify(err)),
            _ => None,
        })
        .unwrap_or_else(|| TranscodeError::Pipeline(fallback.to_owned()))
}

/// Demuxer and decoder errors mean the input is broken: permanent. The rest may be passing.
fn classify(err: &gst::message::Error) -> TranscodeError {
    let source = err
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    let error = err.error();
    let text = match err.debug() {
        Some(debug) => format!("{error} (from {source}: {debug})"),
        None => format!("{error} (from {source})"),
    };
    match error.kind::<gst::StreamError>() {
        Some(gst::StreamError::TypeNotFound | gst::StreamError::WrongType) => {
            TranscodeError::NotMedia(text)
        }
        Some(
            gst::StreamError::CodecNotFound
            | gst::StreamError::Decode
            | gst::StreamError::Demux
            | gst::StreamError::Format,
        ) => TranscodeError::Corrupt(text),
        _ => TranscodeError::Pipeline(text),
    }
}

/// The packaging thread: routes frames to each rendition's packager and writes segments.
fn package(
    rx: Receiver<Packet>,
    mut renditions: Vec<RenditionSetup>,
    audio_routes: Vec<Vec<usize>>,
    stop: &AtomicBool,
) -> Result<Vec<RenditionOutput>, TranscodeError> {
    let vod = |r: &RenditionSetup, err: media::vod::VodError| {
        TranscodeError::Pipeline(format!("packaging {}: {err}", r.name))
    };
    loop {
        let packet = match rx.recv_timeout(POLL) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    return Err(TranscodeError::Cancelled);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Err(TranscodeError::Cancelled),
        };
        match packet {
            Packet::Video(i, frame) => {
                let r = &mut renditions[i];
                let segments = r.packager.push_video(frame).map_err(|e| vod(r, e))?;
                write_segments(r, segments)?;
            }
            Packet::VideoEnded(i) => {
                let r = &mut renditions[i];
                let segments = r.packager.end_video().map_err(|e| vod(r, e))?;
                write_segments(r, segments)?;
            }
            Packet::AudioConfig(a, asc) => {
                for &i in &audio_routes[a] {
                    let r = &mut renditions[i];
                    r.packager.set_audio_config(&asc).map_err(|e| vod(r, e))?;
                }
            }
            Packet::Audio(a, frame) => {
                for &i in &audio_routes[a] {
                    let r = &mut renditions[i];
                    let segments = r
                        .packager
                        .push_audio(frame.clone())
                        .map_err(|e| vod(r, e))?;
                    write_segments(r, segments)?;
                }
            }
            Packet::AudioEnded(a) => {
                for &i in &audio_routes[a] {
                    let r = &mut renditions[i];
                    let segments = r.packager.end_audio().map_err(|e| vod(r, e))?;
                    write_segments(r, segments)?;
                }
            }
            Packet::Finish => break,
        }
    }
    let mut out = Vec::with_capacity(renditions.len());
    for mut r in renditions {
        let segments = r.packager.finish().map_err(|e| vod(&r, e))?;
        write_segments(&mut r, segments)?;
        let facts = r.packager.facts();
        if facts.segments == 0 {
            return Err(TranscodeError::Corrupt(format!(
                "rendition {} has no frames: the source holds nothing decodable",
                r.name
            )));
        }
        let playlist = r.packager.playlist(segment_name);
        write_file(&r.dir.join("index.m3u8"), playlist.as_bytes())?;
        let iframe_playlist = match r.packager.iframe_playlist(segment_name) {
            Some(text) => {
                write_file(&r.dir.join("iframes.m3u8"), text.as_bytes())?;
                Some(format!("{}/iframes.m3u8", r.name))
            }
            None => None,
        };
        out.push(RenditionOutput {
            playlist: format!("{}/index.m3u8", r.name),
            iframe_playlist,
            frame_rate: r.frame_rate,
            cubemap: r.cubemap,
            segments: r.segments,
            facts,
            name: r.name,
        });
    }
    Ok(out)
}

fn segment_name(index: u32) -> String {
    format!("{index:05}.ts")
}

fn write_segments(r: &mut RenditionSetup, segments: Vec<VodSegment>) -> Result<(), TranscodeError> {
    for segment in segments {
        let name = segment_name(segment.index);
        write_file(&r.dir.join(&name), &segment.data)?;
        r.segments.push(format!("{}/{name}", r.name));
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), TranscodeError> {
    std::fs::write(path, data).map_err(|err| TranscodeError::Io {
        path: path.to_owned(),
        message: err.to_string(),
    })
}
