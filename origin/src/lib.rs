//! The live origin: RTMP ingest, live HLS packaging and serving, recording every session, and
//! uploading each finished recording to the ingress bucket.
#![forbid(unsafe_code)]
