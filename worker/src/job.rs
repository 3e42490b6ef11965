//! One job: a recording named by an S3 event record becomes a published ladder. Download
//! (streamed to disk), probe, transcode, upload, clean up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cloud::{EventRecord, ObjectStore, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::claim::{self, Holder};
use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use crate::output;
use crate::status::Status;
use crate::transcode::{self, Progress, TranscodeError};

/// Everything a job needs, shared by all jobs of a worker.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub config: Arc<WorkerConfig>,
    pub ingress: Arc<dyn ObjectStore>,
    pub egress: Arc<dyn ObjectStore>,
    pub work_dir: PathBuf,
    pub metrics: Metrics,
    pub status: Status,
}

/// How a job ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    Published {
        stem: String,
        media: Duration,
        wall: Duration,
    },
    /// The ladder already exists for this source eTag.
    AlreadyPublished { stem: String },
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Cannot succeed however often it is tried: the message goes to the dead-letter queue.
    #[error("{0}")]
    Permanent(String),
    /// May succeed later (store unreachable, disk full, pipeline trouble).
    #[error("{0}")]
    Transient(String),
    #[error("job cancelled")]
    Cancelled,
}

/// How often a job waiting for another job's ladder looks again (at most; `heartbeat_secs`
/// when shorter).
const CLAIM_POLL: Duration = Duration::from_secs(2);

impl From<TranscodeError> for JobError {
    fn from(err: TranscodeError) -> Self {
        match err {
            TranscodeError::Cancelled => JobError::Cancelled,
            err if err.is_permanent() => JobError::Permanent(err.to_string()),
            err => JobError::Transient(err.to_string()),
        }
    }
}

fn store_error(err: StoreError, bucket: &str) -> JobError {
    match err {
        StoreError::NotFound { key, .. } => JobError::Permanent(format!(
            "object {key:?} no longer exists in bucket {bucket:?} (deleted after the event was sent)"
        )),
        StoreError::InvalidKey { key, reason } => {
            JobError::Permanent(format!("object key {key:?} cannot be used: {reason}"))
        }
        err => JobError::Transient(err.to_string()),
    }
}

/// Runs the job for `record`. `job_id` names the work folder and the status entry.
pub async fn run(
    ctx: &JobContext,
    job_id: &str,
    record: &EventRecord,
    cancel: CancellationToken,
) -> Result<Done, JobError> {
    let bucket = ctx.ingress.bucket().to_owned();
    if record.bucket != bucket {
        return Err(JobError::Permanent(format!(
            "event names bucket {:?}, but this worker reads the ingress bucket {bucket:?}",
            record.bucket
        )));
    }
    let stem = output::stem_of(&record.key, &ctx.config.suffixes);
    if let Some(done) = wait_for_claim(ctx, job_id, record, &stem, &cancel).await? {
        return Ok(done);
    }
    claim::write(ctx.egress.as_ref(), &stem, job_id, ctx.config.visibility())
        .await
        .map_err(|e| store_error(e, ctx.egress.bucket()))?;
    let stop_renewal = CancellationToken::new();
    let renewal = tokio::spawn(renew_claim(
        ctx.egress.clone(),
        stem.clone(),
        job_id.to_owned(),
        ctx.config.visibility(),
        ctx.config.heartbeat(),
        stop_renewal.clone(),
    ));
    let dir = ctx.work_dir.join(job_id);
    let result = transcode_and_publish(ctx, job_id, record, &stem, &dir, cancel).await;
    // No renewal may land after the release.
    stop_renewal.cancel();
    let _ = renewal.await;
    if let Err(err) = claim::release(ctx.egress.as_ref(), &stem, job_id).await {
        warn!(%stem, %err, "Cannot release the job's claim; it lapses by itself.");
    }
    if let Err(err) = tokio::fs::remove_dir_all(&dir).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), %err, "Cannot remove a job's work folder.");
    }
    result
}

