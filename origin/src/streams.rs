//! The registry of live streams and what HTTP serves for each: the master playlist and, per
//! variant (the passthrough `NAME_src` and the live ladder's rungs, `NAME_480`...), the media
//! playlist and its segments (MPEG-TS) or its LL-HLS rendition (init segments, parts,
//! segments), all in memory.
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
use media::llhls::{Event, Position, RenditionReport, Window, WindowConfig};
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

/// The MPEG-TS rendition of a stream: the playlist window and the segment bytes behind it.
#[derive(Debug)]
pub struct TsRendition {
    state: RwLock<TsState>,
}

#[derive(Debug)]
struct TsState {
    window: media::playlist::LiveWindow,
    /// Segment bytes by sequence, oldest first: the listed window plus one more window of
    /// segments that already left the playlist (players may still be fetching them).
    data: VecDeque<(u64, Bytes)>,
    playlist: Option<Bytes>,
}

impl TsRendition {
    fn new(window: usize, target_duration: Duration) -> Self {
        TsRendition {
            state: RwLock::new(TsState {
                window: media::playlist::LiveWindow::new(
                    window.max(1),
                    target_duration.as_secs_f64().ceil() as u64,
                ),
                data: VecDeque::new(),
                playlist: None,
            }),
        }
    }

    /// Adds a finished segment and rebuilds the playlist readers get.
    pub fn push_segment(&self, segment: media::hls::Segment) {
        let mut state = self.state.write().expect("ts lock");
        let uri = format!("{}.ts", segment.sequence);
        state.window.push(segment.to_ref(uri));
        state.data.push_back((segment.sequence, segment.data));
        let keep = state.window.segments().len() * 2;
        while state.data.len() > keep {
            state.data.pop_front();
        }
        state.playlist = Some(Bytes::from(state.window.render(false)));
    }

    fn end(&self) {
        let mut state = self.state.write().expect("ts lock");
        if !state.data.is_empty() {
            state.playlist = Some(Bytes::from(state.window.render(true)));
        }
    }

    pub fn playlist(&self) -> Option<Bytes> {
        self.state.read().expect("ts lock").playlist.clone()
    }

    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let state = self.state.read().expect("ts lock");
        // Sequences are consecutive, so the position is an offset from the oldest.
        let first = state.data.front()?.0;
        let idx = usize::try_from(sequence.checked_sub(first)?).ok()?;
        state
            .data
            .get(idx)
            .filter(|(seq, _)| *seq == sequence)
            .map(|(_, data)| data.clone())
    }
}

/// How a stream is packaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packaging {
    /// Classic HLS with MPEG-TS segments.
    Ts,
    /// Low-latency HLS with this window.
    LlHls(WindowConfig),
}

impl Packaging {
    pub fn label(&self) -> &'static str {
        match self {
            Packaging::Ts => "ts",
            Packaging::LlHls(_) => "ll-hls",
        }
    }
}

/// One variant's media: classic or low-latency.
#[derive(Debug)]
pub enum Rendition {
    Ts(TsRendition),
    Ll(LlRendition),
}

impl Rendition {
    fn end(&self) {
        match self {
            Rendition::Ts(ts) => ts.end(),
            Rendition::Ll(ll) => ll.end(),
        }
    }
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

    /// Applies the packager's output, re-renders the playlist (with `reports` of the stream's
    /// other renditions), then wakes the waiters.
    pub fn apply(&self, events: Vec<Event>, reports: &[RenditionReport]) {
        if events.is_empty() {
            return;
        }
        let position = {
            let mut state = self.state.write().expect("ll lock");
            for event in events {
                state.window.apply(event);
            }
            state.render(reports)
        };
        self.position.send_replace(position);
    }

    /// The stream ended: the playlist gets `#EXT-X-ENDLIST` and every waiter wakes.
    fn end(&self) {
        let position = {
            let mut state = self.state.write().expect("ll lock");
            state.window.end();
            state.render(&[])
        };
        self.position.send_replace(position);
    }

