//! The registry of live streams and what HTTP serves for each: the master playlist, the media
//! playlist of the source rendition and its segments, all in memory.
//!
//! Invariants: at most one publisher per name; a segment stays downloadable for one more
//! window after it leaves the playlist; an ended stream keeps its final playlist (with
//! `#EXT-X-ENDLIST`) for the configured linger time, then the reaper drops it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Facts about a stream's media, filled in as the sequence headers arrive.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MediaInfo {
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub audio_sample_rate: Option<u32>,
    pub audio_channels: Option<u8>,
}

/// One finished live segment.
#[derive(Debug, Clone)]
pub struct LiveSegment {
    pub sequence: u64,
    pub duration: Duration,
    pub discontinuity: bool,
    pub data: Bytes,
}

#[derive(Debug, Default)]
struct Hls {
    /// Listed and retained segments, oldest first; the last `window` are in the playlist.
    segments: VecDeque<LiveSegment>,
    /// Discontinuities that scrolled out of the playlist, for EXT-X-DISCONTINUITY-SEQUENCE.
    discontinuity_sequence: u64,
    media_playlist: Option<Bytes>,
    master_playlist: Option<Bytes>,
    ended: bool,
    /// Longest segment ever listed: TARGETDURATION must not shrink during a stream.
    longest: Duration,
}

/// One stream name's live state. Shared by its publisher (writer) and HTTP (readers).
#[derive(Debug)]
pub struct LiveStream {
    pub name: String,
    pub started_at: SystemTime,
    started: Instant,
    window: usize,
    hls: RwLock<Hls>,
    info: RwLock<MediaInfo>,
    publishing: AtomicBool,
    ended_at: RwLock<Option<Instant>>,
    pub bytes_in: AtomicU64,
    /// Cancelled to disconnect the publisher (control API, shutdown).
    pub kick: CancellationToken,
}

impl LiveStream {
    fn new(name: String, window: usize) -> Self {
        Self {
            name,
            started_at: SystemTime::now(),
            started: Instant::now(),
            window: window.max(1),
            hls: RwLock::default(),
            info: RwLock::default(),
            publishing: AtomicBool::new(true),
            ended_at: RwLock::new(None),
            bytes_in: AtomicU64::new(0),
            kick: CancellationToken::new(),
        }
    }

    pub fn is_publishing(&self) -> bool {
        self.publishing.load(Ordering::Acquire)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn set_info(&self, info: MediaInfo) {
        *self.info.write().expect("info lock") = info;
    }

    pub fn info(&self) -> MediaInfo {
        self.info.read().expect("info lock").clone()
    }

    /// Average bitrate since the publish started, in bits per second.
    pub fn bitrate(&self) -> u64 {
        let secs = self.uptime().as_secs_f64();
        if secs < 0.5 { 0 } else { (self.bytes_in.load(Ordering::Relaxed) as f64 * 8.0 / secs) as u64 }
    }

    /// Adds a finished segment and rebuilds the playlists readers get.
    pub fn push_segment(&self, segment: LiveSegment, master: Bytes) {
        let mut hls = self.hls.write().expect("hls lock");
        hls.longest = hls.longest.max(segment.duration);
        hls.segments.push_back(segment);
        // Each push moves exactly one segment out of the listed window once it is full; a
        // discontinuity leaving the playlist bumps EXT-X-DISCONTINUITY-SEQUENCE.
        if let Some(left) = hls.segments.len().checked_sub(self.window + 1)
            && hls.segments[left].discontinuity
        {
            hls.discontinuity_sequence += 1;
        }
        // Keep the listed window plus one more window of retired segments.
        while hls.segments.len() > self.window * 2 {
            hls.segments.pop_front();
        }
        hls.master_playlist = Some(master);
        hls.media_playlist = Some(render_media_playlist(&hls, self.window));
    }

    /// Marks the stream ended: the playlist gets `#EXT-X-ENDLIST`, the linger clock starts.
    pub fn end(&self) {
        self.publishing.store(false, Ordering::Release);
        *self.ended_at.write().expect("ended lock") = Some(Instant::now());
        let mut hls = self.hls.write().expect("hls lock");
        hls.ended = true;
        if !hls.segments.is_empty() {
            hls.media_playlist = Some(render_media_playlist(&hls, self.window));
        }
    }

    pub fn master_playlist(&self) -> Option<Bytes> {
        self.hls.read().expect("hls lock").master_playlist.clone()
    }

    pub fn media_playlist(&self) -> Option<Bytes> {
        self.hls.read().expect("hls lock").media_playlist.clone()
    }

    /// Target duration in seconds, for the playlist Cache-Control.
    pub fn target_duration_secs(&self) -> u64 {
        self.hls.read().expect("hls lock").longest.as_secs_f64().ceil().max(1.0) as u64
    }

    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let hls = self.hls.read().expect("hls lock");
        let first = hls.segments.front()?.sequence;
        let idx = usize::try_from(sequence.checked_sub(first)?).ok()?;
        hls.segments.get(idx).filter(|s| s.sequence == sequence).map(|s| s.data.clone())
    }

