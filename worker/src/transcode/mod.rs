//! GStreamer: probing a source and transcoding it, decoding once, into an ABR ladder of
//! MPEG-TS HLS renditions packaged by [`media::vod`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gstreamer as gst;
use media::playlist::MasterPlaylist;

use crate::config::WorkerConfig;
use crate::immersive::{self, CubemapLayout, Sphere};
use crate::ladder;

mod pipeline;
mod probe;
pub mod project;

pub use pipeline::{Progress, RenditionOutput, TranscodePlan, transcode};
pub use probe::{SourceAudio, SourceInfo, probe};

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The input is not audio or video GStreamer can decode. Permanent.
    #[error("not a playable media file: {0}")]
    NotMedia(String),
    /// The input decodes but its content is broken beyond what the decoders tolerate.
    /// Permanent.
    #[error("corrupt media: {0}")]
    Corrupt(String),
    /// Anything else in the pipeline: may succeed on another try (another machine, more disk).
    #[error("transcode failed: {0}")]
    Pipeline(String),
    #[error("file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("transcode cancelled")]
    Cancelled,
}

impl TranscodeError {
    /// True when another attempt cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            TranscodeError::NotMedia(_) | TranscodeError::Corrupt(_)
        )
    }
}

/// Initialises GStreamer once per process and checks that every element the worker uses is
/// installed, so a missing plugin package is one clear error rather than a failed link.
pub fn init() -> Result<(), TranscodeError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|err| format!("GStreamer does not initialise: {err}"))?;
        let missing: Vec<&str> = REQUIRED_ELEMENTS
            .iter()
            .copied()
            .filter(|name| gst::ElementFactory::find(name).is_none())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "GStreamer elements {} are missing: install gstreamer1.0-plugins-base, \
                 -good, -bad, -ugly and gstreamer1.0-libav (scripts/setup.sh does)",
                missing.join(", ")
            ))
        }
    })
    .clone()
    .map_err(TranscodeError::Pipeline)
}

const REQUIRED_ELEMENTS: &[&str] = &[
    "filesrc",
    "decodebin",
    "queue",
    "tee",
    "videoconvert",
    "videorate",
    "videoscale",
    "x264enc",
    "audioconvert",
    "audioresample",
    "avenc_aac",
    "appsink",
    "fakesink",
];

/// The name of the master playlist in an output folder.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// The projection sidecar written beside the master playlists of a 360 source.
pub const SIDECAR: &str = "projection.json";

/// Every top-level file a ladder may have besides `master.m3u8`.
pub const TOP_LEVEL_EXTRAS: &[&str] = &["eac.m3u8", "c3x2.m3u8", SIDECAR];

/// The master playlist of a 360 source's cubemap renditions of one layout: `eac.m3u8`,
/// `c3x2.m3u8`. Each layout has its own master so a player never switches projection
/// mid-stream; `master.m3u8` keeps the equirect ladder every 360 player can draw.
pub fn cubemap_master(layout: CubemapLayout) -> String {
    format!("{}.m3u8", layout.layout().ffmpeg_name())
}

/// Audio bitrate used for a source without video when the audio-only rendition is off.
const AUDIO_ONLY_FALLBACK_KBPS: u32 = 128;

/// A finished ladder in a local folder.
#[derive(Debug, Clone)]
pub struct Ladder {
    pub source: SourceInfo,
    pub renditions: Vec<RenditionOutput>,
    /// The master playlist's text (also written to `out_dir/master.m3u8`).
    pub master: String,
    /// Source media seconds over wall seconds of the transcode.
    pub speed: f64,
    /// Whether the source was taken as 360.
    pub sphere: Sphere,
    /// Top-level files besides `master.m3u8` (cubemap masters, the projection sidecar),
    /// relative to the output folder; published before the master playlist.
    pub extra_files: Vec<String>,
}

/// Plans the renditions of `source` (called `name`, its key) from the configuration: the flat
/// ladder, and for a 360 source the cubemap ladder too.
pub fn plan(
    config: &WorkerConfig,
    name: &str,
    source: &SourceInfo,
    input: &Path,
    out_dir: &Path,
) -> Result<(TranscodePlan, Sphere), TranscodeError> {
    let (rungs, fps, sphere) = match &source.video {
        Some(video) => {
            let fps = ladder::output_fps(video.fps, config.max_frame_rate);
            let mut rungs = ladder::plan(&config.rungs, video);
            let sphere = immersive::classify(&config.immersive, name, video);
            if sphere == Sphere::Equirect {
                let cubemaps = ladder::plan_cubemaps(&config.immersive.rungs, video);
                if cubemaps.is_empty() {
                    tracing::warn!(
                        width = video.width,
                        height = video.height,
                        "A 360 source too small for any cubemap rung (under 32 lines): flat ladder only."
                    );
                }
                rungs.extend(cubemaps);
            }
            (rungs, fps, sphere)
        }
        None => (Vec::new(), (30, 1), Sphere::Flat),
    };
    if let Sphere::NotEquirect { reason } = &sphere {
        tracing::warn!(%name, "Not making cubemap renditions: {reason}.");
    }
    let audio_only_kbps = match (source.audio.is_some(), rungs.is_empty()) {
        (false, _) => 0,
        (true, true) if config.audio_only_kbps == 0 => AUDIO_ONLY_FALLBACK_KBPS,
        (true, _) => config.audio_only_kbps,
    };
    if rungs.is_empty() && audio_only_kbps == 0 {
        return Err(TranscodeError::NotMedia(
            "the source has a video stream too small for any rung and no audio".to_owned(),
        ));
    }
    let plan = TranscodePlan {
        input: input.to_owned(),
        out_dir: out_dir.to_owned(),
        rungs,
        fps,
        keyframe_interval_frames: ladder::keyframe_interval_frames(
            fps,
            config.keyframe_interval_secs,
        ),
        segment_duration: Duration::from_secs(u64::from(config.segment_secs)),
        audio: source.audio.is_some(),
        audio_only_kbps,
        duration: source.duration,
        progress_interval: Duration::from_secs(config.progress_secs.max(1)),
        projection_threads: u32::try_from(config.immersive.threads).unwrap_or(1),
    };
    Ok((plan, sphere))
}