    /// This rendition as a sibling's playlist reports it (`EXT-X-RENDITION-REPORT`).
    fn report(&self, uri: String) -> Option<RenditionReport> {
        self.state.read().expect("ll lock").window.report(uri)
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
    fn render(&mut self, reports: &[RenditionReport]) -> Position {
        if !self.window.is_empty() {
            self.playlist = Some(Bytes::from(self.window.render(reports)));
        }
        self.window.position()
    }
}

/// The suffix of the passthrough variant: `NAME_src`.
pub const SOURCE: &str = "src";

/// A variant of a stream as the master playlist lists it, once its media is known.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantInfo {
    /// Peak bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    pub resolution: Option<(u32, u32)>,
    pub codecs: Vec<String>,
    pub frame_rate: Option<f64>,
}

#[derive(Debug)]
struct Slot {
    /// `src`, or a rung's name without its leading `_` (`480`).
    suffix: String,
    rendition: Arc<Rendition>,
    info: Option<VariantInfo>,
}

#[derive(Debug, Default)]
struct Variants {
    /// The passthrough first, then the transcoded rungs in the order they started.
    slots: Vec<Slot>,
    master: Option<Bytes>,
}

/// One stream name's live state. Shared by its publisher (writer) and HTTP (readers).
#[derive(Debug)]
pub struct LiveStream {
    pub name: String,
    pub packaging: Packaging,
    pub started_at: SystemTime,
    started: Instant,
    window: usize,
    target_duration: Duration,
    variants: RwLock<Variants>,
    info: RwLock<MediaInfo>,
    publishing: AtomicBool,
    ended_at: RwLock<Option<Instant>>,
    pub bytes_in: AtomicU64,
    /// Cancelled to disconnect the publisher (control API, shutdown).
    pub kick: CancellationToken,
}

