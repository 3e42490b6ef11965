//! The queue consumer: long polls for as many messages as there are free job slots, runs a job
//! per wanted record while a heartbeat keeps the message invisible, and settles each message:
//! deleted once its outputs are published, released with a backoff after a failure,
//! dead-lettered when it can never succeed, handed back at once on an interruption.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud::queue::{MAX_VISIBILITY, MAX_WAIT};
use cloud::{EventRecord, Message, Queue, S3Event};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::job::{self, Done, JobContext, JobError};

/// The two ways a worker is asked to stop.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Cancel running jobs, hand their messages back, exit (spot interruption, SIGTERM).
    pub interrupt: CancellationToken,
    /// Take no more messages, finish the running jobs, exit (rebalance notice, idle limit).
    pub drain: CancellationToken,
}

impl Control {
    pub fn stopping(&self) -> bool {
        self.interrupt.is_cancelled() || self.drain.is_cancelled()
    }

    async fn stop_receiving(&self) {
        tokio::select! {
            () = self.interrupt.cancelled() => {}
            () = self.drain.cancelled() => {}
        }
    }
}

/// Consumes `queue` until `control` says stop and every job has ended.
pub async fn consume(ctx: Arc<JobContext>, queue: Arc<dyn Queue>, control: Control) {
    let slots = Arc::new(Semaphore::new(ctx.config.concurrency));
    let tasks = TaskTracker::new();
    let mut failures = 0u32;
    while !control.stopping() {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
            () = control.stop_receiving() => break,
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let wanted = u32::try_from(permits.len()).unwrap_or(u32::MAX).min(10);
        let received = tokio::select! {
            received = queue.receive(wanted, MAX_WAIT) => received,
            () = control.stop_receiving() => break,
        };
        match received {
            Ok(messages) => {
                failures = 0;
                for (message, permit) in messages.into_iter().zip(permits.drain(..)) {
                    let ctx = ctx.clone();
                    let queue = queue.clone();
                    let cancel = control.interrupt.child_token();
                    tasks.spawn(async move {
                        handle(&ctx, queue.as_ref(), message, cancel).await;
                        drop(permit);
                    });
                }
            }
            Err(err) => {
                failures += 1;
                let pause = Duration::from_secs(1 << failures.min(5)).min(Duration::from_secs(30));
                warn!(%err, retry_in = ?pause, "Cannot receive from the queue; retrying.");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = control.stop_receiving() => break,
                }
            }
        }
    }
    tasks.close();
    if !tasks.is_empty() {
        info!(jobs = tasks.len(), "Waiting for running jobs to end.");
    }
    tasks.wait().await;
}

/// Handles one message from receive to its settlement.
pub async fn handle(
    ctx: &JobContext,
    queue: &dyn Queue,
    message: Message,
    cancel: CancellationToken,
) {
    let received_at = Instant::now();
    let id = message.id.as_str();
    let records = match S3Event::decode(&message.body) {
        Ok(S3Event::Test) => {
            info!(message_id = id, "S3 test event; deleting it.");
            ctx.metrics.messages_ignored.inc();
            delete(queue, &message).await;
            return;
        }
        Ok(S3Event::Records(records)) => records,
        Err(err) => {
            let reason = format!("not an S3 event notification: {err}");
            warn!(message_id = id, %reason, "Unreadable message.");
            ctx.metrics.jobs_rejected.inc();
            dead_letter(ctx, queue, &message, &reason).await;
            return;
        }
    };
    let wanted: Vec<EventRecord> = records
        .into_iter()
        .filter(|r| {
            if !r.event_name.starts_with("ObjectCreated:") {
                info!(message_id = id, event = %r.event_name, key = %r.key, "Not an object-created event; ignoring it.");
                false
            } else if !ctx.config.wants(&r.key) {
                info!(message_id = id, key = %r.key, suffixes = ?ctx.config.suffixes, "Key has none of the configured suffixes; ignoring it.");
                false
            } else {
                true
            }
        })
        .collect();
    if wanted.is_empty() {
        ctx.metrics.messages_ignored.inc();
        delete(queue, &message).await;
        return;
    }

    let beat = CancellationToken::new();
    let heartbeat = heartbeat(
        queue,
        &message.receipt,
        ctx.config.visibility(),
        ctx.config.heartbeat(),
        received_at,
        beat.clone(),
    );
    let jobs = async {
        let outcome = run_records(ctx, &message, &wanted, cancel).await;
        beat.cancel();
        outcome
    };
    let ((), outcome) = tokio::join!(heartbeat, jobs);
    settle(ctx, queue, &message, outcome).await;
}

/// What became of a message's records.
#[derive(Debug, Default)]
struct Outcome {
    cancelled: bool,
    transient: Option<String>,
    permanent: Option<String>,
}