/// Probes `input`, transcodes it into `out_dir` and writes the cubemap masters and the
/// projection sidecar (for a 360 source), then the master playlist last. `name` is the source's
/// key (or file name), which the 360 rule looks at. Blocking.
pub fn transcode_file(
    config: &WorkerConfig,
    name: &str,
    input: &Path,
    out_dir: &Path,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Ladder, TranscodeError> {
    let source = probe(input)?;
    if source.video_depth.is_some_and(|d| d > 8) {
        tracing::info!(
            depth = source.video_depth,
            "Source video has more than 8 bits per component; converting to 8-bit 4:2:0."
        );
    }
    let (plan, sphere) = plan(config, name, &source, input, out_dir)?;
    let started = std::time::Instant::now();
    let renditions = transcode(&plan, cancel, on_progress)?;
    let write = |file: &str, text: &str| {
        let path = out_dir.join(file);
        std::fs::write(&path, text).map_err(|err| TranscodeError::Io {
            path,
            message: err.to_string(),
        })
    };
    let flat: Vec<RenditionOutput> = renditions
        .iter()
        .filter(|r| r.cubemap.is_none())
        .cloned()
        .collect();
    let mut extra_files = Vec::new();
    let mut layouts: Vec<CubemapLayout> = renditions.iter().filter_map(|r| r.cubemap).collect();
    layouts.dedup();
    for layout in &layouts {
        let members: Vec<RenditionOutput> = renditions
            .iter()
            .filter(|r| r.cubemap == Some(*layout) || r.facts.resolution.is_none())
            .cloned()
            .collect();
        let file = cubemap_master(*layout);
        write(&file, &master_playlist(&members))?;
        extra_files.push(file);
    }
    if sphere == Sphere::Equirect {
        let sidecar = sidecar(&renditions, &layouts);
        let text = serde_json::to_string_pretty(&sidecar).map_err(|err| {
            TranscodeError::Pipeline(format!("cannot write the projection sidecar: {err}"))
        })?;
        write(SIDECAR, &text)?;
        extra_files.push(SIDECAR.to_owned());
    }
    let master = master_playlist(&flat);
    write(MASTER_PLAYLIST, &master)?;
    let media_secs = renditions
        .iter()
        .map(|r| r.facts.duration.as_secs_f64())
        .fold(0.0, f64::max);
    Ok(Ladder {
        source,
        renditions,
        master,
        speed: media_secs / started.elapsed().as_secs_f64().max(1e-3),
        sphere,
        extra_files,
    })
}

/// The projection sidecar of a 360 source's ladder.
fn sidecar(renditions: &[RenditionOutput], layouts: &[CubemapLayout]) -> immersive::Sidecar {
    let mut playlists = std::collections::BTreeMap::from([(
        MASTER_PLAYLIST.to_owned(),
        immersive::PlaylistProjection {
            projection: "equirect",
        },
    )]);
    for layout in layouts {
        playlists.insert(
            cubemap_master(*layout),
            immersive::PlaylistProjection {
                projection: immersive::mode_of(*layout),
            },
        );
    }
    let entries = renditions
        .iter()
        .filter_map(|r| {
            let (width, height) = r.facts.resolution?;
            Some(match r.cubemap {
                Some(layout) => {
                    immersive::cubemap_entry(r.playlist.clone(), layout, (width, height))
                }
                None => immersive::RenditionProjection {
                    playlist: r.playlist.clone(),
                    projection: "equirect",
                    layout: None,
                    face_order: None,
                    padding: None,
                    width,
                    height,
                },
            })
        })
        .collect();
    immersive::Sidecar {
        version: 1,
        projection: "equirect",
        playlists,
        renditions: entries,
    }
}

/// Apple's suggested first variant bitrate: players start with the first listed variant.
const START_BPS: u64 = 2_000_000;

/// The master playlist: the video rendition nearest 2 Mbit/s first (where players start),
/// the other video renditions from the highest bitrate down, the audio-only rendition last,
/// then the I-frame playlists.
pub fn master_playlist(renditions: &[RenditionOutput]) -> String {
    let mut video: Vec<&RenditionOutput> = renditions
        .iter()
        .filter(|r| r.facts.resolution.is_some())
        .collect();
    video.sort_by_key(|r| std::cmp::Reverse(r.facts.peak_bps));
    if let Some(start) = video
        .iter()
        .enumerate()
        .min_by_key(|(_, r)| r.facts.peak_bps.abs_diff(START_BPS))
        .map(|(i, _)| i)
    {
        let first = video.remove(start);
        video.insert(0, first);
    }
    let audio = renditions.iter().filter(|r| r.facts.resolution.is_none());
    let variants: Vec<_> = video
        .iter()
        .copied()
        .chain(audio)
        .map(|r| r.facts.variant(r.playlist.clone(), r.frame_rate))
        .collect();
    let i_frame_variants: Vec<_> = video
        .iter()
        .filter_map(|r| r.facts.iframe_variant(r.iframe_playlist.clone()?))
        .collect();
    MasterPlaylist {
        variants: &variants,
        i_frame_variants: &i_frame_variants,
        independent_segments: !video.is_empty(),
    }
    .render()
}
