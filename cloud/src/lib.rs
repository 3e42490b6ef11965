//! Ports shared by the origin and the worker: where objects are stored, how work is queued, how
//! S3 announces new objects, and how AWS clients are configured. Each port has two
//! implementations, one for AWS and one embedded for `spherecast up`, behind one trait.
#![forbid(unsafe_code)]

pub mod aws;
pub mod event;
pub mod queue;
pub mod store;

pub use event::{EventError, EventRecord, S3Event, object_created_event};
pub use queue::{EmbeddedQueue, Message, Queue, QueueDepth, QueueError, QueueSettings, SqsQueue};
pub use store::{LocalStore, ObjectInfo, ObjectStore, PutOptions, S3Store, StoreError};
