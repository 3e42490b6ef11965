//! HLS playlist writing (RFC 8216): media playlists (live sliding window, event, VOD and
//! I-frame-only), master playlists, and [`LiveWindow`], the sliding-window state a live origin
//! keeps per rendition.
//!
//! Rendering is infallible. URIs are written as given except that characters which cannot
//! appear in a URI line or quoted attribute (CR, LF, `"`) are percent-encoded, so a hostile
//! stream name can never inject playlist tags.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

/// One media segment as listed in a media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// Media sequence number of the segment.
    pub sequence: u64,
    pub duration: Duration,
    /// Write `#EXT-X-DISCONTINUITY` before this segment.
    pub discontinuity: bool,
    pub uri: String,
    /// `#EXT-X-BYTERANGE` (length, optional offset), for I-frame playlists and byte-range
    /// addressed segments.
    pub byte_range: Option<(u64, Option<u64>)>,
}

impl SegmentRef {
    pub fn new(sequence: u64, duration: Duration, discontinuity: bool, uri: String) -> Self {
        SegmentRef {
            sequence,
            duration,
            discontinuity,
            uri,
            byte_range: None,
        }
    }
}

/// `#EXT-X-PLAYLIST-TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    Vod,
    Event,
}

/// A media playlist. Build one with struct syntax or [`MediaPlaylist::live`]/
/// [`MediaPlaylist::vod`], then [`MediaPlaylist::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist<'a> {
    pub segments: &'a [SegmentRef],
    /// `#EXT-X-MEDIA-SEQUENCE`: sequence number of the first listed segment.
    pub media_sequence: u64,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE`, written when non-zero.
    pub discontinuity_sequence: u64,
    /// Lower bound for `#EXT-X-TARGETDURATION` in whole seconds. The written value is the
    /// larger of this and the longest segment rounded up, so it is never below any EXTINF.
    pub min_target_duration: u64,
    pub playlist_type: Option<PlaylistType>,
    /// Write `#EXT-X-ENDLIST`.
    pub ended: bool,
    /// Write `#EXT-X-INDEPENDENT-SEGMENTS` (every segment starts with a key frame).
    pub independent_segments: bool,
    /// Write `#EXT-X-I-FRAMES-ONLY` (segments are byte ranges of single I-frames).
    pub i_frames_only: bool,
    /// Derive `#EXT-X-TARGETDURATION` from each EXTINF rounded to the nearest second, the
    /// RFC 8216 (4.3.3.1) rule, instead of rounded up. VOD playlists use it, so 6.006 s segments
    /// (29.97 frames/s, 2 s GOPs) keep a target of 6; live playlists round up, the cautious
    /// choice for players that refresh by the target.
    pub nearest_target: bool,
}

impl<'a> MediaPlaylist<'a> {
    /// A live sliding-window playlist.
    pub fn live(
        segments: &'a [SegmentRef],
        media_sequence: u64,
        discontinuity_sequence: u64,
    ) -> Self {
        MediaPlaylist {
            segments,
            media_sequence,
            discontinuity_sequence,
            min_target_duration: 0,
            playlist_type: None,
            ended: false,
            independent_segments: false,
            i_frames_only: false,
            nearest_target: false,
        }
    }

    /// A complete VOD playlist: `#EXT-X-PLAYLIST-TYPE:VOD`, media sequence of the first segment,
    /// `#EXT-X-ENDLIST`.
    pub fn vod(segments: &'a [SegmentRef]) -> Self {
        MediaPlaylist {
            media_sequence: segments.first().map_or(0, |s| s.sequence),
            playlist_type: Some(PlaylistType::Vod),
            ended: true,
            nearest_target: true,
            ..MediaPlaylist::live(segments, 0, 0)
        }
    }

