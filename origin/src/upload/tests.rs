//! The uploader against a local bucket and the embedded queue, with stores and queues that
//! fail on demand.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cloud::{
    EmbeddedQueue, LocalStore, Message, ObjectInfo, ObjectStore, PutOptions, Queue, QueueDepth,
    QueueError, QueueSettings, S3Event, StoreError,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Spool, Uploader};
use crate::metrics::Metrics;
use crate::record::FinishedRecording;

const PREFIX: &str = "recordings/";

/// A local bucket that can be made unreachable, or made to refuse some keys.
#[derive(Debug)]
struct FlakyStore {
    inner: LocalStore,
    down: AtomicBool,
    refused: Mutex<HashSet<String>>,
    puts: AtomicU32,
}

#[async_trait]
impl ObjectStore for FlakyStore {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            let message = "connection refused".to_owned();
            return Err(StoreError::Unreachable {
                op: "PutObject",
                key: key.to_owned(),
                message,
            });
        }
        if self.refused.lock().unwrap().contains(key) {
            let message = "Access Denied".to_owned();
            return Err(StoreError::Rejected {
                op: "PutObject",
                key: key.to_owned(),
                message,
            });
        }
        self.inner.put_file(key, path, opts).await
    }
    async fn put_bytes(
        &self,
        key: &str,
        body: bytes::Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        self.inner.put_bytes(key, body, opts).await
    }
    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<ObjectInfo, StoreError> {
        self.inner.get_to_file(key, dest).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
}

/// The embedded queue, but unreachable while `down`.
#[derive(Debug)]
struct FlakyQueue {
    inner: EmbeddedQueue,
    down: AtomicBool,
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Unreachable {
                op: "SendMessage",
                message: "connection refused".to_owned(),
            });
        }
        self.inner.send(body).await
    }
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Message>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.inner.depth().await
    }
    async fn dead_letter(
        &self,
        receipt: &str,
        body: &str,
        reason: &str,
    ) -> Result<bool, QueueError> {
        Queue::dead_letter(&self.inner, receipt, body, reason).await
    }
}

/// A data folder with recordings, a spool, a bucket and a queue, and an uploader over them.
struct Rig {
    data: tempfile::TempDir,
    spool: Spool,
    store: Arc<FlakyStore>,
    queue: Arc<FlakyQueue>,
    metrics: Metrics,
}

impl Rig {
    fn new() -> Rig {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join("recordings")).unwrap();
        let spool = Spool::open(&data.path().join("spool")).unwrap();
        let store = Arc::new(FlakyStore {
            inner: LocalStore::new(data.path().join("bucket"), "ingress"),
            down: AtomicBool::new(false),
            refused: Mutex::new(HashSet::new()),
            puts: AtomicU32::new(0),
        });
        let settings = QueueSettings {
            visibility_timeout: Duration::from_secs(60),
            max_receive_count: 3,
        };
        let queue = Arc::new(FlakyQueue {
            inner: EmbeddedQueue::open(data.path().join("queue"), settings).unwrap(),
            down: AtomicBool::new(false),
        });
        Rig {
            data,
            spool,
            store,
            queue,
            metrics: Metrics::default(),
        }
    }

    /// Starts the uploader with backoff from `min` to `max`.
    fn start(&self, min: Duration, max: Duration) -> (CancellationToken, JoinHandle<()>) {
        let uploader = Uploader {
            spool: self.spool.clone(),
            store: self.store.clone(),
            queue: Some(self.queue.clone()),
            prefix: PREFIX.to_owned(),
            min_backoff: min,
            max_backoff: max,
            metrics: self.metrics.clone(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(uploader.run(shutdown.clone()));
        (shutdown, task)
    }

    /// A finished recording of `len` distinctive bytes in the recording folder.
    fn recording(&self, name: &str, len: usize) -> (FinishedRecording, Vec<u8>) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i % 251) as u8 ^ name.len() as u8)
            .collect();
        let path = self.data.path().join("recordings").join(name);
        std::fs::write(&path, &bytes).unwrap();
        let rec = FinishedRecording {
            path,
            file_name: name.to_owned(),
            stream: "cam".to_owned(),
            duration: Duration::from_secs(4),
            size: len as u64,
        };
        (rec, bytes)
    }

    fn stored(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data.path().join("bucket").join(PREFIX).join(name)).ok()
    }

    fn spooled(&self, name: &str) -> bool {
        self.spool.dir().join(name).exists()
    }

    /// Every event on the queue, in order: (key, size, etag).
    async fn events(&self) -> Vec<(String, u64, String)> {
        let mut events = Vec::new();
        loop {
            let batch = self
                .queue
                .receive(10, Duration::from_millis(50))
                .await
                .unwrap();
            if batch.is_empty() {
                return events;
            }
            for message in batch {
                let S3Event::Records(records) = S3Event::decode(&message.body).unwrap() else {
                    panic!("not an object event: {}", message.body)
                };
                for r in records {
                    assert_eq!(r.bucket, "ingress");
                    assert_eq!(r.event_name, "ObjectCreated:Put");
                    events.push((r.key, r.size, r.etag));
                }
            }
        }
    }
}