    fn expired(&self, linger: Duration) -> bool {
        self.ended_at.read().expect("ended lock").is_some_and(|t| t.elapsed() >= linger)
    }
}

fn render_media_playlist(hls: &Hls, window: usize) -> Bytes {
    let listed = hls.segments.len().saturating_sub(window);
    let refs: Vec<media::playlist::SegmentRef> = hls
        .segments
        .iter()
        .skip(listed)
        .map(|s| media::playlist::SegmentRef {
            sequence: s.sequence,
            duration: s.duration,
            discontinuity: s.discontinuity,
            uri: format!("{}.ts", s.sequence),
        })
        .collect();
    Bytes::from(media::playlist::live_media_playlist(&refs, hls.discontinuity_sequence, hls.longest, hls.ended))
}

#[derive(Debug, thiserror::Error)]
#[error("stream {0:?} is already being published")]
pub struct AlreadyLive(pub String);

/// Every stream the origin knows, by name.
#[derive(Debug, Clone)]
pub struct Streams {
    inner: Arc<RwLock<HashMap<String, Arc<LiveStream>>>>,
    window: usize,
    metrics: Metrics,
}

impl Streams {
    pub fn new(window: usize, metrics: Metrics) -> Self {
        Self { inner: Arc::default(), window, metrics }
    }

    /// Reserves `name` for a new publisher. An ended stream of the same name is replaced.
    pub fn claim(&self, name: &str) -> Result<Arc<LiveStream>, AlreadyLive> {
        let mut map = self.inner.write().expect("streams lock");
        if let Some(existing) = map.get(name)
            && existing.is_publishing()
        {
            return Err(AlreadyLive(name.to_string()));
        }
        let stream = Arc::new(LiveStream::new(name.to_string(), self.window));
        if map.insert(name.to_string(), stream.clone()).is_none() {
            self.metrics.live_streams.inc();
        }
        self.metrics.publishers.inc();
        Ok(stream)
    }

    /// Called by the publisher when it stops, whatever the reason.
    pub fn release(&self, stream: &LiveStream) {
        stream.end();
        self.metrics.publishers.dec();
    }

    /// Drops a stream at once (the publisher never produced anything worth serving).
    pub fn remove(&self, stream: &Arc<LiveStream>) {
        let mut map = self.inner.write().expect("streams lock");
        if map.get(&stream.name).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            map.remove(&stream.name);
            self.metrics.live_streams.dec();
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.inner.read().expect("streams lock").get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<LiveStream>> {
        let mut all: Vec<_> = self.inner.read().expect("streams lock").values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Drops ended streams whose linger time is over. Returns how many went.
    pub fn reap(&self, linger: Duration) -> usize {
        let mut map = self.inner.write().expect("streams lock");
        let before = map.len();
        map.retain(|_, s| !s.expired(linger));
        let gone = before - map.len();
        self.metrics.live_streams.dec_by(gone as i64);
        gone
    }
}
