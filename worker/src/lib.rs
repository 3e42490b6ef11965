//! The VOD worker: takes S3 events off the queue, transcodes each recording with GStreamer into
//! an ABR HLS ladder and uploads it to the egress bucket, under at-least-once delivery, crashes,
//! spot interruptions and poison input.

pub mod config;
pub mod ladder;
pub mod transcode;

pub use config::WorkerConfig;
