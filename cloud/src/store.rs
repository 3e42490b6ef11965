//! The object-store port: S3 (through aws-sdk-s3) and a local directory.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

mod local;
mod s3;

pub use local::LocalStore;
pub use s3::S3Store;

/// Metadata set on an object when it is written. `None` leaves it to the store: S3 records
/// `application/octet-stream` as the content type (the SDK's default), a local store nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
}

/// What a store knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// As S3 reports it, with the surrounding double quotes.
    pub etag: String,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key:?} does not exist in bucket {bucket:?}")]
    NotFound { bucket: String, key: String },
    /// `op` is the S3 operation (`PutObject`, `GetObject`...); `key` is the key or list prefix.
    #[error("object store unreachable during {op} of {key:?}: {message}")]
    Unreachable {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("local file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object store refused {op} of {key:?}: {message}")]
    Rejected {
        op: &'static str,
        key: String,
        message: String,
    },
    /// A key that cannot name an object safely: empty, absolute, with an empty, `.` or `..`
    /// segment, a backslash or a NUL (a local store also reserves a few names, see
    /// [`LocalStore`]). S3 would accept some of these; both stores reject them so that code
    /// tested locally behaves the same on S3.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
}

impl StoreError {
    /// True when retrying later may succeed (network, throttling, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}

/// An object store: a bucket on S3 or a directory on local disk.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// The bucket name put into S3 events (the directory name for a local store).
    fn bucket(&self) -> &str;
    /// Uploads a local file, streaming it (multipart above a size threshold on S3).
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError>;
    /// Writes a small object from memory.
    async fn put_bytes(
        &self,
        key: &str,
        body: bytes::Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError>;
    /// Streams an object to a local file (never whole into memory). The file's folder is
    /// created if needed, and `dest` appears only once the download is complete.
    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<ObjectInfo, StoreError>;
    /// Metadata of an object, `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// Deleting a missing object succeeds, as on S3.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every object whose key starts with `prefix`, in key (byte) order. Listings carry key,
    /// size and eTag only: `content_type` and `cache_control` are `None` (S3 does not list
    /// them); use [`ObjectStore::head`] for those.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
}

/// Checks the rules every store applies to keys, so that a key accepted locally is accepted
/// on S3 and names the same object: not empty, relative, `/`-separated segments that are
/// neither empty nor `.` or `..`, and no backslash or NUL (which a directory cannot map
/// faithfully).
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        Some("the key is empty")
    } else if key.starts_with('/') {
        Some("the key is absolute (starts with '/'); keys are relative to the bucket")
    } else if key.contains('\\') {
        Some("the key contains a backslash; use '/' to separate folders")
    } else if key.contains('\0') {
        Some("the key contains a NUL byte")
    } else if key.split('/').any(str::is_empty) {
        Some("the key has an empty segment ('//' or a trailing '/')")
    } else if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        Some("the key has a '.' or '..' segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_cannot_name_an_object_are_rejected() {
        for key in [
            "", "/abs.ts", "a/../b", "..", "./a", "a\\b", "a\0b", "a//b", "a/",
        ] {
            let err = validate_key(key).expect_err(key);
            assert!(
                matches!(err, StoreError::InvalidKey { .. }),
                "{key:?}: {err}"
            );
        }
    }

    #[test]
    fn ordinary_keys_are_accepted() {
        for key in [
            "a.ts",
            "rec/live-1700000000.mp4",
            "my file+x ü.mp4",
            "a/.hidden",
            "a..b",
        ] {
            validate_key(key).unwrap_or_else(|err| panic!("{key:?}: {err}"));
        }
    }
}
