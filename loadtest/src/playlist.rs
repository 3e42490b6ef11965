//! HLS playlists as a player reads them (RFC 8216 and 8216bis): the master's variants, and a
//! media playlist's segments, partial segments, preload hint and server control. Pure: text
//! in, structs out; URIs stay as written (the viewer resolves them against the playlist URL).

use std::collections::HashMap;

/// Why a body is not a playlist the viewer can follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaylistError {
    #[error("not an HLS playlist (no #EXTM3U on the first line)")]
    NotHls,
    #[error("a master playlist without any #EXT-X-STREAM-INF variant")]
    NoVariants,
    #[error("a media playlist without #EXT-X-TARGETDURATION")]
    NoTargetDuration,
}

/// One `#EXT-X-STREAM-INF` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// `BANDWIDTH`, bits per second (0 when missing, which the spec forbids).
    pub bandwidth: u64,
    pub uri: String,
}

/// A partial segment (`#EXT-X-PART`).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Seconds of media.
    pub duration: f64,
    pub uri: String,
    /// `INDEPENDENT=YES`: playback can start here.
    pub independent: bool,
}

/// A complete media segment, with the parts it was published as (if still listed).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Seconds of media (`#EXTINF`).
    pub duration: f64,
    pub uri: String,
    pub parts: Vec<Part>,
    /// The `#EXT-X-MAP` URI in force for this segment (fMP4 initialisation section).
    pub map: Option<String>,
}

/// A media playlist, reduced to what a player needs to follow it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION`, seconds.
    pub target_duration: f64,
    /// `#EXT-X-MEDIA-SEQUENCE` (0 when absent).
    pub media_sequence: u64,
    /// Complete segments, oldest first; `segments[i].msn == media_sequence + i`.
    pub segments: Vec<Segment>,
    /// Parts of the segment still being written (its msn is [`MediaPlaylist::next_msn`]).
    pub trailing_parts: Vec<Part>,
    /// The `#EXT-X-MAP` in force after the last segment (for the trailing parts).
    pub trailing_map: Option<String>,
    /// `#EXT-X-PRELOAD-HINT:TYPE=PART` URI: the next part, which the server will answer
    /// as soon as it exists.
    pub preload_hint: Option<String>,
    /// `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `#EXT-X-PART-INF:PART-TARGET`, seconds.
    pub part_target: Option<f64>,
    /// `#EXT-X-SERVER-CONTROL:PART-HOLD-BACK`, seconds.
    pub part_hold_back: Option<f64>,
    /// `#EXT-X-ENDLIST`: nothing more will be added.
    pub ended: bool,
}

impl MediaPlaylist {
    /// The media sequence number the next complete segment will have.
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Whether any partial segment is listed (the playlist is LL-HLS in practice).
    pub fn has_parts(&self) -> bool {
        !self.trailing_parts.is_empty() || self.segments.iter().any(|s| !s.parts.is_empty())
    }
}

/// What a URL pointed at.
#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    Master(Vec<Variant>),
    Media(MediaPlaylist),
}

/// Splits an attribute list (`A=1,B="x,y"`), honouring quotes.
fn attributes(list: &str) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted[end..].trim_start_matches('"'))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(name.trim(), value);
        rest = next.strip_prefix(',').unwrap_or(next);
    }
    out
}

fn seconds(value: Option<&&str>) -> Option<f64> {
    value
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// Parses a master or a media playlist (a URL given as "the master" may be either: nginx-rtmp
/// serves a media playlist there unless `hls_variant` is set).
pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err(PlaylistError::NotHls);
    }
    if text.contains("#EXT-X-STREAM-INF:") {
        parse_master(text).map(Playlist::Master)
    } else {
        parse_media(text).map(Playlist::Media)
    }
}

fn parse_master(text: &str) -> Result<Vec<Variant>, PlaylistError> {
    let mut variants = Vec::new();
    let mut pending: Option<u64> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let attrs = attributes(attrs);
            pending = Some(
                attrs
                    .get("BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0),
            );
        } else if !line.starts_with('#')
            && let Some(bandwidth) = pending.take()
        {
            variants.push(Variant {
                bandwidth,
                uri: line.to_string(),
            });
        }
    }
    if variants.is_empty() {
        return Err(PlaylistError::NoVariants);
    }
    Ok(variants)
}

