//! The registry of live streams and what HTTP serves for each: the master playlist, the media
//! playlist of the source rendition and its segments (MPEG-TS), or its LL-HLS rendition (init
//! segments, parts, segments), all in memory.
//!
//! Invariants: at most one publisher per name, whatever the application; a segment stays
//! downloadable for one more window after it leaves the playlist; an ended stream keeps its
//! final playlist (with `#EXT-X-ENDLIST`) for the configured linger time, then the reaper
//! drops it. An LL-HLS rendition announces every change of its position on a watch channel,
//! so blocked playlist and part requests wake without polling, and all of them wake when the
//! stream ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use media::llhls::{Event, Position, Window, WindowConfig};
use serde::Serialize;
use tokio::sync::watch;
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
    /// Mean media bitrate over the recent segments, bits per second.
    pub bitrate: Option<u64>,
}

/// The live HLS of one stream: the playlist window and the segment bytes behind it.
#[derive(Debug)]
struct Hls {
    window: media::playlist::LiveWindow,
    /// Segment bytes by sequence, oldest first: the listed window plus one more window of
    /// segments that already left the playlist (players may still be fetching them).
    data: VecDeque<(u64, Bytes)>,
    media_playlist: Option<Bytes>,
    master_playlist: Option<Bytes>,
}

/// How a stream is packaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packaging {
    /// Classic HLS with MPEG-TS segments.
    Ts,
    /// Low-latency HLS with this window.
    LlHls(WindowConfig),
}

/// The LL-HLS rendition of a stream: its window, the playlist rendered from it, and the
/// position blocked requests wait on.
#[derive(Debug)]
pub struct LlRendition {
    part_target: Duration,
    state: RwLock<LlState>,
    position: watch::Sender<Position>,
}

#[derive(Debug)]
struct LlState {
    window: Window,
    /// Rendered after every change; `None` until the first part.
    playlist: Option<Bytes>,
}

impl LlRendition {
    fn new(config: WindowConfig) -> Self {
        LlRendition {
            part_target: config.part_target,
            state: RwLock::new(LlState {
                window: Window::new(config),
                playlist: None,
            }),
            position: watch::Sender::new(Position::default()),
        }
    }

    /// Applies the packager's output, re-renders the playlist, then wakes the waiters.
    pub fn apply(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let position = {
            let mut state = self.state.write().expect("ll lock");
            for event in events {
                state.window.apply(event);
            }
            state.render()
        };
        self.position.send_replace(position);
    }

    /// The stream ended: the playlist gets `#EXT-X-ENDLIST` and every waiter wakes.
    fn end(&self) {
        let position = {
            let mut state = self.state.write().expect("ll lock");
            state.window.end();
            state.render()
        };
        self.position.send_replace(position);
    }

    pub fn playlist(&self) -> Option<Bytes> {
        self.state.read().expect("ll lock").playlist.clone()
    }

    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// A receiver that sees every later position.
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// `EXT-X-PART-INF:PART-TARGET`.
    pub fn part_target(&self) -> Duration {
        self.part_target
    }

    /// `EXT-X-TARGETDURATION`, seconds.
    pub fn target_duration(&self) -> Duration {
        Duration::from_secs(self.state.read().expect("ll lock").window.target_duration())
    }

    pub fn init(&self, id: u64) -> Option<Bytes> {
        self.state.read().expect("ll lock").window.init(id)
    }

    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.state.read().expect("ll lock").window.segment(msn)
    }

    pub fn part(&self, number: u64) -> Option<Bytes> {
        self.state.read().expect("ll lock").window.part(number)
    }
}

impl LlState {
    fn render(&mut self) -> Position {
        if !self.window.is_empty() {
            self.playlist = Some(Bytes::from(self.window.render(&[])));
        }
        self.window.position()
    }
}

/// One stream name's live state. Shared by its publisher (writer) and HTTP (readers).
#[derive(Debug)]
pub struct LiveStream {
    pub name: String,
    /// The LL-HLS rendition; `None` for MPEG-TS streams.
    pub ll: Option<LlRendition>,
    pub started_at: SystemTime,
    started: Instant,
    hls: RwLock<Hls>,
    info: RwLock<MediaInfo>,
    publishing: AtomicBool,
    ended_at: RwLock<Option<Instant>>,
    pub bytes_in: AtomicU64,
    /// Cancelled to disconnect the publisher (control API, shutdown).
    pub kick: CancellationToken,
}

