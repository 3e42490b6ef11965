//! The object-store port: S3 (through aws-sdk-s3) and a local directory.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

mod local;
mod s3;

pub use local::LocalStore;
pub use s3::S3Store;

/// Largest user metadata S3 accepts on one object: the bytes of every name and value together.
pub const MAX_METADATA_BYTES: usize = 2048;

/// Metadata set on an object when it is written. `None` leaves it to the store: S3 records
/// `application/octet-stream` as the content type (the SDK's default), a local store nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// User metadata, S3's `x-amz-meta-<name>` headers. Names are non-empty and made of
    /// `a-z`, `0-9` and `-`; values are printable ASCII without leading or trailing spaces
    /// (HTTP would trim them); names and values together take at most
    /// [`MAX_METADATA_BYTES`]. Both stores refuse anything else with [`StoreError::Rejected`],
    /// so metadata accepted locally is accepted, and returned unchanged, by S3.
    pub metadata: BTreeMap<String, String>,
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
    /// User metadata as written with [`PutOptions::metadata`].
    pub metadata: BTreeMap<String, String>,
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
    /// size and eTag only: `content_type` and `cache_control` are `None` and `metadata` is
    /// empty (S3 does not list them); use [`ObjectStore::head`] for those.
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

/// Checks user metadata against what S3 stores and returns faithfully (see
/// [`PutOptions::metadata`]). `op` and `key` name the write for the error.
pub(crate) fn validate_metadata(
    op: &'static str,
    key: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let rejected = |message: String| StoreError::Rejected {
        op,
        key: key.to_owned(),
        message,
    };
    let mut total = 0;
    for (name, value) in metadata {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(rejected(format!(
                "metadata name {name:?} is not allowed; use lower-case letters, digits and '-'"
            )));
        }
        if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(rejected(format!(
                "metadata {name:?} has the value {value:?}, which is not printable ASCII; encode it (percent- or base64-encoding) first"
            )));
        }
        if value.starts_with(' ') || value.ends_with(' ') {
            return Err(rejected(format!(
                "metadata {name:?} has the value {value:?}, which starts or ends with a space that HTTP would drop; trim it"
            )));
        }
        total += name.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(rejected(format!(
            "metadata takes {total} bytes (names and values), more than the {MAX_METADATA_BYTES} S3 accepts"
        )));
    }
    Ok(())
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

    fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    #[test]
    fn metadata_s3_would_not_return_unchanged_is_rejected() {
        let long = "x".repeat(MAX_METADATA_BYTES);
        for (name, value) in [
            ("", "x"),
            ("Stream", "x"),
            ("stream_id", "x"),
            ("stream id", "x"),
            ("strëam", "x"),
            ("stream", "caf\u{e9}"),
            ("stream", "a\nb"),
            ("stream", "a\tb"),
            ("stream", " padded"),
            ("stream", "padded "),
            ("stream", long.as_str()),
        ] {
            let err = validate_metadata("PutObject", "a.ts", &metadata(&[(name, value)]))
                .expect_err(name);
            assert!(
                matches!(&err, StoreError::Rejected { op: "PutObject", key, .. } if key == "a.ts"),
                "{name:?}={value:?}: {err}"
            );
        }
    }

    #[test]
    fn ordinary_metadata_is_accepted() {
        let ok = metadata(&[
            ("stream", "live/cam-1"),
            ("source-etag", "\"5d41402abc4b2a76b9719d911017c592\""),
            ("x", ""),
            ("note", "a b ~!@#$%^&*()_+={}[]|:;'<>,.?/"),
        ]);
        validate_metadata("PutObject", "a.ts", &ok).unwrap();
        validate_metadata("PutObject", "a.ts", &BTreeMap::new()).unwrap();
    }
}
