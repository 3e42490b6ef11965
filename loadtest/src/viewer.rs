//! One virtual viewer, behaving like an HLS player (RFC 8216 6.3, RFC 8216bis 6.2.5, hls.js):
//! load the master, pick a variant, start three segments from the live edge (or
//! `PART-HOLD-BACK` from it for LL-HLS), download every new segment or part once and in order,
//! reload the playlist at the interval the spec requires (or with blocking `_HLS_msn` /
//! `_HLS_part` reloads, fetching the preload hint at the same time), until the stream ends
//! or the run stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, VariantPolicy};
use crate::playback::Playback;
use crate::playlist::{self, MediaPlaylist, Part, Playlist, Variant};
use crate::stats::{Failure, Recorder, RequestKind, ViewerRecord};

/// Pause before retrying a master or playlist that failed.
const RETRY: Duration = Duration::from_secs(1);
/// Pause before the second (last) attempt at a media segment or part.
const MEDIA_RETRY: Duration = Duration::from_millis(500);
/// Segments from the live edge a player starts at without LL-HLS (hls.js
/// `liveSyncDurationCount`, and RFC 8216 6.3.3's "at least three target durations").
const LIVE_EDGE_SEGMENTS: usize = 3;
/// A player stops downloading this far ahead of its play position (hls.js
/// `maxBufferLength`); only an ended playlist (VOD, or a viewer far behind) gets there.
const MAX_BUFFER_AHEAD: Duration = Duration::from_secs(30);

/// The run stopped (deadline or shutdown): the viewer leaves at once.
#[derive(Debug)]
struct Stopped;

/// Where the viewer is in the stream: the next segment, and the next part of it (0 when
/// nothing of it has been downloaded yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub msn: u64,
    pub part: usize,
}

/// A successful request.
struct Fetched {
    latency: Duration,
    len: u64,
    body: Option<Bytes>,
}

/// What the viewer shares with the run.
#[derive(Clone)]
pub(crate) struct Shared {
    pub client: reqwest::Client,
    pub recorder: Arc<Recorder>,
    pub config: Arc<Config>,
    pub stop: CancellationToken,
}

pub(crate) struct Viewer {
    shared: Shared,
    playback: Playback,
    record: ViewerRecord,
    /// Preload hints downloaded ahead of their listing, with their arrival time.
    hinted: HashMap<Url, Duration>,
    /// The `#EXT-X-MAP` last downloaded.
    map: Option<Url>,
}

impl Viewer {
    pub(crate) fn new(id: u32, shared: Shared) -> Self {
        Viewer {
            shared,
            playback: Playback::default(),
            record: ViewerRecord {
                id,
                ..ViewerRecord::default()
            },
            hinted: HashMap::new(),
            map: None,
        }
    }

    /// Watches until the stream ends or the run stops; reports what it did.
    pub(crate) async fn run(mut self) {
        let recorder = self.shared.recorder.clone();
        self.record.joined_at = recorder.now().as_secs_f64();
        recorder.joined();
        let ended = self.watch().await.unwrap_or(false);
        let now = recorder.now();
        if let Some(stall) = self.playback.leave(now, ended) {
            recorder.stall(stall);
        }
        self.record.left_at = now.as_secs_f64();
        self.record.played = self.playback.started();
        self.record.ended = ended;
        self.record.stalls = u64::from(self.playback.stalls);
        self.record.stalled_secs = self.playback.stalled.as_secs_f64();
        recorder.left(self.record);
    }

