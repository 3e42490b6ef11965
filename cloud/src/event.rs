//! S3 event notifications: decoding real S3 and moto events, encoding the same JSON locally.

/// One `Records[]` entry of an S3 event, key already URL-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_name: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Event {
    Records(Vec<EventRecord>),
    /// `s3:TestEvent`, sent when a notification is configured.
    Test,
}