async fn transcode_and_publish(
    ctx: &JobContext,
    job_id: &str,
    record: &EventRecord,
    stem: &str,
    dir: &std::path::Path,
    cancel: CancellationToken,
) -> Result<Done, JobError> {
    let started = Instant::now();
    let extension = std::path::Path::new(&record.key)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 8 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("bin")
        .to_ascii_lowercase();
    let source_path = dir.join(format!("source.{extension}"));
    let out_dir = dir.join("out");
    tokio::fs::create_dir_all(&out_dir).await.map_err(|err| {
        JobError::Transient(format!("cannot create {}: {err}", out_dir.display()))
    })?;

    let downloaded = tokio::select! {
        got = ctx.ingress.get_to_file(&record.key, &source_path) => {
            got.map_err(|e| store_error(e, ctx.ingress.bucket()))?
        }
        () = cancel.cancelled() => return Err(JobError::Cancelled),
    };
    if downloaded.size == 0 {
        return Err(JobError::Permanent(format!(
            "object {:?} is empty (0 bytes): nothing to transcode",
            record.key
        )));
    }
    // The object may have been replaced since the event: publish under what was read.
    let source_etag = if downloaded.etag.is_empty() {
        record.etag.clone()
    } else {
        output::bare_etag(&downloaded.etag).to_owned()
    };
    info!(key = %record.key, bytes = downloaded.size, "Downloaded the recording.");

    let flag = Arc::new(AtomicBool::new(false));
    let watcher = {
        let flag = flag.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            flag.store(true, Ordering::Relaxed);
        })
    };
    let config = ctx.config.clone();
    let status = ctx.status.clone();
    let job = job_id.to_owned();
    let key = record.key.clone();
    let input = source_path.clone();
    let out = out_dir.clone();
    let transcoded = tokio::task::spawn_blocking(move || {
        let mut on_progress = |p: Progress| {
            status.progress(&job, p);
            let percent = p.percent().map(|v| format!("{v:.0}%"));
            let eta = p.eta().map(|d| format!("{}s", d.as_secs()));
            info!(
                %key,
                percent = percent.as_deref().unwrap_or("?"),
                speed = format!("{:.2}x", p.speed()),
                eta = eta.as_deref().unwrap_or("?"),
                "Transcoding."
            );
        };
        transcode::transcode_file(&config, &key, &input, &out, &flag, &mut on_progress)
    })
    .await;
    watcher.abort();
    let ladder = match transcoded {
        Ok(result) => result?,
        Err(join) => {
            return Err(JobError::Transient(format!(
                "the transcode thread failed: {join}"
            )));
        }
    };
    if cancel.is_cancelled() {
        return Err(JobError::Cancelled);
    }
    let media = ladder
        .renditions
        .iter()
        .map(|r| r.facts.duration)
        .max()
        .unwrap_or_default();
    // A duplicate of this event taken at the same moment also claimed the stem: only the job
    // named by the last claim publishes, so that one encode goes out and not a mix of two.
    let holder = claim::holder(ctx.egress.as_ref(), stem, job_id)
        .await
        .map_err(|e| store_error(e, ctx.egress.bucket()))?;
    if holder != Holder::Us {
        if let Some(done) = wait_for_claim(ctx, job_id, record, stem, &cancel).await? {
            return Ok(done);
        }
        claim::write(ctx.egress.as_ref(), stem, job_id, ctx.config.visibility())
            .await
            .map_err(|e| store_error(e, ctx.egress.bucket()))?;
    }
    let publish = output::publish(ctx.egress.clone(), stem, &out_dir, &ladder, &source_etag);
    tokio::select! {
        published = publish => published.map_err(|e| store_error(e, ctx.egress.bucket()))?,
        () = cancel.cancelled() => return Err(JobError::Cancelled),
    }
    Ok(Done::Published {
        stem: stem.to_owned(),
        media,
        wall: started.elapsed(),
    })
}

/// Waits while another job holds the claim on `stem` (see [`claim`]): `Some` once the ladder
/// for this source is published, `None` once nobody else holds the claim.
async fn wait_for_claim(
    ctx: &JobContext,
    job_id: &str,
    record: &EventRecord,
    stem: &str,
    cancel: &CancellationToken,
) -> Result<Option<Done>, JobError> {
    let egress = ctx.egress.as_ref();
    let mut waiting = false;
    loop {
        if output::already_published(egress, stem, &record.etag)
            .await
            .map_err(|e| store_error(e, egress.bucket()))?
        {
            return Ok(Some(Done::AlreadyPublished {
                stem: stem.to_owned(),
            }));
        }
        let holder = claim::holder(egress, stem, job_id)
            .await
            .map_err(|e| store_error(e, egress.bucket()))?;
        if holder != Holder::Other {
            return Ok(None);
        }
        if !waiting {
            info!(key = %record.key, prefix = %stem, "Another job is making this ladder; waiting for it.");
            waiting = true;
        }
        tokio::select! {
            () = tokio::time::sleep(ctx.config.heartbeat().min(CLAIM_POLL)) => {}
            () = cancel.cancelled() => return Err(JobError::Cancelled),
        }
    }
}

/// Keeps the job's claim from lapsing until `stop`: every `every`, the claim is valid for
/// `lease` from now. Ends early when another job holds it (the check before publishing sees
/// that).
async fn renew_claim(
    egress: Arc<dyn ObjectStore>,
    stem: String,
    job_id: String,
    lease: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let renewed = match claim::holder(egress.as_ref(), &stem, &job_id).await {
            Ok(Holder::Other) => return,
            Ok(_) => claim::write(egress.as_ref(), &stem, &job_id, lease).await,
            Err(err) => Err(err),
        };
        if let Err(err) = renewed {
            warn!(%stem, %err, "Cannot renew the job's claim.");
        }
    }
}