    /// Returns whether the stream ended with everything downloaded.
    async fn watch(&mut self) -> Result<bool, Stopped> {
        let config = self.shared.config.clone();
        let entry = Url::parse(&config.url).expect("the URL was validated");
        let (media_url, first) = loop {
            match self
                .load(RequestKind::Master, &entry, config.timeout)
                .await?
            {
                Some(Playlist::Master(variants)) => {
                    let variant = choose(&variants, config.variant);
                    match entry.join(&variant.uri) {
                        Ok(url) => break (url, None),
                        Err(_) => {
                            self.shared
                                .recorder
                                .failure(RequestKind::Master, Failure::Playlist);
                        }
                    }
                }
                Some(Playlist::Media(media)) => break (entry.clone(), Some(media)),
                None => {}
            }
            self.pause(RETRY).await?;
        };
        self.record.variant = Some(media_url.to_string());
        let mut loaded_at = Instant::now();
        let mut playlist = match first {
            Some(media) => media,
            None => self.load_media(&media_url, &mut loaded_at).await?,
        };
        let mut cursor = start_position(&playlist);
        let low_latency = playlist.can_block_reload && playlist.has_parts();
        let mut changed = true;
        loop {
            cursor = self
                .consume(&playlist, &media_url, cursor, low_latency)
                .await?;
            if !self.playback.started() && self.record.segments + self.record.parts > 0 {
                self.playback.start(self.shared.recorder.now());
            }
            if playlist.ended {
                return Ok(true);
            }
            playlist = if playlist.can_block_reload {
                let next = self.blocking_reload(&media_url, &playlist, cursor).await?;
                if next == playlist {
                    // Nothing new: the server held the request to its limit, or ignores
                    // `_HLS_msn`. Half a part (or target) duration keeps this from spinning.
                    let half = playlist.part_target.unwrap_or(playlist.target_duration) / 2.0;
                    self.pause(Duration::from_secs_f64(half.max(0.05))).await?;
                }
                next
            } else {
                // RFC 8216 6.3.4: a target duration after a load that changed the playlist,
                // half of one after a load that did not, measured from the load's start.
                let wait = if changed {
                    playlist.target_duration
                } else {
                    playlist.target_duration / 2.0
                };
                let at = loaded_at + Duration::from_secs_f64(wait.max(0.1));
                self.pause_until(at).await?;
                let next = self.load_media(&media_url, &mut loaded_at).await?;
                changed = next.next_msn() != playlist.next_msn() || next.ended;
                next
            };
        }
    }

    /// Loads the media playlist, retrying until it works; `loaded_at` becomes the start of
    /// the successful load.
    async fn load_media(
        &mut self,
        url: &Url,
        loaded_at: &mut Instant,
    ) -> Result<MediaPlaylist, Stopped> {
        let timeout = self.shared.config.timeout;
        loop {
            *loaded_at = Instant::now();
            match self.load(RequestKind::Playlist, url, timeout).await? {
                Some(Playlist::Media(media)) => return Ok(media),
                Some(Playlist::Master(_)) => {
                    self.shared
                        .recorder
                        .failure(RequestKind::Playlist, Failure::Playlist);
                }
                None => {}
            }
            self.pause(RETRY).await?;
        }
    }

    /// A blocking reload for the segment or part after `cursor`; with parts, the preload
    /// hint is fetched at the same time, as hls.js does in low-latency mode.
    async fn blocking_reload(
        &mut self,
        url: &Url,
        playlist: &MediaPlaylist,
        cursor: Position,
    ) -> Result<MediaPlaylist, Stopped> {
        let mut blocking = url.clone();
        {
            let mut query = blocking.query_pairs_mut();
            query.append_pair("_HLS_msn", &cursor.msn.to_string());
            if playlist.has_parts() {
                query.append_pair("_HLS_part", &cursor.part.to_string());
            }
        }
        // The server may hold the request up to three target durations (8216bis 6.2.5.2).
        let timeout =
            self.shared.config.timeout + Duration::from_secs_f64(3.0 * playlist.target_duration);
        let hint = playlist
            .preload_hint
            .as_ref()
            .and_then(|h| url.join(h).ok());
        let retry = Duration::from_secs_f64(playlist.part_target.unwrap_or(0.5).max(0.1));
        loop {
            // A hint already downloaded (by an earlier attempt) is not asked for again.
            let hint = hint.as_ref().filter(|h| !self.hinted.contains_key(*h));
            let (reload, hinted) = tokio::join!(
                self.load(RequestKind::BlockingPlaylist, &blocking, timeout),
                async {
                    match hint {
                        Some(h) => self.fetch(RequestKind::Part, h, timeout).await.ok(),
                        None => None,
                    }
                }
            );
            if let (Some(h), Some(true)) = (hint, hinted) {
                self.hinted.insert(h.clone(), self.shared.recorder.now());
            }
            match reload? {
                Some(Playlist::Media(media)) => return Ok(media),
                Some(Playlist::Master(_)) => self
                    .shared
                    .recorder
                    .failure(RequestKind::BlockingPlaylist, Failure::Playlist),
                None => {}
            }
            self.pause(retry).await?;
        }
    }