async fn run_records(
    ctx: &JobContext,
    message: &Message,
    records: &[EventRecord],
    cancel: CancellationToken,
) -> Outcome {
    let mut outcome = Outcome::default();
    for record in records {
        let job_id = format!("job-{}", uuid::Uuid::new_v4().simple());
        let key = record.key.as_str();
        ctx.status.start_job(&job_id, key, message.receive_count);
        ctx.metrics.jobs_started.inc();
        if let Some(at) = record.event_time {
            let waited = (time::OffsetDateTime::now_utc() - at).as_seconds_f64();
            ctx.metrics.queue_wait_seconds.observe(waited.max(0.0));
        }
        info!(%key, message_id = %message.id, receive_count = message.receive_count, "Job started.");
        let result = job::run(ctx, &job_id, record, cancel.clone()).await;
        ctx.status.end_job(&job_id);
        match result {
            Ok(Done::Published { stem, media, wall }) => {
                let speed = media.as_secs_f64() / wall.as_secs_f64().max(1e-3);
                ctx.metrics.jobs_succeeded.inc();
                ctx.metrics.job_seconds.observe(wall.as_secs_f64());
                ctx.metrics.realtime_factor.observe(speed);
                info!(%key, prefix = %stem, media_seconds = media.as_secs_f64(), wall_seconds = wall.as_secs_f64(), speed = format!("{speed:.2}x"), "Ladder published.");
            }
            Ok(Done::AlreadyPublished { stem }) => {
                ctx.metrics.jobs_skipped.inc();
                info!(%key, prefix = %stem, "Ladder already published for this source eTag; skipping.");
            }
            Err(JobError::Cancelled) => {
                outcome.cancelled = true;
                break;
            }
            Err(JobError::Permanent(reason)) => {
                ctx.metrics.jobs_rejected.inc();
                warn!(%key, %reason, "Job cannot succeed.");
                outcome.permanent = Some(format!("{key}: {reason}"));
            }
            Err(JobError::Transient(reason)) => {
                ctx.metrics.jobs_failed.inc();
                warn!(%key, %reason, receive_count = message.receive_count, "Job failed.");
                outcome.transient = Some(format!("{key}: {reason}"));
            }
        }
    }
    outcome
}

async fn settle(ctx: &JobContext, queue: &dyn Queue, message: &Message, outcome: Outcome) {
    if outcome.cancelled {
        ctx.metrics.jobs_released.inc();
        match queue
            .change_visibility(&message.receipt, Duration::ZERO)
            .await
        {
            Ok(()) => {
                info!(message_id = %message.id, "Job cancelled; message handed back to the queue.")
            }
            Err(err) => {
                warn!(message_id = %message.id, %err, "Job cancelled; the message comes back when its visibility ends.")
            }
        }
    } else if let Some(reason) = outcome.transient {
        let delay = ctx.config.retry_delay(message.receive_count);
        match queue.change_visibility(&message.receipt, delay).await {
            Ok(()) => {
                info!(message_id = %message.id, %reason, retry_in = ?delay, receive_count = message.receive_count, "Message released for a later retry.")
            }
            Err(err) => {
                warn!(message_id = %message.id, %err, "Cannot delay the retry; the message comes back when its visibility ends.")
            }
        }
    } else if let Some(reason) = outcome.permanent {
        dead_letter(ctx, queue, message, &reason).await;
    } else {
        delete(queue, message).await;
    }
}

async fn delete(queue: &dyn Queue, message: &Message) {
    if let Err(err) = queue.delete(&message.receipt).await {
        warn!(message_id = %message.id, %err, "Cannot delete the message; it will be received again (the job is idempotent).");
    }
}

/// Moves a message that can never succeed to the dead-letter queue now; without one, it is
/// released for the longest retry delay so that it is not lost.
async fn dead_letter(ctx: &JobContext, queue: &dyn Queue, message: &Message, reason: &str) {
    match queue
        .dead_letter(&message.receipt, &message.body, reason)
        .await
    {
        Ok(true) => {
            warn!(message_id = %message.id, %reason, "Message sent to the dead-letter queue.")
        }
        Ok(false) => {
            let delay = Duration::from_secs(ctx.config.retry_max_secs);
            warn!(message_id = %message.id, %reason, retry_in = ?delay, "The queue has no dead-letter queue; releasing the message for the longest retry delay.");
            if let Err(err) = queue.change_visibility(&message.receipt, delay).await {
                warn!(message_id = %message.id, %err, "Cannot release the message.");
            }
        }
        Err(err) => {
            warn!(message_id = %message.id, %err, "Cannot dead-letter the message; it will be received again.")
        }
    }
}

/// Keeps the message invisible while its job runs: every `every`, visibility becomes
/// `visibility` from now, never past SQS's 12-hour limit counted from the receive.
async fn heartbeat(
    queue: &dyn Queue,
    receipt: &str,
    visibility: Duration,
    every: Duration,
    received_at: Instant,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let left = MAX_VISIBILITY.saturating_sub(received_at.elapsed());
        let next = visibility.min(left);
        if next < Duration::from_secs(1) {
            warn!(
                "The message has been invisible for SQS's 12-hour maximum; it may now be received by another worker."
            );
            return;
        }
        if let Err(err) = queue.change_visibility(receipt, next).await {
            warn!(%err, "Visibility heartbeat failed.");
        }
    }
}
