//! Uploading finished recordings to the ingress bucket, durably: a [`Spool`] folder that
//! finished recordings are moved into, and an [`Uploader`] task that empties it.
//!
//! "Nothing is lost": a recording leaves the spool only after its object is stored and (in
//! local mode) its S3 event is on the queue. A crash at any point leaves the file in the spool,
//! and the next start uploads it again under the same key; the duplicate upload and event are
//! harmless because the worker is idempotent.

mod spool;
mod uploader;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use spool::Spool;
pub use uploader::Uploader;

/// Why the spool could not be opened or take a recording.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "cannot open the upload spool folder {}: {source}; check that it can be created and \
         written, and that the disk has space",
        dir.display()
    )]
    Open {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot move recording {} into the upload spool {}: {source}; the recording stays \
         where it is and is picked up again at the next start",
        file.display(),
        dir.display()
    )]
    Submit {
        file: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "recording file name {file_name:?} cannot be an object key (empty, a path, or hidden); \
         the recording stays at {}",
        file.display()
    )]
    InvalidName { file: PathBuf, file_name: String },
}