/// Polls `condition` every 10 ms for up to 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

const FAST: Duration = Duration::from_millis(10);

#[tokio::test]
async fn a_submitted_recording_is_stored_byte_exact_announced_and_leaves_the_spool() {
    let rig = Rig::new();
    let (shutdown, task) = rig.start(FAST, Duration::from_millis(100));
    let (rec, bytes) = rig.recording("cam-1700000000.flv", 300_000);

    rig.spool.submit(&rec).unwrap();
    eventually("the spool is empty", || rig.spool.pending().is_empty()).await;

    assert_eq!(
        rig.stored("cam-1700000000.flv").as_deref(),
        Some(&bytes[..])
    );
    assert!(
        !rec.path.exists(),
        "the recording left the recording folder"
    );
    let info = rig
        .store
        .head("recordings/cam-1700000000.flv")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.content_type.as_deref(), Some("video/x-flv"));
    let events = rig.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "recordings/cam-1700000000.flv");
    assert_eq!(events[0].1, 300_000);
    assert_eq!(events[0].2.trim_matches('"'), info.etag.trim_matches('"'));
    assert_eq!(rig.metrics.recordings_uploaded.get(), 1);
    assert_eq!(rig.metrics.uploads_failed.get(), 0);
    assert_eq!(rig.metrics.upload_spool_depth.get(), 0);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn recordings_left_in_the_spool_are_uploaded_at_start_oldest_first() {
    let rig = Rig::new();
    // An earlier run spooled these and stopped before uploading them.
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    for (name, finished) in [
        ("a-1700000300.flv", 1_700_000_400),
        ("b-1700000100.flv", 1_700_000_200),
    ] {
        let (rec, _) = rig.recording(name, 1000);
        rig.spool.submit(&rec).unwrap();
        let spooled = std::fs::File::options()
            .write(true)
            .open(rig.spool.dir().join(name))
            .unwrap();
        spooled.set_modified(at(finished)).unwrap();
    }

    let (shutdown, task) = rig.start(FAST, Duration::from_millis(100));
    eventually("the spool is empty", || rig.spool.pending().is_empty()).await;

    let keys: Vec<String> = rig
        .events()
        .await
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    assert_eq!(
        keys,
        ["recordings/b-1700000100.flv", "recordings/a-1700000300.flv"]
    );
    assert!(rig.stored("a-1700000300.flv").is_some() && rig.stored("b-1700000100.flv").is_some());
    assert_eq!(rig.metrics.recordings_uploaded.get(), 2);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_store_keeps_the_recording_spooled_until_it_comes_back() {
    let rig = Rig::new();
    rig.store.down.store(true, Ordering::SeqCst);
    let (shutdown, task) = rig.start(FAST, Duration::from_millis(40));
    let (rec, bytes) = rig.recording("cam-1700000000.flv", 5000);

    rig.spool.submit(&rec).unwrap();
    eventually("three uploads failed", || {
        rig.metrics.uploads_failed.get() >= 3
    })
    .await;

    assert!(rig.spooled("cam-1700000000.flv"));
    assert_eq!(rig.stored("cam-1700000000.flv"), None);
    assert_eq!(rig.metrics.upload_spool_depth.get(), 1);
    assert_eq!(rig.metrics.recordings_uploaded.get(), 0);

    rig.store.down.store(false, Ordering::SeqCst);
    eventually("the spool is empty", || rig.spool.pending().is_empty()).await;

    assert_eq!(
        rig.stored("cam-1700000000.flv").as_deref(),
        Some(&bytes[..])
    );
    assert_eq!(rig.events().await.len(), 1);
    assert_eq!(rig.metrics.recordings_uploaded.get(), 1);
    assert_eq!(rig.metrics.upload_spool_depth.get(), 0);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_refused_recording_is_set_aside_and_retried_without_blocking_the_others() {
    let rig = Rig::new();
    rig.store
        .refused
        .lock()
        .unwrap()
        .insert("recordings/a-1700000000.flv".to_owned());
    let (shutdown, task) = rig.start(FAST, Duration::from_millis(1500));
    let (refused, _) = rig.recording("a-1700000000.flv", 1000);
    let (fine, _) = rig.recording("b-1700000000.flv", 1000);

    rig.spool.submit(&refused).unwrap();
    rig.spool.submit(&fine).unwrap();
    eventually("the other recording is uploaded", || {
        rig.stored("b-1700000000.flv").is_some()
    })
    .await;
    eventually("it left the spool", || !rig.spooled("b-1700000000.flv")).await;

    assert!(
        rig.spooled("a-1700000000.flv"),
        "the refused recording was dropped"
    );
    assert!(rig.metrics.uploads_failed.get() >= 1);
    let puts = rig.store.puts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.store.puts.load(Ordering::SeqCst),
        puts,
        "a refusal is not retried at once"
    );

    rig.store.refused.lock().unwrap().clear();
    eventually("the refused recording is uploaded later", || {
        rig.spool.pending().is_empty()
    })
    .await;
    assert!(rig.stored("a-1700000000.flv").is_some());
    assert_eq!(rig.metrics.recordings_uploaded.get(), 2);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_recording_stays_spooled_until_its_event_is_on_the_queue() {
    let rig = Rig::new();
    rig.queue.down.store(true, Ordering::SeqCst);
    let (shutdown, task) = rig.start(FAST, Duration::from_millis(40));
    let (rec, _) = rig.recording("cam-1700000000.flv", 1000);

    rig.spool.submit(&rec).unwrap();
    eventually("the object is stored", || {
        rig.stored("cam-1700000000.flv").is_some()
    })
    .await;
    eventually("sending the event failed twice", || {
        rig.metrics.uploads_failed.get() >= 2
    })
    .await;

    assert!(
        rig.spooled("cam-1700000000.flv"),
        "removed before the event was sent"
    );
    assert_eq!(rig.metrics.recordings_uploaded.get(), 0);

    rig.queue.down.store(false, Ordering::SeqCst);
    eventually("the spool is empty", || rig.spool.pending().is_empty()).await;
    assert_eq!(rig.events().await.len(), 1);
    assert_eq!(
        rig.store.puts.load(Ordering::SeqCst),
        1,
        "the object was stored once"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_during_backoff_returns_promptly_and_keeps_the_file() {
    let rig = Rig::new();
    rig.store.down.store(true, Ordering::SeqCst);
    let (shutdown, task) = rig.start(Duration::from_secs(30), Duration::from_secs(60));
    let (rec, _) = rig.recording("cam-1700000000.flv", 1000);
    rig.spool.submit(&rec).unwrap();
    eventually("an upload failed", || rig.metrics.uploads_failed.get() >= 1).await;

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(1), task).await;

    assert!(stopped.is_ok(), "the uploader did not stop within a second");
    assert!(rig.spooled("cam-1700000000.flv"));
    assert_eq!(rig.store.puts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_queue_the_recording_is_only_stored() {
    let rig = Rig::new();
    let uploader = Uploader {
        spool: rig.spool.clone(),
        store: rig.store.clone(),
        queue: None,
        prefix: String::new(),
        min_backoff: FAST,
        max_backoff: FAST,
        metrics: rig.metrics.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(uploader.run(shutdown.clone()));
    let (rec, bytes) = rig.recording("cam-1700000000.flv", 1000);

    rig.spool.submit(&rec).unwrap();
    eventually("the spool is empty", || rig.spool.pending().is_empty()).await;

    let stored = std::fs::read(rig.data.path().join("bucket/cam-1700000000.flv")).unwrap();
    assert_eq!(stored, bytes);
    assert!(rig.events().await.is_empty());
    shutdown.cancel();
    task.await.unwrap();
}

#[test]
fn the_spool_folder_must_be_creatable() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file"), b"x").unwrap();
    let err = Spool::open(&data.path().join("file/spool")).unwrap_err();
    assert!(err.to_string().contains("file/spool"), "{err}");
}
