//! A bucket on S3 or an S3-compatible endpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::local::{TempFile, io_err, parent_dir};
use super::{ObjectInfo, ObjectStore, PutOptions, StoreError, validate_key, validate_metadata};

const MIB: u64 = 1024 * 1024;
/// S3 allows at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// A bucket on S3 or an S3-compatible endpoint.
///
/// Files below the multipart threshold go up in one PutObject; larger ones in parts uploaded
/// a few at a time, each read from the file as it is sent, so memory use does not grow with
/// the file. A failed multipart upload is aborted so that S3 does not keep (and bill) parts.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    multipart_threshold: u64,
    part_size: u64,
    part_concurrency: usize,
}

impl S3Store {
    /// Files of at least this size are uploaded in parts, unless configured otherwise.
    pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * MIB;
    /// Part size of multipart uploads, unless configured otherwise.
    pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;
    /// S3's smallest part (all parts but the last).
    pub const MIN_PART_SIZE: u64 = 5 * MIB;
    /// Parts in flight at once during a multipart upload, unless configured otherwise.
    pub const DEFAULT_PART_CONCURRENCY: usize = 4;

    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
            multipart_threshold: Self::DEFAULT_MULTIPART_THRESHOLD,
            part_size: Self::DEFAULT_PART_SIZE,
            part_concurrency: Self::DEFAULT_PART_CONCURRENCY,
        }
    }

    /// Uploads files of at least `threshold` bytes in parts of `part_size` bytes (raised to
    /// [`Self::MIN_PART_SIZE`], and further for files that would need more than 10,000 parts).
    pub fn with_multipart(mut self, threshold: u64, part_size: u64) -> S3Store {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(Self::MIN_PART_SIZE);
        self
    }

    /// Uploads at most `parts` parts of one file at once (at least 1).
    pub fn with_part_concurrency(mut self, parts: usize) -> S3Store {
        self.part_concurrency = parts.max(1);
        self
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Creates the bucket unless it exists and is ours: for `spherecast` against moto server
    /// or a fresh S3-compatible service, and for tests. In production the bucket comes from
    /// the infrastructure templates.
    pub async fn create_bucket_if_missing(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if matches!(err.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
            Err(err) => Err(self.sdk_error(err, "CreateBucket", "")),
        }
    }

    /// Has S3 announce every object created in this bucket on `queue`
    /// (`s3:ObjectCreated:*`); S3 sends an `s3:TestEvent` to the queue right away. For moto
    /// server, tests and fresh accounts: in production the notification (with a suffix filter
    /// and a queue policy) comes from the infrastructure template.
    pub async fn notify_object_created(
        &self,
        queue: &crate::queue::SqsQueue,
    ) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        use aws_sdk_sqs::types::QueueAttributeName;
        let rejected = |message: String| StoreError::Rejected {
            op: "PutBucketNotificationConfiguration",
            key: String::new(),
            message,
        };
        let arn = queue
            .client()
            .get_queue_attributes()
            .queue_url(queue.url())
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|err| {
                rejected(format!(
                    "cannot read the queue's ARN: {}",
                    DisplayErrorContext(&err)
                ))
            })?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| rejected(format!("queue {} reported no QueueArn", queue.url())))?;
        let target = QueueConfiguration::builder()
            .queue_arn(arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .build()
            .map_err(|err| rejected(err.to_string()))?;
        self.client
            .put_bucket_notification_configuration()
            .bucket(&self.bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(target)
                    .build(),
            )
            .send()
            .await
            .map_err(|err| self.sdk_error(err, "PutBucketNotificationConfiguration", ""))?;
        Ok(())
    }

    async fn put_single(
        &self,
        key: &str,
        body: ByteStream,
        size: u64,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(size as i64)
            .set_content_type(opts.content_type.clone())
            .set_cache_control(opts.cache_control.clone())
            .set_metadata(sdk_metadata(&opts.metadata))
            .body(body)
            .send()
            .await
            .map_err(|err| self.sdk_error(err, "PutObject", key))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag: out.e_tag.unwrap_or_default(),
            content_type: opts.content_type.clone(),
            cache_control: opts.cache_control.clone(),
            metadata: opts.metadata.clone(),
        })
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(opts.content_type.clone())
            .set_cache_control(opts.cache_control.clone())
            .set_metadata(sdk_metadata(&opts.metadata))
            .send()
            .await
            .map_err(|err| self.sdk_error(err, "CreateMultipartUpload", key))?;
        let Some(upload_id) = created.upload_id else {
            return Err(StoreError::Rejected {
                op: "CreateMultipartUpload",
                key: key.to_owned(),
                message: format!(
                    "the response for bucket {:?} carried no upload id",
                    self.bucket
                ),
            });
        };
        match self
            .upload_parts_and_complete(key, path, size, &upload_id)
            .await
        {
            Ok(etag) => Ok(ObjectInfo {
                key: key.to_owned(),
                size,
                etag,
                content_type: opts.content_type.clone(),
                cache_control: opts.cache_control.clone(),
                metadata: opts.metadata.clone(),
            }),
            Err(err) => {
                let abort = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                if let Err(abort_err) = abort {
                    warn!(bucket = %self.bucket, %key, %upload_id, error = %DisplayErrorContext(&abort_err), "Failed multipart upload not aborted; a bucket lifecycle rule for incomplete uploads will clean it up.");
                }
                Err(err)
            }
        }
    }

    async fn upload_parts_and_complete(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        upload_id: &str,
    ) -> Result<String, StoreError> {
        // Never more than S3's 10,000 parts: a larger file gets larger parts.
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let part_count = size.div_ceil(part_size);
        let mut in_flight = JoinSet::new();
        let mut parts = Vec::with_capacity(part_count as usize);
        for index in 0..part_count {
            if in_flight.len() >= self.part_concurrency {
                parts.push(join_part(&mut in_flight).await??);
            }
            let offset = index * part_size;
            let part = PartUpload {
                store: self.clone(),
                key: key.to_owned(),
                path: path.to_owned(),
                upload_id: upload_id.to_owned(),
                number: index as i32 + 1,
                offset,
                length: part_size.min(size - offset),
            };
            in_flight.spawn(part.send());
        }
        while !in_flight.is_empty() {
            parts.push(join_part(&mut in_flight).await??);
        }
        parts.sort_by_key(|part| part.part_number);

        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| self.sdk_error(err, "CompleteMultipartUpload", key))?;
        debug!(bucket = %self.bucket, %key, size, part_count, "Multipart upload completed.");
        Ok(out.e_tag.unwrap_or_default())
    }

    /// Maps an SDK error: network trouble, timeouts, 5xx and throttling are transient
    /// (`Unreachable`), a missing key is `NotFound`, anything else is `Rejected`.
    fn sdk_error<E>(&self, err: SdkError<E>, op: &'static str, key: &str) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let detail = DisplayErrorContext(&err).to_string();
        let unreachable = |message: String| StoreError::Unreachable {
            op,
            key: key.to_owned(),
            message,
        };
        let bucket = &self.bucket;
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = err.code().unwrap_or_default();
                if code == "NoSuchBucket" {
                    StoreError::Rejected {
                        op,
                        key: key.to_owned(),
                        message: format!(
                            "bucket {bucket:?} does not exist; check the bucket name and the endpoint URL ({detail})"
                        ),
                    }
                } else if status == 404 || code == "NoSuchKey" || code == "NotFound" {
                    StoreError::NotFound {
                        bucket: bucket.clone(),
                        key: key.to_owned(),
                    }
                } else if status >= 500 || is_throttling(code) {
                    unreachable(format!(
                        "{detail} (bucket {bucket:?}, HTTP {status}); the service is overloaded or failing, retry later"
                    ))
                } else if status == 403 {
                    StoreError::Rejected {
                        op,
                        key: key.to_owned(),
                        message: format!(
                            "access denied to bucket {bucket:?}; check the credentials, region and bucket policy ({detail})"
                        ),
                    }
                } else {
                    StoreError::Rejected {
                        op,
                        key: key.to_owned(),
                        message: format!("{detail} (bucket {bucket:?}, HTTP {status})"),
                    }
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => unreachable(format!(
                "{detail} (bucket {bucket:?}); check the endpoint URL and the network, then retry"
            )),
            _ => StoreError::Rejected {
                op,
                key: key.to_owned(),
                message: format!("{detail} (bucket {bucket:?})"),
            },
        }
    }
}