impl LiveStream {
    fn new(name: String, window: usize, target_duration: Duration, packaging: Packaging) -> Self {
        let stream = Self {
            name,
            packaging,
            started_at: SystemTime::now(),
            started: Instant::now(),
            window,
            target_duration,
            variants: RwLock::default(),
            info: RwLock::default(),
            publishing: AtomicBool::new(true),
            ended_at: RwLock::new(None),
            bytes_in: AtomicU64::new(0),
            kick: CancellationToken::new(),
        };
        stream.add_rendition(SOURCE);
        stream
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

    /// The passthrough rendition, `NAME_src`.
    pub fn source(&self) -> Arc<Rendition> {
        self.rendition(SOURCE)
            .expect("every stream has its source rendition")
    }

    /// The rendition served as `NAME_{suffix}`.
    pub fn rendition(&self, suffix: &str) -> Option<Arc<Rendition>> {
        let variants = self.variants.read().expect("variants lock");
        variants
            .slots
            .iter()
            .find(|s| s.suffix == suffix)
            .map(|s| s.rendition.clone())
    }

    /// The rendition `NAME_{suffix}`, made (empty, not yet in the master playlist) if new.
    pub fn add_rendition(&self, suffix: &str) -> Arc<Rendition> {
        let mut variants = self.variants.write().expect("variants lock");
        if let Some(slot) = variants.slots.iter().find(|s| s.suffix == suffix) {
            return slot.rendition.clone();
        }
        let rendition = Arc::new(match &self.packaging {
            Packaging::Ts => Rendition::Ts(TsRendition::new(self.window, self.target_duration)),
            Packaging::LlHls(config) => Rendition::Ll(LlRendition::new(config.clone())),
        });
        variants.slots.push(Slot {
            suffix: suffix.to_owned(),
            rendition: rendition.clone(),
            info: None,
        });
        rendition
    }

    /// Takes `NAME_{suffix}` out of the master playlist and stops serving it (a dropped rung).
    /// The source rendition stays.
    pub fn remove_rendition(&self, suffix: &str) {
        if suffix == SOURCE {
            return;
        }
        let mut variants = self.variants.write().expect("variants lock");
        let before = variants.slots.len();
        variants.slots.retain(|s| s.suffix != suffix);
        if variants.slots.len() != before {
            self.render_master(&mut variants);
        }
    }

    /// Records what the master playlist says of `NAME_{suffix}` (codecs, size, measured
    /// bitrate), listing it from now on; the master is rebuilt when anything changed.
    pub fn set_variant(&self, suffix: &str, info: VariantInfo) {
        let mut variants = self.variants.write().expect("variants lock");
        let Some(slot) = variants.slots.iter_mut().find(|s| s.suffix == suffix) else {
            return;
        };
        if slot.info.as_ref() == Some(&info) {
            return;
        }
        slot.info = Some(info);
        self.render_master(&mut variants);
    }

    /// The master playlist: the passthrough first (once it has media), then every rung with
    /// media, highest bandwidth first.
    fn render_master(&self, variants: &mut Variants) {
        let listed: Vec<media::playlist::Variant> = Self::listed(variants)
            .into_iter()
            .map(|(suffix, info)| media::playlist::Variant {
                bandwidth: info.bandwidth.max(1),
                average_bandwidth: info.average_bandwidth,
                resolution: info.resolution,
                codecs: info.codecs.clone(),
                frame_rate: info.frame_rate,
                uri: format!("{}_{suffix}/index.m3u8", self.name),
            })
            .collect();
        if !listed.is_empty() {
            variants.master = Some(Bytes::from(media::playlist::master_playlist(&listed)));
        }
    }

    /// What the master lists, in its order: nothing before the passthrough has media.
    fn listed(variants: &Variants) -> Vec<(&str, &VariantInfo)> {
        let Some(source) = variants.slots.first().and_then(|s| s.info.as_ref()) else {
            return Vec::new();
        };
        let mut rungs: Vec<(&str, &VariantInfo)> = variants.slots[1..]
            .iter()
            .filter_map(|s| s.info.as_ref().map(|info| (s.suffix.as_str(), info)))
            .collect();
        rungs.sort_by_key(|(_, info)| std::cmp::Reverse(info.bandwidth));
        let mut all = vec![(SOURCE, source)];
        all.extend(rungs);
        all
    }

    /// The variants the master playlist lists (`NAME_src`, `NAME_960`...), in its order.
    pub fn listed_variants(&self) -> Vec<String> {
        let variants = self.variants.read().expect("variants lock");
        Self::listed(&variants)
            .into_iter()
            .map(|(suffix, _)| format!("{}_{suffix}", self.name))
            .collect()
    }

    /// Applies LL-HLS packager output to `NAME_{suffix}`; its playlist reports every other
    /// LL-HLS rendition of the stream (`EXT-X-RENDITION-REPORT`), so a player switching
    /// variants can block for the right part at once.
    pub fn apply_ll(&self, suffix: &str, events: Vec<Event>) {
        let (rendition, siblings) = {
            let variants = self.variants.read().expect("variants lock");
            let Some(own) = variants.slots.iter().find(|s| s.suffix == suffix) else {
                return;
            };
            let siblings: Vec<(String, Arc<Rendition>)> = variants
                .slots
                .iter()
                .filter(|s| s.suffix != suffix && s.info.is_some())
                .map(|s| (s.suffix.clone(), s.rendition.clone()))
                .collect();
            (own.rendition.clone(), siblings)
        };
        let Rendition::Ll(rendition) = &*rendition else {
            return;
        };
        // Sibling positions are read before this rendition is locked: no two locks are held
        // at once, so renditions updated from different tasks cannot deadlock.
        let reports: Vec<RenditionReport> = siblings
            .iter()
            .filter_map(|(sibling, r)| match &**r {
                Rendition::Ll(ll) => ll.report(format!("../{}_{sibling}/index.m3u8", self.name)),
                Rendition::Ts(_) => None,
            })
            .collect();
        rendition.apply(events, &reports);
    }

    /// Marks the stream ended: every playlist gets `#EXT-X-ENDLIST` (blocked LL-HLS requests
    /// wake), the linger clock starts.
    pub fn end(&self) {
        self.publishing.store(false, Ordering::Release);
        *self.ended_at.write().expect("ended lock") = Some(Instant::now());
        let renditions: Vec<Arc<Rendition>> = {
            let variants = self.variants.read().expect("variants lock");
            variants.slots.iter().map(|s| s.rendition.clone()).collect()
        };
        for rendition in renditions {
            rendition.end();
        }
    }

    pub fn master_playlist(&self) -> Option<Bytes> {
        self.variants.read().expect("variants lock").master.clone()
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

    fn ts<R>(stream: &LiveStream, f: impl FnOnce(&TsRendition) -> R) -> R {
        match &*stream.source() {
            Rendition::Ts(ts) => f(ts),
            Rendition::Ll(_) => panic!("not an MPEG-TS stream"),
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
            ts(&stream, |r| r.push_segment(segment(seq, false)));
        }
        let playlist = String::from_utf8(ts(&stream, |r| r.playlist()).unwrap().to_vec()).unwrap();
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{playlist}");
        assert!(!playlist.contains("\n2.ts"), "{playlist}");
        for seq in 0..6 {
            assert_eq!(
                ts(&stream, |r| r.segment(seq)).map(|d| d[0]),
                Some(seq as u8),
                "segment {seq}"
            );
        }
        ts(&stream, |r| r.push_segment(segment(6, false)));
        assert!(
            ts(&stream, |r| r.segment(0)).is_none(),
            "kept longer than two windows"
        );
        assert!(ts(&stream, |r| r.segment(1)).is_some());
        assert!(ts(&stream, |r| r.segment(7)).is_none());
    }

    #[test]
    fn ending_a_stream_appends_endlist_and_frees_the_name_for_a_new_publisher() {
        let streams = registry();
        let stream = streams.claim("cam", Packaging::Ts).unwrap();
        assert!(
            streams.claim("cam", Packaging::Ts).is_err(),
            "a second publisher got a live name"
        );
        ts(&stream, |r| r.push_segment(segment(0, false)));
        streams.release(&stream);
        let playlist = String::from_utf8(ts(&stream, |r| r.playlist()).unwrap().to_vec()).unwrap();
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
        let source = stream.source();
        let Rendition::Ll(rendition) = &*source else {
            panic!("an LL-HLS stream has an LL-HLS source rendition")
        };
        for n in 0..100u64 {
            rendition.apply(
                packager.push_audio(AudioFrame {
                    dts: 900_000 + n * 1_920,
                    data: Bytes::from_static(&[0x21, 0]),
                    received: SystemTime::now(),
                }),
                &[],
            );
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
        rendition.apply(packager.finish(), &[]);
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
        ts(&stream, |r| r.push_segment(segment(0, false)));
        ts(&stream, |r| r.push_segment(segment(1, true)));
        for seq in 2..5 {
            ts(&stream, |r| r.push_segment(segment(seq, false)));
        }
        let playlist = String::from_utf8(ts(&stream, |r| r.playlist()).unwrap().to_vec()).unwrap();
        assert!(
            playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"),
            "{playlist}"
        );
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
    }

    fn info(bandwidth: u64, width: u32) -> VariantInfo {
        VariantInfo {
            bandwidth,
            average_bandwidth: Some(bandwidth - 1),
            resolution: Some((width, width * 9 / 16)),
            codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
            frame_rate: Some(30.0),
        }
    }

    fn uris(master: &Bytes) -> Vec<String> {
        String::from_utf8(master.to_vec())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_master_lists_the_source_first_then_rungs_with_media_by_bandwidth_and_forgets_dropped_ones()
     {
        let streams = registry();
        let stream = streams.claim("cam", Packaging::Ts).unwrap();
        stream.add_rendition("480");
        stream.add_rendition("960");
        stream.set_variant("960", info(2_500_000, 960));
        assert_eq!(
            stream.master_playlist(),
            None,
            "no master before the source has media"
        );
        stream.set_variant(SOURCE, info(4_000_000, 1280));
        assert_eq!(
            uris(&stream.master_playlist().unwrap()),
            ["cam_src/index.m3u8", "cam_960/index.m3u8"],
            "a rung without media yet is not listed"
        );
        stream.set_variant("480", info(600_000, 480));
        let master = stream.master_playlist().unwrap();
        assert_eq!(
            uris(&master),
            [
                "cam_src/index.m3u8",
                "cam_960/index.m3u8",
                "cam_480/index.m3u8"
            ]
        );
        assert!(
            String::from_utf8(master.to_vec())
                .unwrap()
                .contains("BANDWIDTH=600000,AVERAGE-BANDWIDTH=599999,RESOLUTION=480x270"),
            "{master:?}"
        );
        stream.remove_rendition("960");
        assert_eq!(
            uris(&stream.master_playlist().unwrap()),
            ["cam_src/index.m3u8", "cam_480/index.m3u8"]
        );
        assert!(stream.rendition("960").is_none());
        stream.remove_rendition(SOURCE);
        assert!(
            stream.rendition(SOURCE).is_some(),
            "the source is never removed"
        );
        assert_eq!(stream.listed_variants(), ["cam_src", "cam_480"]);
        stream.set_variant("480", info(5_000_000, 480));
        stream.add_rendition("1080");
        stream.set_variant("1080", info(4_500_000, 1080));
        assert_eq!(
            stream.listed_variants(),
            ["cam_src", "cam_480", "cam_1080"],
            "the master's order: the source, then by bandwidth"
        );
    }

    #[test]
    fn an_ll_rendition_reports_its_listed_siblings() {
        use media::llhls::{AudioFrame, Packager, PackagerConfig, Tracks};
        let streams = registry();
        let config = WindowConfig {
            window: 3,
            part_target: Duration::from_millis(334),
            segment_target: Duration::from_secs(2),
        };
        let stream = streams.claim("ll", Packaging::LlHls(config)).unwrap();
        stream.add_rendition("480");
        let asc = media::aac::AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        let tracks = Tracks {
            video: None,
            audio: Some(media::fmp4::AudioParams::new(&asc, &[0x11, 0x90])),
        };
        let mut packagers: Vec<Packager> = (0..2)
            .map(|_| Packager::new(PackagerConfig::default(), tracks.clone()))
            .collect();
        for n in 0..100u64 {
            for (packager, suffix) in packagers.iter_mut().zip([SOURCE, "480"]) {
                let events = packager.push_audio(AudioFrame {
                    dts: 900_000 + n * 1_920,
                    data: Bytes::from_static(&[0x21, 0]),
                    received: SystemTime::now(),
                });
                stream.apply_ll(suffix, events);
            }
        }
        let playlist = |suffix: &str| match &*stream.rendition(suffix).unwrap() {
            Rendition::Ll(ll) => String::from_utf8(ll.playlist().unwrap().to_vec()).unwrap(),
            Rendition::Ts(_) => unreachable!(),
        };
        assert!(
            !playlist(SOURCE).contains("RENDITION-REPORT"),
            "a rung not yet in the master is not reported"
        );
        stream.set_variant(SOURCE, info(200_000, 16));
        stream.set_variant("480", info(100_000, 16));
        for (packager, suffix) in packagers.iter_mut().zip([SOURCE, "480"]) {
            for n in 100..120u64 {
                let events = packager.push_audio(AudioFrame {
                    dts: 900_000 + n * 1_920,
                    data: Bytes::from_static(&[0x21, 0]),
                    received: SystemTime::now(),
                });
                stream.apply_ll(suffix, events);
            }
        }
        let src = playlist(SOURCE);
        let rung = playlist("480");
        assert!(
            src.contains("#EXT-X-RENDITION-REPORT:URI=\"../ll_480/index.m3u8\",LAST-MSN="),
            "{src}"
        );
        assert!(
            rung.contains("#EXT-X-RENDITION-REPORT:URI=\"../ll_src/index.m3u8\",LAST-MSN="),
            "{rung}"
        );
        assert!(
            !src.contains("ll_src/index"),
            "a rendition does not report itself: {src}"
        );
    }
}
