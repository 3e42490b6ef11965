//! The task that empties the spool into the ingress bucket.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use cloud::{ObjectInfo, ObjectStore, PutOptions, Queue, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Spool;
use crate::metrics::Metrics;

/// Content type of every uploaded recording.
const CONTENT_TYPE: &str = "video/x-flv";

/// Uploads every recording in the spool as `prefix + file name`, then (in local mode, with a
/// `queue`) sends the S3 `ObjectCreated:Put` event S3 would have sent, and only then removes
/// the file from the spool.
///
/// Failures never drop a recording. While the store (or queue) is unreachable the current
/// file is retried with exponential backoff (`min_backoff` doubling up to `max_backoff`, with
/// jitter, without limit). An error retrying cannot fix by itself (access denied, invalid key)
/// is logged at error level and the file is set aside for `max_backoff` while the others
/// go ahead, then tried again, for as long as it takes.
#[derive(Debug)]
pub struct Uploader {
    pub spool: Spool,
    pub store: Arc<dyn ObjectStore>,
    /// The queue that gets S3 events in local mode; `None` on AWS, where S3 sends them.
    pub queue: Option<Arc<dyn Queue>>,
    /// Prepended to each file name to make the object key (e.g. `recordings/`).
    pub prefix: String,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub metrics: Metrics,
}

/// How far a file got; a file set aside resumes where it stopped (until a restart, which
/// starts over: a repeated upload writes the same object again).
#[derive(Debug, Clone)]
enum Stage {
    Store,
    Announce(ObjectInfo),
    Remove(ObjectInfo),
}

#[derive(Debug)]
enum Outcome {
    /// Uploaded, announced and removed from the spool.
    Done,
    /// The file left the spool by other means.
    Gone,
    /// Refused; try again later from this stage.
    SetAside(Stage),
    Stopped,
}

/// Why one attempt to store a file failed.
#[derive(Debug)]
enum PutFailure {
    /// The spool file is gone.
    Gone,
    Store(StoreError),
}

impl fmt::Display for PutFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutFailure::Gone => f.write_str("the file is no longer in the spool"),
            PutFailure::Store(e) => e.fmt(f),
        }
    }
}