/// User metadata as the SDK takes it; `None` when there is none, so no header is sent.
fn sdk_metadata(metadata: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect())
}

/// User metadata as the SDK returns it (`x-amz-meta-*` headers, names already lower-cased by
/// HTTP), in the port's ordered map.
fn port_metadata(metadata: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    metadata.unwrap_or_default().into_iter().collect()
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeout"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "InternalError"
    )
}

/// One part of a multipart upload, owning what its task needs.
struct PartUpload {
    store: S3Store,
    key: String,
    path: PathBuf,
    upload_id: String,
    /// 1-based, as S3 numbers parts.
    number: i32,
    offset: u64,
    length: u64,
}

impl PartUpload {
    async fn send(self) -> Result<CompletedPart, StoreError> {
        // Streams this range of the file; the SDK can reopen it to retry.
        let body = ByteStream::read_from()
            .path(&self.path)
            .offset(self.offset)
            .length(Length::Exact(self.length))
            .build()
            .await
            .map_err(|err| io_err(&self.path, std::io::Error::other(err)))?;
        let out = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(self.number)
            .content_length(self.length as i64)
            .body(body)
            .send()
            .await
            .map_err(|err| self.store.sdk_error(err, "UploadPart", &self.key))?;
        Ok(CompletedPart::builder()
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .set_checksum_crc32_c(out.checksum_crc32_c)
            .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
            .set_checksum_sha1(out.checksum_sha1)
            .set_checksum_sha256(out.checksum_sha256)
            .part_number(self.number)
            .build())
    }
}

