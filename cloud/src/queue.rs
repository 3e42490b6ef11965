//! The queue port: SQS (through aws-sdk-sqs) and an embedded durable queue with SQS semantics.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

mod embedded;
mod sqs;

pub use embedded::EmbeddedQueue;
pub use sqs::SqsQueue;

/// SQS's longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's largest receive batch.
pub const MAX_BATCH: u32 = 10;
/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Largest message body both implementations accept (SQS's long-standing 256 KiB limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Both queues refuse what SQS refuses: a body over [`MAX_BODY_BYTES`].
pub(crate) fn check_body_size(body: &str) -> Result<(), QueueError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(QueueError::Rejected {
            op: "SendMessage",
            message: format!(
                "body of {} bytes is larger than the {MAX_BODY_BYTES} bytes SQS accepts",
                body.len()
            ),
        });
    }
    Ok(())
}

/// A received message. `receipt` identifies this receive for delete and visibility changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// 1 on the first receive.
    pub receive_count: u32,
}

/// Approximate counts, as SQS GetQueueAttributes reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet (SQS `DelaySeconds`; the embedded queue has
    /// no delayed sends, so 0 there).
    pub delayed: u64,
}

/// How an embedded queue behaves (for SQS these are attributes of the queue itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a received message stays invisible unless its visibility is changed
    /// (at most 12 hours).
    pub visibility_timeout: Duration,
    /// A message received this many times goes to the dead-letter queue instead of being
    /// received again (SQS's `maxReceiveCount`, at least 1; use 3 or more).
    pub max_receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// `op` is the SQS operation (`SendMessage`, `ReceiveMessage`...).
    #[error("queue unreachable during {op}: {message}")]
    Unreachable { op: &'static str, message: String },
    #[error("receipt handle {0:?} is not valid (message deleted or received again)")]
    InvalidReceipt(String),
    #[error("queue storage {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("queue refused {op}: {message}")]
    Rejected { op: &'static str, message: String },
}

impl QueueError {
    /// True when retrying later may succeed (network, throttling, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unreachable { .. })
    }
}

/// A queue with SQS semantics: at-least-once delivery, a visibility timeout per receive, a
/// receive count, and a dead-letter queue after too many receives.
#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// Enqueues a message and returns its id.
    async fn send(&self, body: &str) -> Result<String, QueueError>;
    /// Long-polls for up to `max` messages (1..=10), waiting at most `wait` (<= 20 s).
    /// Returns as soon as at least one message is available; an empty batch after `wait`.
    /// Values outside the ranges are clamped.
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Message>, QueueError>;
    /// Deletes the message received with `receipt`. See each implementation for receipts
    /// that are no longer the latest.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Sets how long the message stays invisible from now on (clamped to 12 hours).
    /// Zero makes the message visible at once (this counts as a receive when it is taken again).
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
    /// Visible and in-flight message counts.
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Moves the message received with `receipt` to the dead-letter queue now, without
    /// waiting for its remaining receives (for messages that can never succeed). Returns
    /// false, leaving the message untouched, when the queue has no dead-letter queue.
    ///
    /// `body` is the body the message was received with and `reason` says why it can never
    /// succeed, for whoever inspects the dead-letter queue. See each implementation for what
    /// is kept of the two.
    async fn dead_letter(
        &self,
        receipt: &str,
        body: &str,
        reason: &str,
    ) -> Result<bool, QueueError>;
}