    /// Downloads what `playlist` lists from `cursor` on, in order; returns the new position.
    async fn consume(
        &mut self,
        playlist: &MediaPlaylist,
        base: &Url,
        mut cursor: Position,
        low_latency: bool,
    ) -> Result<Position, Stopped> {
        for segment in &playlist.segments {
            if segment.msn < cursor.msn {
                continue;
            }
            if segment.msn > cursor.msn {
                // Fell behind the window: those segments are gone.
                self.record.missed += segment.msn - cursor.msn;
                cursor = Position {
                    msn: segment.msn,
                    part: 0,
                };
            }
            self.ensure_map(base, segment.map.as_deref()).await?;
            if cursor.part == 0 {
                self.media(
                    RequestKind::Segment,
                    base,
                    &segment.uri,
                    segment.duration,
                    segment.msn,
                    low_latency,
                )
                .await?;
            } else {
                for part in segment.parts.iter().skip(cursor.part) {
                    self.part(base, part, segment.msn, low_latency).await?;
                }
            }
            cursor = Position {
                msn: segment.msn + 1,
                part: 0,
            };
        }
        let trailing = playlist.next_msn();
        if !playlist.trailing_parts.is_empty() {
            if cursor.msn < trailing {
                self.record.missed += trailing - cursor.msn;
                cursor = Position {
                    msn: trailing,
                    part: 0,
                };
            }
            if cursor.msn == trailing {
                self.ensure_map(base, playlist.trailing_map.as_deref())
                    .await?;
                for part in playlist.trailing_parts.iter().skip(cursor.part) {
                    self.part(base, part, trailing, low_latency).await?;
                    cursor.part += 1;
                }
            }
        }
        Ok(cursor)
    }

    async fn part(
        &mut self,
        base: &Url,
        part: &Part,
        msn: u64,
        low_latency: bool,
    ) -> Result<(), Stopped> {
        self.media(
            RequestKind::Part,
            base,
            &part.uri,
            part.duration,
            msn,
            low_latency,
        )
        .await
    }

    /// Downloads the initialisation section once per distinct `#EXT-X-MAP`.
    async fn ensure_map(&mut self, base: &Url, map: Option<&str>) -> Result<(), Stopped> {
        let Some(url) = map.and_then(|m| base.join(m).ok()) else {
            return Ok(());
        };
        if self.map.as_ref() == Some(&url) {
            return Ok(());
        }
        let timeout = self.shared.config.timeout;
        if self.fetch(RequestKind::Init, &url, timeout).await? {
            self.map = Some(url);
        }
        Ok(())
    }

    /// Downloads one segment or part (unless its preload hint already brought it), with one
    /// retry, and feeds it to the playback buffer.
    async fn media(
        &mut self,
        kind: RequestKind,
        base: &Url,
        uri: &str,
        duration: f64,
        msn: u64,
        low_latency: bool,
    ) -> Result<(), Stopped> {
        let Ok(url) = base.join(uri) else {
            self.shared.recorder.failure(kind, Failure::Playlist);
            self.record.missed += 1;
            return Ok(());
        };
        let arrived = match self.hinted.remove(&url) {
            Some(at) => Some(at),
            None => {
                let ahead = self.playback.ahead(self.shared.recorder.now());
                if ahead > MAX_BUFFER_AHEAD {
                    self.pause(ahead - MAX_BUFFER_AHEAD).await?;
                }
                let timeout = self.shared.config.timeout;
                let mut arrived = None;
                for attempt in 0..2 {
                    if attempt > 0 {
                        self.pause(MEDIA_RETRY).await?;
                    }
                    if self.fetch(kind, &url, timeout).await? {
                        arrived = Some(self.shared.recorder.now());
                        break;
                    }
                }
                arrived
            }
        };
        let Some(at) = arrived else {
            self.record.missed += 1;
            return Ok(());
        };
        match kind {
            RequestKind::Part => self.record.parts += 1,
            _ => self.record.segments += 1,
        }
        self.record.first_msn.get_or_insert(msn);
        self.record.last_msn = Some(msn);
        let media = Duration::from_secs_f64(duration.max(0.0));
        if let Some(stall) = self.playback.arrive(at, media) {
            self.shared.recorder.stall(stall);
        }
        // Without LL-HLS a player starts as soon as the first segment is in; with it, after
        // the parts up to the live edge (see `watch`).
        if !low_latency && !self.playback.started() {
            self.playback.start(at);
        }
        Ok(())
    }