async fn join_part(
    in_flight: &mut JoinSet<Result<CompletedPart, StoreError>>,
) -> Result<Result<CompletedPart, StoreError>, StoreError> {
    match in_flight
        .join_next()
        .await
        .expect("only called with parts in flight")
    {
        Ok(result) => Ok(result),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(StoreError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(err),
        }),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        validate_key(key)?;
        validate_metadata("PutObject", key, &opts.metadata)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| io_err(path, e))?
            .len();
        if size >= self.multipart_threshold {
            return self.put_multipart(key, path, size, opts).await;
        }
        let body = ByteStream::read_from()
            .path(path)
            .length(Length::Exact(size))
            .build()
            .await
            .map_err(|err| io_err(path, std::io::Error::other(err)))?;
        self.put_single(key, body, size, opts).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        body: bytes::Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        validate_key(key)?;
        validate_metadata("PutObject", key, &opts.metadata)?;
        let size = body.len() as u64;
        self.put_single(key, ByteStream::from(body), size, opts)
            .await
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<ObjectInfo, StoreError> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| self.sdk_error(err, "GetObject", key))?;
        let expected = out.content_length.and_then(|len| u64::try_from(len).ok());
        let info = ObjectInfo {
            key: key.to_owned(),
            size: expected.unwrap_or_default(),
            etag: out.e_tag.unwrap_or_default(),
            content_type: out.content_type,
            cache_control: out.cache_control,
            metadata: port_metadata(out.metadata),
        };

        // Into a temporary file next to `dest`, renamed once complete: a reader of `dest`
        // never sees a partial download.
        let dir = parent_dir(dest);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_err(dir, e))?;
        let temp = tokio::task::spawn_blocking({
            let dir = dir.to_owned();
            move || TempFile::create_in(&dir)
        })
        .await
        .map_err(|err| io_err(dir, std::io::Error::other(err)))??;
        let std_file = temp
            .file()
            .try_clone()
            .map_err(|e| io_err(temp.path(), e))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut body = out.body;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| StoreError::Unreachable {
                op: "GetObject",
                key: key.to_owned(),
                message: format!(
                    "download from bucket {:?} broke off after {written} bytes: {}; retry",
                    self.bucket,
                    DisplayErrorContext(&err)
                ),
            })?;
            file.write_all(&chunk)
                .await
                .map_err(|e| io_err(temp.path(), e))?;
            written += chunk.len() as u64;
        }
        if let Some(expected) = expected.filter(|&expected| expected != written) {
            return Err(StoreError::Unreachable {
                op: "GetObject",
                key: key.to_owned(),
                message: format!(
                    "download from bucket {:?} ended after {written} of {expected} bytes; retry",
                    self.bucket
                ),
            });
        }
        file.sync_all().await.map_err(|e| io_err(temp.path(), e))?;
        drop(file);
        let dest = dest.to_owned();
        tokio::task::spawn_blocking(move || temp.persist(&dest))
            .await
            .map_err(|err| io_err(dir, std::io::Error::other(err)))??;
        Ok(ObjectInfo {
            size: written,
            ..info
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        validate_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: out
                    .content_length
                    .and_then(|len| u64::try_from(len).ok())
                    .unwrap_or_default(),
                etag: out.e_tag.unwrap_or_default(),
                content_type: out.content_type,
                cache_control: out.cache_control,
                metadata: port_metadata(out.metadata),
            })),
            Err(err) => match self.sdk_error(err, "HeadObject", key) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| self.sdk_error(err, "DeleteObject", key))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.sdk_error(err, "ListObjectsV2", prefix))?;
            for object in page.contents.unwrap_or_default() {
                let Some(key) = object.key else { continue };
                objects.push(ObjectInfo {
                    key,
                    size: object
                        .size
                        .and_then(|len| u64::try_from(len).ok())
                        .unwrap_or_default(),
                    etag: object.e_tag.unwrap_or_default(),
                    content_type: None,
                    cache_control: None,
                    metadata: BTreeMap::new(),
                });
            }
        }
        // S3 already lists in UTF-8 byte order; other services may not.
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}