impl Uploader {
    /// Uploads what is already in the spool (left by an earlier run), then each submission as
    /// it comes, until `shutdown`. Returns promptly on shutdown, even mid-backoff or
    /// mid-upload; whatever was not finished stays in the spool for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut set_aside: HashMap<PathBuf, (Instant, Stage)> = HashMap::new();
        while !shutdown.is_cancelled() {
            let pending = match self.spool.list() {
                Ok(pending) => pending,
                Err(e) => {
                    error!(dir = %self.spool.dir().display(), error = %e, "Cannot list the upload spool; trying again later.");
                    if self
                        .pause(&shutdown, Some(Instant::now() + self.max_backoff))
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            self.metrics.upload_spool_depth.set(gauge(pending.len()));
            set_aside.retain(|path, _| pending.contains(path));
            let now = Instant::now();
            let ready: Vec<PathBuf> = pending
                .into_iter()
                .filter(|p| set_aside.get(p).is_none_or(|(until, _)| *until <= now))
                .collect();
            if ready.is_empty() {
                let next = set_aside.values().map(|(until, _)| *until).min();
                if self.pause(&shutdown, next).await {
                    return;
                }
                continue;
            }
            for path in ready {
                let stage = set_aside
                    .remove(&path)
                    .map_or(Stage::Store, |(_, stage)| stage);
                match self.upload(&path, stage, &shutdown).await {
                    Outcome::Done | Outcome::Gone => {}
                    Outcome::SetAside(stage) => {
                        set_aside.insert(path, (Instant::now() + self.max_backoff, stage));
                    }
                    Outcome::Stopped => return,
                }
            }
        }
    }

    /// Waits for a submission, for `until`, or for shutdown; true on shutdown.
    async fn pause(&self, shutdown: &CancellationToken, until: Option<Instant>) -> bool {
        let timer = async {
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => true,
            () = self.spool.submitted() => false,
            () = timer => false,
        }
    }

    async fn upload(&self, path: &Path, stage: Stage, shutdown: &CancellationToken) -> Outcome {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let key = format!("{}{name}", self.prefix);
        let (info, announced) = match stage {
            Stage::Store => match self.store_file(&key, path, shutdown).await {
                Ok(info) => (info, false),
                Err(outcome) => return outcome,
            },
            Stage::Announce(info) => (info, false),
            Stage::Remove(info) => (info, true),
        };
        if !announced && let Err(outcome) = self.announce(&key, &info, shutdown).await {
            return outcome;
        }
        self.remove(&key, path, &info).await
    }

    async fn store_file(
        &self,
        key: &str,
        path: &Path,
        shutdown: &CancellationToken,
    ) -> Result<ObjectInfo, Outcome> {
        let opts = PutOptions {
            content_type: Some(CONTENT_TYPE.to_owned()),
            ..PutOptions::default()
        };
        let attempt = || async {
            if let Ok(false) = tokio::fs::try_exists(path).await {
                return Err(PutFailure::Gone);
            }
            self.store
                .put_file(key, path, &opts)
                .await
                .map_err(PutFailure::Store)
        };
        let transient = |e: &PutFailure| matches!(e, PutFailure::Store(e) if e.is_transient());
        match self
            .persist(key, "Upload", attempt, transient, shutdown)
            .await
        {
            None => Err(Outcome::Stopped),
            Some(Ok(info)) => Ok(info),
            Some(Err(PutFailure::Gone)) => {
                warn!(file = %path.display(), "A recording left the upload spool before it was uploaded.");
                Err(Outcome::Gone)
            }
            Some(Err(PutFailure::Store(e))) => {
                self.metrics.uploads_failed.inc();
                error!(
                    key = %key, error = %e, retry_in = ?self.max_backoff,
                    "The object store refused the recording; it stays in the spool and is tried again later. Check the bucket, the credentials and the key prefix."
                );
                Err(Outcome::SetAside(Stage::Store))
            }
        }
    }

    /// Sends the S3 event for a stored object (local mode only).
    async fn announce(
        &self,
        key: &str,
        info: &ObjectInfo,
        shutdown: &CancellationToken,
    ) -> Result<(), Outcome> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let body = cloud::object_created_event(self.store.bucket(), key, info.size, &info.etag);
        let attempt = || queue.send(&body);
        match self
            .persist(
                key,
                "Sending the upload event",
                attempt,
                cloud::QueueError::is_transient,
                shutdown,
            )
            .await
        {
            None => Err(Outcome::Stopped),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                self.metrics.uploads_failed.inc();
                error!(
                    key = %key, error = %e, retry_in = ?self.max_backoff,
                    "The queue refused the event for an uploaded recording; the recording stays in the spool and the event is tried again later. Check the queue folder or settings."
                );
                Err(Outcome::SetAside(Stage::Announce(info.clone())))
            }
        }
    }

    async fn remove(&self, key: &str, path: &Path, info: &ObjectInfo) -> Outcome {
        match tokio::fs::remove_file(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                error!(
                    file = %path.display(), error = %e,
                    "An uploaded recording cannot be removed from the spool; trying again later. Check the folder's permissions."
                );
                return Outcome::SetAside(Stage::Remove(info.clone()));
            }
        }
        self.metrics.recordings_uploaded.inc();
        self.metrics.upload_spool_depth.dec();
        info!(key = %key, bytes = info.size, "Recording uploaded.");
        Outcome::Done
    }

    /// Runs `op` until it succeeds, fails with an error `transient` says retrying will not
    /// fix, or `shutdown` (`None`). Each transient failure is counted, logged and followed by
    /// a backoff sleep that shutdown cuts short.
    async fn persist<T, E, Fut>(
        &self,
        key: &str,
        what: &'static str,
        op: impl FnMut() -> Fut,
        transient: impl FnMut(&E) -> bool,
        shutdown: &CancellationToken,
    ) -> Option<Result<T, E>>
    where
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff.max(self.min_backoff))
            .with_jitter()
            .without_max_times();
        let retrying = op
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(transient)
            .notify(|e: &E, wait: Duration| {
                self.metrics.uploads_failed.inc();
                if let Ok(pending) = self.spool.list() {
                    self.metrics.upload_spool_depth.set(gauge(pending.len()));
                }
                warn!(key = %key, error = %e, retry_in = ?wait, "{what} failed; retrying.");
            });
        tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            result = retrying => Some(result),
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
