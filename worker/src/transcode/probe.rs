//! What a source file holds, found with GStreamer's discoverer before any work is planned.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer_pbutils as pbutils;
use gstreamer_pbutils::prelude::*;

use super::TranscodeError;
use crate::ladder::SourceVideo;

/// The facts of a source the job plans from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Container duration; `None` when the file does not say (a live recording cut short).
    pub duration: Option<Duration>,
    pub video: Option<SourceVideo>,
    /// Bits per colour component of the video (8 for most sources), when known.
    pub video_depth: Option<u32>,
    pub audio: Option<SourceAudio>,
    /// Container caps name, e.g. `video/x-flv`.
    pub container: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAudio {
    pub channels: u32,
    pub sample_rate: u32,
}

/// How long discovery may take before the file counts as unreadable.
const DISCOVER_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(60);

/// Probes `path`. Files that GStreamer cannot read as audio or video, still images, and files
/// with neither stream are [`TranscodeError::NotMedia`] (permanent: retrying cannot help).
pub fn probe(path: &Path) -> Result<SourceInfo, TranscodeError> {
    super::init()?;
    let absolute = std::path::absolute(path).map_err(|err| TranscodeError::Io {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    let uri = gst::glib::filename_to_uri(&absolute, None).map_err(|err| TranscodeError::Io {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    let discoverer = pbutils::Discoverer::new(DISCOVER_TIMEOUT)
        .map_err(|err| TranscodeError::Pipeline(format!("cannot start the discoverer: {err}")))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|err| TranscodeError::NotMedia(err.to_string()))?;
    match info.result() {
        pbutils::DiscovererResult::Ok => {}
        pbutils::DiscovererResult::MissingPlugins => {
            return Err(TranscodeError::NotMedia(format!(
                "no GStreamer plugin can decode it ({})",
                info.missing_elements_installer_details().join(", ")
            )));
        }
        pbutils::DiscovererResult::Timeout => {
            return Err(TranscodeError::Pipeline(
                "probing took longer than 60 s".to_owned(),
            ));
        }
        other => {
            return Err(TranscodeError::NotMedia(format!(
                "discoverer result {other:?}"
            )));
        }
    }
    let container = info
        .container_streams()
        .first()
        .and_then(|c| c.caps())
        .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()));
    let video_info = info.video_streams().into_iter().next();
    if let Some(v) = &video_info
        && v.is_image()
    {
        return Err(TranscodeError::NotMedia(format!(
            "it is a still image ({}), not a video",
            container.as_deref().unwrap_or("unknown format")
        )));
    }
    let video = video_info.as_ref().map(|v| {
        let fps = v.framerate();
        let par = v.par();
        SourceVideo {
            width: v.width(),
            height: v.height(),
            par: (
                u32::try_from(par.numer()).unwrap_or(1),
                u32::try_from(par.denom()).unwrap_or(1),
            ),
            fps: (
                u32::try_from(fps.numer()).unwrap_or(0),
                u32::try_from(fps.denom()).unwrap_or(1),
            ),
        }
    });
    let audio = info
        .audio_streams()
        .into_iter()
        .next()
        .map(|a| SourceAudio {
            channels: a.channels(),
            sample_rate: a.sample_rate(),
        });
    if video.is_none() && audio.is_none() {
        return Err(TranscodeError::NotMedia(
            "no audio or video stream found".to_owned(),
        ));
    }
    if let Some(v) = &video
        && (v.width < 2 || v.height < 2)
    {
        return Err(TranscodeError::NotMedia(format!(
            "video of {}x{} pixels is too small to encode",
            v.width, v.height
        )));
    }
    Ok(SourceInfo {
        duration: info
            .duration()
            .map(|d| Duration::from_nanos(d.nseconds()))
            .filter(|d| !d.is_zero()),
        video,
        // The discoverer reports bits per pixel over all three components (24 for 8-bit
        // video, 30 for 10-bit).
        video_depth: video_info
            .map(|v| v.depth())
            .filter(|&d| d > 0)
            .map(|d| if d >= 24 { d / 3 } else { d }),
        audio,
        container,
    })
}