    /// Loads and parses a playlist. `None` when the request failed or the body is not a
    /// playlist (both recorded).
    async fn load(
        &self,
        kind: RequestKind,
        url: &Url,
        timeout: Duration,
    ) -> Result<Option<Playlist>, Stopped> {
        let recorder = &self.shared.recorder;
        let fetched = match self.request(url, timeout, true).await? {
            Ok(fetched) => fetched,
            Err(failure) => {
                recorder.failure(kind, failure);
                return Ok(None);
            }
        };
        let text = fetched.body.as_deref().unwrap_or_default();
        match std::str::from_utf8(text)
            .ok()
            .and_then(|t| playlist::parse(t).ok())
        {
            Some(parsed) => {
                recorder.success(kind, fetched.latency, fetched.len);
                Ok(Some(parsed))
            }
            None => {
                recorder.failure(kind, Failure::Playlist);
                Ok(None)
            }
        }
    }

    /// Downloads a body without keeping it; records the outcome. `true` on success.
    async fn fetch(
        &self,
        kind: RequestKind,
        url: &Url,
        timeout: Duration,
    ) -> Result<bool, Stopped> {
        let recorder = &self.shared.recorder;
        match self.request(url, timeout, false).await? {
            Ok(fetched) => {
                recorder.success(kind, fetched.latency, fetched.len);
                Ok(true)
            }
            Err(failure) => {
                recorder.failure(kind, failure);
                Ok(false)
            }
        }
    }

    /// One GET within `timeout` (connection, headers and body), abandoned when the run stops.
    async fn request(
        &self,
        url: &Url,
        timeout: Duration,
        keep_body: bool,
    ) -> Result<Result<Fetched, Failure>, Stopped> {
        let started = Instant::now();
        let work = async {
            let mut response = self
                .shared
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(classify)?;
            let status = response.status();
            if !status.is_success() {
                return Err(Failure::Status(status.as_u16()));
            }
            if keep_body {
                let body = response.bytes().await.map_err(classify)?;
                return Ok((body.len() as u64, Some(body)));
            }
            // Media is counted and dropped chunk by chunk: thousands of viewers must not
            // hold whole segments in memory.
            let mut len = 0u64;
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                len += chunk.len() as u64;
            }
            Ok((len, None))
        };
        tokio::select! {
            biased;
            _ = self.shared.stop.cancelled() => Err(Stopped),
            done = tokio::time::timeout(timeout, work) => Ok(match done {
                Ok(Ok((len, body))) => Ok(Fetched { latency: started.elapsed(), len, body }),
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure::Timeout),
            }),
        }
    }

    async fn pause(&self, wait: Duration) -> Result<(), Stopped> {
        self.pause_until(Instant::now() + wait).await
    }

    async fn pause_until(&self, at: Instant) -> Result<(), Stopped> {
        tokio::select! {
            _ = self.shared.stop.cancelled() => Err(Stopped),
            _ = tokio::time::sleep_until(at) => Ok(()),
        }
    }
}

fn classify(error: reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else if error.is_connect() {
        Failure::Connect
    } else if error.is_body() || error.is_decode() {
        Failure::Body
    } else {
        Failure::Request
    }
}

/// The variant `policy` picks; `variants` is never empty (the parser refuses that).
pub(crate) fn choose(variants: &[Variant], policy: VariantPolicy) -> &Variant {
    let lowest = variants.iter().min_by_key(|v| v.bandwidth);
    let highest_up_to = |cap: u64| {
        variants
            .iter()
            .filter(|v| v.bandwidth <= cap)
            .max_by_key(|v| v.bandwidth)
    };
    let chosen = match policy {
        VariantPolicy::First => variants.first(),
        VariantPolicy::Highest => highest_up_to(u64::MAX),
        VariantPolicy::Lowest => lowest,
        VariantPolicy::Bandwidth(bps) => highest_up_to(bps).or(lowest),
    };
    chosen.expect("a master playlist has at least one variant")
}