fn parse_media(text: &str) -> Result<MediaPlaylist, PlaylistError> {
    let mut playlist = MediaPlaylist::default();
    let mut target = None;
    let mut duration = 0.0;
    let mut parts = Vec::new();
    let mut map: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            playlist.media_sequence = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = v
                .split(',')
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let attrs = attributes(v);
            if let Some(uri) = attrs.get("URI") {
                parts.push(Part {
                    duration: seconds(attrs.get("DURATION")).unwrap_or(0.0),
                    uri: uri.to_string(),
                    independent: attrs.get("INDEPENDENT") == Some(&"YES"),
                });
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            let attrs = attributes(v);
            if attrs.get("TYPE") == Some(&"PART") {
                playlist.preload_hint = attrs.get("URI").map(|u| u.to_string());
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            let attrs = attributes(v);
            playlist.can_block_reload = attrs.get("CAN-BLOCK-RELOAD") == Some(&"YES");
            playlist.part_hold_back = seconds(attrs.get("PART-HOLD-BACK"));
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            playlist.part_target = seconds(attributes(v).get("PART-TARGET"));
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            map = attributes(v).get("URI").map(|u| u.to_string());
        } else if line == "#EXT-X-ENDLIST" {
            playlist.ended = true;
        } else if !line.starts_with('#') {
            let msn = playlist.next_msn();
            playlist.segments.push(Segment {
                msn,
                duration,
                uri: line.to_string(),
                parts: std::mem::take(&mut parts),
                map: map.clone(),
            });
            duration = 0.0;
        }
    }
    playlist.target_duration = target.ok_or(PlaylistError::NoTargetDuration)?;
    playlist.trailing_parts = parts;
    playlist.trailing_map = map;
    Ok(playlist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_lists_its_variants_with_bandwidth() {
        let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS=\"avc1.4d401f,mp4a.40.2\"\n\
                    low/index.m3u8\n#EXT-X-STREAM-INF:RESOLUTION=1920x1080,BANDWIDTH=5800000\n\
                    high/index.m3u8\n";
        let Playlist::Master(variants) = parse(text).unwrap() else {
            panic!("not a master");
        };
        assert_eq!(
            variants,
            vec![
                Variant {
                    bandwidth: 500_000,
                    uri: "low/index.m3u8".into()
                },
                Variant {
                    bandwidth: 5_800_000,
                    uri: "high/index.m3u8".into()
                },
            ]
        );
    }

    #[test]
    fn a_live_media_playlist_numbers_its_segments_from_the_media_sequence() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
                    #EXTINF:2.000,\n41.ts\n#EXTINF:1.960,\n42.ts\n";
        let Playlist::Media(p) = parse(text).unwrap() else {
            panic!("not media");
        };
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.segments.len(), 2);
        assert_eq!((p.segments[1].msn, p.segments[1].duration), (42, 1.96));
        assert_eq!(p.segments[1].uri, "42.ts");
        assert_eq!(p.next_msn(), 43);
        assert!(!p.ended && !p.can_block_reload && !p.has_parts());
    }

    #[test]
    fn ll_hls_parts_belong_to_the_segment_that_follows_them_and_the_rest_trail() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.75\n\
            #EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXT-X-PART:DURATION=0.5,URI=\"7.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.5,URI=\"7.1.m4s\"\n#EXTINF:1.0,\n7.m4s\n\
            #EXT-X-PART:DURATION=0.25,URI=\"8.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"8.1.m4s\"\n";
        let Playlist::Media(p) = parse(text).unwrap() else {
            panic!("not media");
        };
        assert!(p.can_block_reload);
        assert_eq!(p.part_hold_back, Some(0.75));
        assert_eq!(p.part_target, Some(0.25));
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].parts.len(), 2);
        assert!(p.segments[0].parts[0].independent && !p.segments[0].parts[1].independent);
        assert_eq!(p.segments[0].map.as_deref(), Some("init.mp4"));
        assert_eq!(p.trailing_parts.len(), 1);
        assert_eq!(p.trailing_parts[0].uri, "8.0.m4s");
        assert_eq!(p.preload_hint.as_deref(), Some("8.1.m4s"));
        assert_eq!(p.next_msn(), 8);
        assert!(p.has_parts());
    }

    #[test]
    fn bodies_that_are_not_followable_playlists_are_named() {
        assert_eq!(parse("<html>"), Err(PlaylistError::NotHls));
        assert_eq!(
            parse("#EXTM3U\n#EXTINF:2,\n1.ts\n"),
            Err(PlaylistError::NoTargetDuration)
        );
        assert_eq!(
            parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n"),
            Err(PlaylistError::NoVariants)
        );
        let Playlist::Media(p) =
            parse("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n").unwrap()
        else {
            panic!("not media");
        };
        assert!(p.ended);
    }
}
