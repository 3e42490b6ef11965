//! Recording every published session to FLV as it arrives: one [`Recorder`] per session,
//! rolling over to a new part on the first keyframe past the size limit, finalised parts
//! handed back as [`FinishedRecording`]s, and [`recover`] for files a crash left behind.
//!
//! Invariants every recording file keeps:
//! - Its name is unique: `NAME-EPOCH.flv`, then `NAME-EPOCH-1.flv`, `-2`, ... for later parts
//!   or for a second session that started in the same second. An existing file is never
//!   opened for writing, let alone truncated.
//! - It is written tag by tag, each tag whole, so after a crash it is playable up to its last
//!   complete tag and [`recover`] can make it whole again.
//! - It starts with `onMetaData` (whose `duration` and `filesize` are patched in place when the
//!   part is finalised), then the sequence headers, then the first frame; parts after a
//!   rollover start with a video keyframe and their timestamps start at 0.

mod file;
mod names;
mod recorder;
mod recover;
mod scan;
mod timeline;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use recorder::Recorder;
pub use recover::recover;

/// A finalised recording file, ready to be handed to the upload spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRecording {
    /// Where the file is now (in the recording folder).
    pub path: PathBuf,
    /// `NAME-EPOCH.flv` or `NAME-EPOCH-N.flv`: the object key below the upload prefix.
    pub file_name: String,
    /// The stream name the recording belongs to.
    pub stream: String,
    /// Playing time: last timestamp minus first, plus the duration of the last frame.
    pub duration: Duration,
    /// File size in bytes.
    pub size: u64,
}

/// Why a recording could not start or continue. Every variant names the file (or the stream
/// name) involved; I/O variants carry the operating-system error.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "stream name {stream:?} cannot be used as a recording file name (empty, too long, or \
         containing '/', '\\\\', NUL or a leading '.'); publish under a plain name"
    )]
    InvalidName { stream: String },
    #[error(
        "cannot create recording file {}: {source}; check that the recording folder exists, is \
         writable and has free space",
        path.display()
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no free recording file name next to {} (tried {tried} suffixes); clear out the \
         recording folder",
        path.display()
    )]
    NamesExhausted { path: PathBuf, tried: u32 },
    #[error(
        "writing recording file {} failed: {source}; the recording stops (what was written is \
         kept); free disk space or check the disk",
        path.display()
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "finalising recording file {} failed: {source}; {}",
        path.display(),
        if salvaged.is_some() {
            "what was written up to the last complete tag is kept and can still be uploaded"
        } else {
            "the file is left in the recording folder and is repaired at the next start"
        }
    )]
    Finalise {
        path: PathBuf,
        source: std::io::Error,
        salvaged: Option<Box<FinishedRecording>>,
    },
    #[error("recording file {} already failed; call abandon() to keep what was written", path.display())]
    Stopped { path: PathBuf },
    #[error("recording file {} holds no audio or video frame; it was removed, nothing to upload", path.display())]
    Empty { path: PathBuf },
}

impl RecordError {
    /// The part of the recording that could be kept after [`Recorder::finish`] failed: the file
    /// cut at its last complete tag with its metadata patched. Upload it like any other
    /// finished recording. `None` for every other error (use [`Recorder::abandon`] after a
    /// write error).
    pub fn into_salvaged(self) -> Option<FinishedRecording> {
        match self {
            RecordError::Finalise { salvaged, .. } => salvaged.map(|b| *b),
            _ => None,
        }
    }
}
