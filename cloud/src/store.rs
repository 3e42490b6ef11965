//! The object-store port: S3 (through aws-sdk-s3) and a local directory.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// Metadata set on an object when it is written.
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
    #[error("object store unreachable while {op} {key:?}: {message}")]
    Unreachable { op: &'static str, key: String, message: String },
    #[error("local file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("object store refused {op} {key:?}: {message}")]
    Rejected { op: &'static str, key: String, message: String },
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
    async fn put_file(&self, key: &str, path: &Path, opts: &PutOptions) -> Result<ObjectInfo, StoreError>;
    /// Writes a small object from memory.
    async fn put_bytes(&self, key: &str, body: bytes::Bytes, opts: &PutOptions) -> Result<ObjectInfo, StoreError>;
    /// Streams an object to a local file (never whole into memory).
    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<ObjectInfo, StoreError>;
    /// Metadata of an object, `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
}

/// A directory acting as a bucket. Writes are atomic (temporary file, then rename).
#[derive(Debug, Clone)]
pub struct LocalStore {
    pub(crate) root: PathBuf,
    pub(crate) bucket: String,
}

/// A bucket on S3 or an S3-compatible endpoint.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) bucket: String,
}