    /// The `#EXT-X-TARGETDURATION` this playlist will carry.
    pub fn target_duration(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| {
                if self.nearest_target {
                    nearest_secs(s.duration)
                } else {
                    ceil_secs(s.duration)
                }
            })
            .max()
            .unwrap_or(0)
            .max(self.min_target_duration)
            .max(1)
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128 + self.segments.len() * 48);
        let version = if self.i_frames_only || self.segments.iter().any(|s| s.byte_range.is_some())
        {
            4
        } else {
            3
        };
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{version}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration());
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence != 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        match self.playlist_type {
            Some(PlaylistType::Vod) => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
            Some(PlaylistType::Event) => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            None => {}
        }
        if self.independent_segments {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        if self.i_frames_only {
            out.push_str("#EXT-X-I-FRAMES-ONLY\n");
        }
        for seg in self.segments {
            if seg.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(out, "#EXTINF:{},", format_secs(seg.duration));
            if let Some((len, offset)) = seg.byte_range {
                match offset {
                    Some(o) => {
                        let _ = writeln!(out, "#EXT-X-BYTERANGE:{len}@{o}");
                    }
                    None => {
                        let _ = writeln!(out, "#EXT-X-BYTERANGE:{len}");
                    }
                }
            }
            out.push_str(&escape_uri(&seg.uri));
            out.push('\n');
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// A live (or, with `ended`, finished) sliding-window media playlist.
pub fn media_playlist(
    window: &[SegmentRef],
    media_sequence: u64,
    discontinuity_sequence: u64,
    ended: bool,
) -> String {
    MediaPlaylist {
        ended,
        ..MediaPlaylist::live(window, media_sequence, discontinuity_sequence)
    }
    .render()
}

/// One `#EXT-X-STREAM-INF` entry of a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Peak bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// (width, height) in pixels.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codec strings, e.g. `avc1.64001f`, `mp4a.40.2`.
    pub codecs: Vec<String>,
    pub frame_rate: Option<f64>,
    pub uri: String,
}

/// One `#EXT-X-I-FRAME-STREAM-INF` entry of a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct IFrameVariant {
    pub bandwidth: u64,
    pub resolution: Option<(u32, u32)>,
    pub codecs: Vec<String>,
    pub uri: String,
}

/// A master playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MasterPlaylist<'a> {
    pub variants: &'a [Variant],
    pub i_frame_variants: &'a [IFrameVariant],
    pub independent_segments: bool,
}

impl MasterPlaylist<'_> {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 + self.variants.len() * 160);
        out.push_str("#EXTM3U\n");
        let version = if self.i_frame_variants.is_empty() {
            3
        } else {
            4
        };
        let _ = writeln!(out, "#EXT-X-VERSION:{version}");
        if self.independent_segments {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        for v in self.variants {
            let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
            if let Some(avg) = v.average_bandwidth {
                let _ = write!(out, ",AVERAGE-BANDWIDTH={avg}");
            }
            if let Some((w, h)) = v.resolution {
                let _ = write!(out, ",RESOLUTION={w}x{h}");
            }
            if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
                let _ = write!(out, ",FRAME-RATE={fps:.3}");
            }
            if !v.codecs.is_empty() {
                let _ = write!(out, ",CODECS=\"{}\"", escape_uri(&v.codecs.join(",")));
            }
            out.push('\n');
            out.push_str(&escape_uri(&v.uri));
            out.push('\n');
        }
        for v in self.i_frame_variants {
            let _ = write!(out, "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={}", v.bandwidth);
            if let Some((w, h)) = v.resolution {
                let _ = write!(out, ",RESOLUTION={w}x{h}");
            }
            if !v.codecs.is_empty() {
                let _ = write!(out, ",CODECS=\"{}\"", escape_uri(&v.codecs.join(",")));
            }
            let _ = writeln!(out, ",URI=\"{}\"", escape_uri(&v.uri));
        }
        out
    }
}

/// A master playlist listing `variants` in the given order.
pub fn master_playlist(variants: &[Variant]) -> String {
    MasterPlaylist {
        variants,
        ..MasterPlaylist::default()
    }
    .render()
}

/// Sliding-window state of one live rendition: the last `window` segments, the media sequence
/// of the first one, and the discontinuity sequence (incremented whenever a segment carrying
/// a discontinuity leaves the window, as RFC 8216 6.2.1 requires).
///
/// The target duration only ever grows (RFC 8216 forbids changing it; growing is the least bad
/// option when a longer segment appears), starting from the configured floor.
#[derive(Debug, Clone)]
pub struct LiveWindow {
    window: usize,
    segments: VecDeque<SegmentRef>,
    discontinuity_sequence: u64,
    target_duration: u64,
}

