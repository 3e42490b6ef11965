//! The queue port: SQS (through aws-sdk-sqs) and an embedded durable queue with SQS semantics.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    /// A message received more often than this goes to the dead-letter queue instead.
    pub max_receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unreachable while {op}: {message}")]
    Unreachable { op: &'static str, message: String },
    #[error("receipt handle {0:?} is not valid (message deleted or received again)")]
    InvalidReceipt(String),
    #[error("queue storage {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("queue refused {op}: {message}")]
    Rejected { op: &'static str, message: String },
}

#[async_trait]
pub trait Queue: Send + Sync + Debug {
    async fn send(&self, body: &str) -> Result<String, QueueError>;
    /// Long-polls for up to `max` messages (1..=10), waiting at most `wait` (<= 20 s).
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Message>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Zero makes the message visible at once (this counts as a receive when it is taken again).
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
}

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    pub(crate) client: aws_sdk_sqs::Client,
    pub(crate) url: String,
}

/// A durable queue in a local directory with SQS semantics, and its dead-letter queue.
#[derive(Debug)]
pub struct EmbeddedQueue {
    _private: (),
}