impl LiveStream {
    fn new(name: String, window: usize, target_duration: Duration, packaging: Packaging) -> Self {
        let hls = Hls {
            window: media::playlist::LiveWindow::new(
                window.max(1),
                target_duration.as_secs_f64().ceil() as u64,
            ),
            data: VecDeque::new(),
            media_playlist: None,
            master_playlist: None,
        };
        let ll = match packaging {
            Packaging::Ts => None,
            Packaging::LlHls(config) => Some(LlRendition::new(config)),
        };
        Self {
            name,
            ll,
            started_at: SystemTime::now(),
            started: Instant::now(),
            hls: RwLock::new(hls),
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

    /// Bitrate in bits per second: measured on the recent segments' media time once there are
    /// segments, else the ingest rate since the publish started.
    pub fn bitrate(&self) -> u64 {
        if let Some(bps) = self.info.read().expect("info lock").bitrate {
            return bps;
        }
        let secs = self.uptime().as_secs_f64();
        if secs < 0.5 {
            0
        } else {
            (self.bytes_in.load(Ordering::Relaxed) as f64 * 8.0 / secs) as u64
        }
    }

    /// Sets the master playlist (LL-HLS streams set it as their bitrate becomes known).
    pub fn set_master_playlist(&self, master: Bytes) {
        self.hls.write().expect("hls lock").master_playlist = Some(master);
    }

    /// Adds a finished segment and rebuilds the playlists readers get.
    pub fn push_segment(&self, segment: media::hls::Segment, master: Bytes) {
        let mut hls = self.hls.write().expect("hls lock");
        let uri = format!("{}.ts", segment.sequence);
        hls.window.push(segment.to_ref(uri));
        hls.data.push_back((segment.sequence, segment.data));
        let keep = hls.window.segments().len() * 2;
        while hls.data.len() > keep {
            hls.data.pop_front();
        }
        hls.master_playlist = Some(master);
        hls.media_playlist = Some(Bytes::from(hls.window.render(false)));
    }

    /// Marks the stream ended: the playlist gets `#EXT-X-ENDLIST`, the linger clock starts.
    pub fn end(&self) {
        self.publishing.store(false, Ordering::Release);
        *self.ended_at.write().expect("ended lock") = Some(Instant::now());
        let mut hls = self.hls.write().expect("hls lock");
        if !hls.data.is_empty() {
            hls.media_playlist = Some(Bytes::from(hls.window.render(true)));
        }
        drop(hls);
        if let Some(ll) = &self.ll {
            ll.end();
        }
    }

    pub fn master_playlist(&self) -> Option<Bytes> {
        self.hls.read().expect("hls lock").master_playlist.clone()
    }

    pub fn media_playlist(&self) -> Option<Bytes> {
        self.hls.read().expect("hls lock").media_playlist.clone()
    }

    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let hls = self.hls.read().expect("hls lock");
        // Sequences are consecutive, so the position is an offset from the oldest.
        let first = hls.data.front()?.0;
        let idx = usize::try_from(sequence.checked_sub(first)?).ok()?;
        hls.data
            .get(idx)
            .filter(|(seq, _)| *seq == sequence)
            .map(|(_, data)| data.clone())
    }

    fn expired(&self, linger: Duration) -> bool {
        self.ended_at
            .read()
            .expect("ended lock")
            .is_some_and(|t| t.elapsed() >= linger)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stream {0:?} is already being published")]
pub struct AlreadyLive(pub String);

/// Every stream the origin knows, by name.
#[derive(Debug, Clone)]
pub struct Streams {
    inner: Arc<RwLock<HashMap<String, Arc<LiveStream>>>>,
    window: usize,
    target_duration: Duration,
    metrics: Metrics,
}

impl Streams {
    pub fn new(window: usize, target_duration: Duration, metrics: Metrics) -> Self {
        Self {
            inner: Arc::default(),
            window,
            target_duration,
            metrics,
        }
    }

    /// Reserves `name` for a new publisher, whatever its application. An ended stream of the
    /// same name is replaced.
    pub fn claim(&self, name: &str, packaging: Packaging) -> Result<Arc<LiveStream>, AlreadyLive> {
        let mut map = self.inner.write().expect("streams lock");
        if let Some(existing) = map.get(name)
            && existing.is_publishing()
        {
            return Err(AlreadyLive(name.to_string()));
        }
        let stream = Arc::new(LiveStream::new(
            name.to_string(),
            self.window,
            self.target_duration,
            packaging,
        ));
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
        if map
            .get(&stream.name)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            map.remove(&stream.name);
            self.metrics.live_streams.dec();
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.inner.read().expect("streams lock").get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<LiveStream>> {
        let mut all: Vec<_> = self
            .inner
            .read()
            .expect("streams lock")
            .values()
            .cloned()
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(sequence: u64, discontinuity: bool) -> media::hls::Segment {
        media::hls::Segment {
            sequence,
            duration: Duration::from_millis(2000),
            duration_90k: 180_000,
            start_dts_90k: sequence * 180_000,
            discontinuity,
            data: Bytes::from(vec![sequence as u8; 188]),
            starts_with_keyframe: true,
        }
    }

    fn registry() -> Streams {
        Streams::new(3, Duration::from_secs(2), Metrics::default())
    }

    #[test]
    fn a_segment_stays_downloadable_for_one_window_after_it_leaves_the_playlist() {
        let streams = registry();
        let stream = streams.claim("cam", Packaging::Ts).unwrap();
        for seq in 0..6 {
            stream.push_segment(segment(seq, false), Bytes::from_static(b"#EXTM3U\n"));
        }
        let playlist = String::from_utf8(stream.media_playlist().unwrap().to_vec()).unwrap();
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{playlist}");
        assert!(!playlist.contains("\n2.ts"), "{playlist}");
        for seq in 0..6 {
            assert_eq!(
                stream.segment(seq).map(|d| d[0]),
                Some(seq as u8),
                "segment {seq}"
            );
        }
        stream.push_segment(segment(6, false), Bytes::new());
        assert!(stream.segment(0).is_none(), "kept longer than two windows");
        assert!(stream.segment(1).is_some());
        assert!(stream.segment(7).is_none());
    }

    #[test]
    fn ending_a_stream_appends_endlist_and_frees_the_name_for_a_new_publisher() {
        let streams = registry();
        let stream = streams.claim("cam", Packaging::Ts).unwrap();
        assert!(
            streams.claim("cam", Packaging::Ts).is_err(),
            "a second publisher got a live name"
        );
        stream.push_segment(segment(0, false), Bytes::new());
        streams.release(&stream);
        let playlist = String::from_utf8(stream.media_playlist().unwrap().to_vec()).unwrap();
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
        let again = streams
            .claim("cam", Packaging::Ts)
            .expect("an ended name can be published again");
        assert!(!Arc::ptr_eq(&again, &stream));
    }

    #[test]
    fn ended_streams_are_reaped_after_their_linger_time_and_live_ones_never() {
        let streams = registry();
        let ended = streams.claim("old", Packaging::Ts).unwrap();
        let _live = streams.claim("live", Packaging::Ts).unwrap();
        streams.release(&ended);
        assert_eq!(streams.reap(Duration::from_secs(60)), 0);
        assert_eq!(streams.reap(Duration::ZERO), 1);
        assert!(streams.get("old").is_none());
        assert!(streams.get("live").is_some());
    }

    #[tokio::test]
    async fn ending_an_ll_stream_wakes_its_waiters_with_the_final_playlist() {
        use media::llhls::{AudioFrame, Packager, PackagerConfig, Tracks};
        let streams = registry();
        let config = WindowConfig {
            window: 3,
            part_target: Duration::from_millis(334),
            segment_target: Duration::from_secs(2),
        };
        let stream = streams.claim("ll", Packaging::LlHls(config)).unwrap();
        let asc = media::aac::AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        let tracks = Tracks {
            video: None,
            audio: Some(media::fmp4::AudioParams::new(&asc, &[0x11, 0x90])),
        };
        let mut packager = Packager::new(PackagerConfig::default(), tracks);
        let rendition = stream.ll.as_ref().unwrap();
        for n in 0..100u64 {
            rendition.apply(packager.push_audio(AudioFrame {
                dts: 900_000 + n * 1_920,
                data: Bytes::from_static(&[0x21, 0]),
                received: SystemTime::now(),
            }));
        }
        let position = rendition.position();
        assert!(!position.ended);
        let mut waiter = rendition.subscribe();
        let far = position.last_msn().unwrap() + 2;
        let woken = tokio::spawn(async move {
            waiter
                .wait_for(|p| p.ended || p.satisfies(far, None))
                .await
                .map(|p| p.ended)
        });
        tokio::task::yield_now().await;
        assert!(!woken.is_finished(), "nothing satisfied it yet");
        rendition.apply(packager.finish());
        streams.release(&stream);
        assert_eq!(woken.await.unwrap().ok(), Some(true));
        let playlist = String::from_utf8(rendition.playlist().unwrap().to_vec()).unwrap();
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
        assert!(!playlist.contains("PRELOAD-HINT"), "{playlist}");
    }

    #[test]
    fn a_discontinuity_leaving_the_window_bumps_the_discontinuity_sequence() {
        let streams = registry();
        let stream = streams.claim("cam", Packaging::Ts).unwrap();
        stream.push_segment(segment(0, false), Bytes::new());
        stream.push_segment(segment(1, true), Bytes::new());
        for seq in 2..5 {
            stream.push_segment(segment(seq, false), Bytes::new());
        }
        let playlist = String::from_utf8(stream.media_playlist().unwrap().to_vec()).unwrap();
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"),
            "{playlist}"
        );
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
    }
}