impl LiveWindow {
    /// `window` segments are listed (at least 1); `min_target_duration` is the floor for
    /// `#EXT-X-TARGETDURATION` in seconds (use the segmenter's max fragment, rounded up, for a
    /// value that never changes).
    pub fn new(window: usize, min_target_duration: u64) -> Self {
        LiveWindow {
            window: window.max(1),
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            target_duration: min_target_duration.max(1),
        }
    }

    /// Adds a segment; returns the segments that left the window (oldest first), which the
    /// caller may delete after a grace period.
    pub fn push(&mut self, segment: SegmentRef) -> Vec<SegmentRef> {
        self.target_duration = self.target_duration.max(ceil_secs(segment.duration));
        self.segments.push_back(segment);
        let mut evicted = Vec::new();
        while self.segments.len() > self.window {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                evicted.push(old);
            }
        }
        evicted
    }

    pub fn segments(&self) -> impl ExactSizeIterator<Item = &SegmentRef> {
        self.segments.iter()
    }

    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.sequence)
    }

    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Renders the playlist; `ended` appends `#EXT-X-ENDLIST` (stream over).
    pub fn render(&self, ended: bool) -> String {
        let segments: Vec<SegmentRef> = self.segments.iter().cloned().collect();
        MediaPlaylist {
            ended,
            min_target_duration: self.target_duration,
            ..MediaPlaylist::live(
                &segments,
                self.media_sequence(),
                self.discontinuity_sequence,
            )
        }
        .render()
    }
}

