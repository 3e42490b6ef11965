//! Live ABR: transcodes a publisher's H.264, as it arrives over RTMP, into a ladder of rungs
//! (`_480`, `_960`, `_1920` by default, never above the source) with GStreamer, for the
//! origin to package beside the passthrough `_src` variant.
//!
//! ```text
//! appsrc (AVCC access units) ! h264parse ! avdec_h264 ! videoconvert ! I420 ! tee
//!   tee ─┬─ valve ! queue ! videoscale ! WxH ! x264enc (zerolatency, no B-frames) ! appsink   (per rung)
//!        └─ ...
//! ```
//!
//! Every rung gets an IDR exactly at each source keyframe's presentation time and nowhere
//! else, so all variants (and the passthrough) cut their segments at the same instants. The
//! caller is never stalled: [`Transcoder::push`] does not block; when the ladder falls behind
//! real time the highest rung is dropped and reported ([`Output::RungDropped`]).
#![forbid(unsafe_code)]

pub mod rung;
pub mod transcoder;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use rung::{PlannedRung, Preset, RungConfig, default_rungs, plan};
pub use transcoder::{DropReason, Output, Pushed, RungFrame, RungStart, Stats, Transcoder};

/// Everything that can go wrong in the live ladder. The origin logs it and carries on with the
/// passthrough variant only.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LiveError {
    #[error("invalid live ABR configuration: {0}")]
    Config(String),
    #[error(
        "the publisher's AVC decoder configuration record is unusable ({0}); the stream gets no \
         transcoded rungs"
    )]
    BadCodecConfig(#[source] media::avc::AvcError),
    #[error(
        "no rung of the ladder fits a {width}x{height} source (every rung is wider); the stream \
         gets the passthrough variant only"
    )]
    NoRungFits { width: u32, height: u32 },
    #[error("access unit at DTS {dts_ms} ms is malformed: {source}")]
    BadAccessUnit {
        dts_ms: u32,
        #[source]
        source: media::avc::AvcError,
    },
    #[error(
        "GStreamer could not start the live ladder: {0} (is GStreamer installed? run scripts/setup.sh)"
    )]
    Gstreamer(String),
    #[error("the live ladder's pipeline failed: {0}")]
    Pipeline(String),
    #[error("the live ladder stopped: {element} reported \"{message}\" ({debug})")]
    Stopped {
        element: String,
        message: String,
        debug: String,
    },
    #[error("the live ladder did not drain within {0:?} after the end of the stream")]
    DrainTimeout(Duration),
}

/// What the transcoder does when it cannot keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backpressure {
    /// Live: `push` never blocks. A full input queue drops access units (up to the next
    /// keyframe, so the decoder never sees a broken reference chain), and a ladder that lags
    /// real time loses its highest rung.
    #[default]
    Drop,
    /// Offline (benchmarks, files): `push` blocks while the input queue is full and no rung is
    /// ever dropped. Never use this on a publisher's connection.
    Block,
}

/// Configuration of the live ladder for one application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveAbrConfig {
    /// The transcoded rungs; the reference ladder (`_480`, `_960`, `_1920`) unless set. Rungs
    /// wider than a source are skipped for it.
    pub rungs: Vec<RungConfig>,
    /// A rung whose output lags the newest input by more than this (media time, ms) means the
    /// machine cannot keep up: the highest rung still running is dropped.
    pub max_lag_ms: u64,
    /// Access units the input queue holds before `push` starts dropping (about 2 s at 30 fps).
    pub input_queue_frames: u32,
    /// Raw frames queued before each rung's encoder.
    pub rung_queue_frames: u32,
    /// Capacity of the output channel, in messages.
    pub output_capacity: usize,
    /// What to do when the ladder cannot keep up.
    pub backpressure: Backpressure,
    /// How long `finish` waits for the encoders to drain, in ms.
    pub drain_timeout_ms: u64,
}

impl Default for LiveAbrConfig {
    fn default() -> Self {
        LiveAbrConfig {
            rungs: default_rungs(),
            max_lag_ms: 2000,
            input_queue_frames: 60,
            rung_queue_frames: 4,
            output_capacity: 256,
            backpressure: Backpressure::Drop,
            drain_timeout_ms: 30_000,
        }
    }
}

impl LiveAbrConfig {
    /// Checks the configuration once, when it is read.
    pub fn validate(&self) -> Result<(), LiveError> {
        rung::validate(&self.rungs)?;
        if self.input_queue_frames == 0 || self.rung_queue_frames == 0 {
            return Err(LiveError::Config(
                "input_queue_frames and rung_queue_frames must be at least 1".into(),
            ));
        }
        if self.output_capacity == 0 {
            return Err(LiveError::Config(
                "output_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_is_the_reference_ladder() {
        let c: LiveAbrConfig = toml::from_str("").unwrap();
        assert_eq!(c, LiveAbrConfig::default());
        assert_eq!(c.rungs.len(), 3);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_fields_and_zero_queues_are_rejected() {
        assert!(toml::from_str::<LiveAbrConfig>("max_lag = 3").is_err());
        let c: LiveAbrConfig = toml::from_str("input_queue_frames = 0").unwrap();
        assert!(c.validate().is_err());
        let c: LiveAbrConfig = toml::from_str("backpressure = \"block\"").unwrap();
        assert_eq!(c.backpressure, Backpressure::Block);
    }
}