/// Where a player joins: the start of an ended playlist; `PART-HOLD-BACK` (default three part
/// targets) from the live edge, moved back to an independent part, with LL-HLS; otherwise
/// three segments from the end.
pub(crate) fn start_position(playlist: &MediaPlaylist) -> Position {
    if playlist.ended {
        return Position {
            msn: playlist.media_sequence,
            part: 0,
        };
    }
    if playlist.can_block_reload && playlist.has_parts() {
        let hold_back = playlist
            .part_hold_back
            .or(playlist.part_target.map(|t| 3.0 * t))
            .unwrap_or(playlist.target_duration);
        let parts: Vec<(u64, usize, &Part)> = playlist
            .segments
            .iter()
            .flat_map(|s| s.parts.iter().enumerate().map(|(i, p)| (s.msn, i, p)))
            .chain(
                playlist
                    .trailing_parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (playlist.next_msn(), i, p)),
            )
            .collect();
        let mut at = parts.len();
        let mut behind = 0.0;
        while at > 0 && behind < hold_back {
            at -= 1;
            behind += parts[at].2.duration;
        }
        if parts.iter().any(|p| p.2.independent) {
            while at > 0 && !parts[at].2.independent {
                at -= 1;
            }
        }
        if let Some(&(msn, part, _)) = parts.get(at) {
            return Position { msn, part };
        }
    }
    let first = playlist.segments.len().saturating_sub(LIVE_EDGE_SEGMENTS);
    Position {
        msn: playlist.media_sequence + first as u64,
        part: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::parse;

    fn media(text: &str) -> MediaPlaylist {
        match parse(text).unwrap() {
            Playlist::Media(m) => m,
            Playlist::Master(_) => panic!("not media"),
        }
    }

    #[test]
    fn a_live_viewer_starts_three_segments_from_the_end_and_an_ended_one_at_the_start() {
        let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n");
        for n in 10..16 {
            text.push_str(&format!("#EXTINF:2.0,\n{n}.ts\n"));
        }
        assert_eq!(start_position(&media(&text)), Position { msn: 13, part: 0 });
        text.push_str("#EXT-X-ENDLIST\n");
        assert_eq!(start_position(&media(&text)), Position { msn: 10, part: 0 });
        let short = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n0.ts\n";
        assert_eq!(start_position(&media(short)), Position { msn: 0, part: 0 });
    }

    #[test]
    fn an_ll_viewer_starts_part_hold_back_from_the_edge_on_an_independent_part() {
        // Parts of 0.25 s, independent every other one, hold back 0.6 s.
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n\
            #EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-MEDIA-SEQUENCE:5\n\
            #EXT-X-PART:DURATION=0.25,URI=\"5.0\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.25,URI=\"5.1\"\n\
            #EXT-X-PART:DURATION=0.25,URI=\"5.2\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.25,URI=\"5.3\"\n#EXTINF:1.0,\n5.ts\n\
            #EXT-X-PART:DURATION=0.25,URI=\"6.0\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.25,URI=\"6.1\"\n";
        // From the end: 6.1 (0.25), 6.0 (0.5), 5.3 (0.75 >= 0.6) -> back to 5.2.
        assert_eq!(start_position(&media(text)), Position { msn: 5, part: 2 });
    }

    #[test]
    fn variant_policies_pick_by_bandwidth() {
        let v = |bandwidth, uri: &str| Variant {
            bandwidth,
            uri: uri.into(),
        };
        let list = [v(2_300_000, "mid"), v(500_000, "low"), v(5_800_000, "high")];
        assert_eq!(choose(&list, VariantPolicy::First).uri, "mid");
        assert_eq!(choose(&list, VariantPolicy::Highest).uri, "high");
        assert_eq!(choose(&list, VariantPolicy::Lowest).uri, "low");
        assert_eq!(
            choose(&list, VariantPolicy::Bandwidth(3_000_000)).uri,
            "mid"
        );
        assert_eq!(choose(&list, VariantPolicy::Bandwidth(100)).uri, "low");
    }
}