/// Seconds with three decimals, as written in EXTINF.
fn format_secs(d: Duration) -> String {
    let ms = round_ms(d);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn round_ms(d: Duration) -> u128 {
    (d.as_nanos() + 500_000) / 1_000_000
}

/// Whole seconds, rounded up, of the duration as written (to the millisecond) in EXTINF.
fn ceil_secs(d: Duration) -> u64 {
    u64::try_from(round_ms(d).div_ceil(1000)).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded to the nearest, of the duration as written in EXTINF.
fn nearest_secs(d: Duration) -> u64 {
    u64::try_from((round_ms(d) + 500) / 1000).unwrap_or(u64::MAX)
}

/// Percent-encodes the characters that would break a playlist line or a quoted attribute.
fn escape_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            '"' => out.push_str("%22"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(sequence: u64, ms: u64, discontinuity: bool) -> SegmentRef {
        SegmentRef::new(
            sequence,
            Duration::from_millis(ms),
            discontinuity,
            format!("{sequence}.ts"),
        )
    }

    #[test]
    fn live_playlist_has_all_tags_in_order() {
        let window = [seg(7, 2000, false), seg(8, 2002, true), seg(9, 1500, false)];
        let text = media_playlist(&window, 7, 3, false);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:3\n#EXTINF:2.000,\n7.ts\n#EXT-X-DISCONTINUITY\n\
             #EXTINF:2.002,\n8.ts\n#EXTINF:1.500,\n9.ts\n"
        );
    }

    #[test]
    fn ended_playlist_without_discontinuities() {
        let text = media_playlist(&[seg(0, 2000, false)], 0, 0, true);
        assert!(!text.contains("DISCONTINUITY"));
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(text.ends_with("0.ts\n#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn target_duration_is_never_below_any_rounded_extinf() {
        for ms in [
            1, 999, 1000, 1001, 1999, 2000, 2001, 2499, 2500, 5999, 6000, 10_000,
        ] {
            let segs = [seg(0, ms, false)];
            let p = MediaPlaylist::live(&segs, 0, 0);
            let extinf = ms as f64 / 1000.0;
            assert!(p.target_duration() as f64 >= extinf, "{ms} ms");
            assert!((p.target_duration() as f64) < extinf + 1.0, "{ms} ms");
        }
        // Sub-millisecond excess is not rounded up to another second.
        let segs = [SegmentRef::new(
            0,
            Duration::from_nanos(2_000_000_400),
            false,
            "a".into(),
        )];
        assert_eq!(MediaPlaylist::live(&segs, 0, 0).target_duration(), 2);
    }

    #[test]
    fn vod_target_duration_rounds_to_the_nearest_second() {
        let segs = [
            seg(0, 6006, false),
            seg(1, 6006, false),
            seg(2, 2500, false),
        ];
        assert_eq!(MediaPlaylist::vod(&segs).target_duration(), 6);
        assert_eq!(MediaPlaylist::live(&segs, 0, 0).target_duration(), 7);
    }

    #[test]
    fn vod_playlist_has_type_and_endlist() {
        let segs = [seg(0, 6000, false), seg(1, 4000, false)];
        let text = MediaPlaylist {
            independent_segments: true,
            ..MediaPlaylist::vod(&segs)
        }
        .render();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:6\n"));
        assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn i_frame_playlist_uses_byte_ranges_and_version_4() {
        let mut a = seg(0, 2000, false);
        a.uri = "main.ts".into();
        a.byte_range = Some((9400, Some(376)));
        let mut b = a.clone();
        b.byte_range = Some((7520, None));
        let segs = [a, b];
        let text = MediaPlaylist {
            i_frames_only: true,
            ..MediaPlaylist::vod(&segs)
        }
        .render();
        assert!(text.contains("#EXT-X-VERSION:4\n"));
        assert!(text.contains("#EXT-X-I-FRAMES-ONLY\n"));
        assert!(text.contains("#EXTINF:2.000,\n#EXT-X-BYTERANGE:9400@376\nmain.ts\n"));
        assert!(text.contains("#EXT-X-BYTERANGE:7520\nmain.ts\n"));
    }

    #[test]
    fn master_playlist_lists_attributes() {
        let variants = [
            Variant {
                bandwidth: 2_200_000,
                average_bandwidth: Some(1_800_000),
                resolution: Some((1280, 720)),
                codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
                frame_rate: Some(30.0),
                uri: "live_1280/index.m3u8".into(),
            },
            Variant {
                bandwidth: 64_000,
                average_bandwidth: None,
                resolution: None,
                codecs: vec![],
                frame_rate: None,
                uri: "audio.m3u8".into(),
            },
        ];
        assert_eq!(
            master_playlist(&variants),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=2200000,\
             AVERAGE-BANDWIDTH=1800000,RESOLUTION=1280x720,FRAME-RATE=30.000,\
             CODECS=\"avc1.64001f,mp4a.40.2\"\nlive_1280/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=64000\naudio.m3u8\n"
        );
        let iframes = [IFrameVariant {
            bandwidth: 90_000,
            resolution: Some((1280, 720)),
            codecs: vec!["avc1.64001f".into()],
            uri: "iframes.m3u8".into(),
        }];
        let text = MasterPlaylist {
            variants: &variants[..1],
            i_frame_variants: &iframes,
            independent_segments: true,
        }
        .render();
        assert!(text.contains("#EXT-X-VERSION:4\n#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(text.ends_with(
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,RESOLUTION=1280x720,\
             CODECS=\"avc1.64001f\",URI=\"iframes.m3u8\"\n"
        ));
    }

    #[test]
    fn hostile_uris_cannot_inject_tags() {
        let mut s = seg(0, 1000, false);
        s.uri = "a.ts\n#EXT-X-ENDLIST\r\"".into();
        let text = media_playlist(&[s], 0, 0, false);
        assert!(!text.contains("\n#EXT-X-ENDLIST"));
        assert!(text.contains("a.ts%0A#EXT-X-ENDLIST%0D%22\n"));
    }

    #[test]
    fn live_window_slides_and_counts_discontinuities() {
        let mut w = LiveWindow::new(3, 2);
        assert!(w.render(false).contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
        for i in 0..3 {
            assert!(w.push(seg(i, 2000, i == 1)).is_empty());
        }
        assert_eq!(w.media_sequence(), 0);
        let evicted = w.push(seg(3, 2000, false));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].sequence, 0);
        assert_eq!(w.discontinuity_sequence(), 0, "seg 0 had no discontinuity");
        w.push(seg(4, 2000, false));
        assert_eq!(w.discontinuity_sequence(), 1, "seg 1's tag left the window");
        assert_eq!(w.media_sequence(), 2);
        assert_eq!(w.segments().len(), 3);
        let text = w.render(true);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn live_window_target_duration_never_shrinks() {
        let mut w = LiveWindow::new(2, 2);
        w.push(seg(0, 5200, false));
        assert_eq!(w.target_duration(), 6);
        w.push(seg(1, 2000, false));
        w.push(seg(2, 2000, false));
        assert_eq!(w.target_duration(), 6);
        assert!(w.render(false).contains("#EXT-X-TARGETDURATION:6\n"));
    }
}
