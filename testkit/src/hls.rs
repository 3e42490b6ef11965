//! Reading HLS playlists in tests: master playlist variants and media playlist segments, as a
//! player would see them (independent of the code under test).

use std::collections::HashMap;

/// One `#EXT-X-STREAM-INF` (or `#EXT-X-I-FRAME-STREAM-INF`) entry.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantEntry {
    /// Attribute name to value, quotes removed.
    pub attributes: HashMap<String, String>,
    pub uri: String,
}

impl VariantEntry {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    pub fn number(&self, name: &str) -> Option<f64> {
        self.attr(name)?.parse().ok()
    }
}

/// A master playlist: stream variants and I-frame variants.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Master {
    pub variants: Vec<VariantEntry>,
    pub iframe_variants: Vec<VariantEntry>,
    pub lines: Vec<String>,
}

/// A media playlist's segments and tags.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Media {
    pub target_duration: Option<u64>,
    pub playlist_type: Option<String>,
    pub ended: bool,
    /// (EXTINF seconds as written, byte range if any, URI).
    pub segments: Vec<Segment>,
    /// EXTINF values exactly as written (to check formatting).
    pub extinf_texts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub duration: f64,
    /// (length, offset)
    pub byte_range: Option<(u64, u64)>,
    pub uri: String,
}

/// Splits an attribute list (`A=1,B="x,y"`), honouring quotes.
pub fn attributes(list: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            let next = quoted[end..].trim_start_matches('"');
            (quoted[..end].to_string(), next)
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(name.trim().to_string(), value);
        rest = next.strip_prefix(',').unwrap_or(next);
    }
    out
}

pub fn parse_master(text: &str) -> Master {
    let mut master = Master {
        lines: text.lines().map(String::from).collect(),
        ..Master::default()
    };
    let mut pending: Option<HashMap<String, String>> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(attributes(attrs));
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:") {
            let attributes = attributes(attrs);
            let uri = attributes.get("URI").cloned().unwrap_or_default();
            master
                .iframe_variants
                .push(VariantEntry { attributes, uri });
        } else if !line.starts_with('#')
            && let Some(attributes) = pending.take()
        {
            master.variants.push(VariantEntry {
                attributes,
                uri: line.to_string(),
            });
        }
    }
    master
}

pub fn parse_media(text: &str) -> Media {
    let mut media = Media::default();
    let mut duration = None;
    let mut range = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            media.target_duration = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-PLAYLIST-TYPE:") {
            media.playlist_type = Some(v.to_string());
        } else if line == "#EXT-X-ENDLIST" {
            media.ended = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let text = v.split(',').next().unwrap_or_default().to_string();
            duration = text.parse::<f64>().ok();
            media.extinf_texts.push(text);
        } else if let Some(v) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            let (len, off) = v.split_once('@').unwrap_or((v, "0"));
            range = Some((len.parse().unwrap_or(0), off.parse().unwrap_or(0)));
        } else if !line.starts_with('#') {
            media.segments.push(Segment {
                duration: duration.take().unwrap_or(f64::NAN),
                byte_range: range.take(),
                uri: line.to_string(),
            });
        }
    }
    media
}

/// One `#EXT-X-PART` of a low-latency media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct LlPart {
    /// Media sequence number of the segment it belongs to.
    pub msn: u64,
    /// Position in that segment, from 0.
    pub index: u32,
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

/// A low-latency (RFC 8216bis) media playlist: segments with their sequence numbers, parts,
/// the preload hint and the server-control attributes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlMedia {
    pub media_sequence: u64,
    pub target_duration: Option<u64>,
    pub part_target: Option<f64>,
    /// `EXT-X-SERVER-CONTROL` attributes.
    pub server_control: HashMap<String, String>,
    /// (media sequence number, EXTINF seconds, URI).
    pub segments: Vec<(u64, f64, String)>,
    pub parts: Vec<LlPart>,
    /// `EXT-X-PRELOAD-HINT` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-MAP` URIs in order.
    pub maps: Vec<String>,
    /// `EXT-X-PROGRAM-DATE-TIME` values in order.
    pub program_date_times: Vec<String>,
    pub ended: bool,
}

impl LlMedia {
    /// The newest part as (msn, index in its segment).
    pub fn last_part(&self) -> Option<(u64, u32)> {
        self.parts.last().map(|p| (p.msn, p.index))
    }

    /// Media sequence number of the last segment listed, the one still growing included.
    pub fn last_msn(&self) -> u64 {
        let complete = self.media_sequence + self.segments.len() as u64;
        match self.parts.last() {
            Some(p) if p.msn == complete => complete,
            _ => complete.saturating_sub(1),
        }
    }
}

pub fn parse_ll_media(text: &str) -> LlMedia {
    let mut media = LlMedia::default();
    let mut duration = None;
    let mut index = 0u32;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let msn = media.media_sequence + media.segments.len() as u64;
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media.media_sequence = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            media.target_duration = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            media.part_target = attributes(v)
                .get("PART-TARGET")
                .and_then(|t| t.parse().ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            media.server_control = attributes(v);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let a = attributes(v);
            media.parts.push(LlPart {
                msn,
                index,
                duration: a
                    .get("DURATION")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(f64::NAN),
                uri: a.get("URI").cloned().unwrap_or_default(),
                independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
            });
            index += 1;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            media.preload_hint = attributes(v).get("URI").cloned();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            media.maps.extend(attributes(v).get("URI").cloned());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            media.program_date_times.push(v.to_string());
        } else if line == "#EXT-X-ENDLIST" {
            media.ended = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = v.split(',').next().and_then(|d| d.parse::<f64>().ok());
        } else if !line.starts_with('#') {
            media
                .segments
                .push((msn, duration.take().unwrap_or(f64::NAN), line.to_string()));
            index = 0;
        }
    }
    media
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_attributes_keep_their_commas() {
        let a = attributes("BANDWIDTH=1,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1x2");
        assert_eq!(a["CODECS"], "avc1.64001f,mp4a.40.2");
        assert_eq!(a["RESOLUTION"], "1x2");
        assert_eq!(a["BANDWIDTH"], "1");
    }
}

/// What [`verify_ladder`] measured of one rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionReport {
    /// Folder name (the variant URI without `/index.m3u8`).
    pub name: String,
    /// (width, height) from ffprobe; `None` for audio-only.
    pub size: Option<(u64, u64)>,
    /// ffprobe's H.264 profile name, e.g. `High`.
    pub profile: Option<String>,
    /// Video bits per second over the whole rendition, from the packets.
    pub video_bps: f64,
    pub has_audio: bool,
    /// PTS (seconds) of the first video frame of each segment.
    pub segment_starts: Vec<f64>,
    pub segments: usize,
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

/// Checks a VOD ladder in `dir` (as the worker writes it: `master.m3u8`, `NAME/index.m3u8`,
/// `NAME/NNNNN.ts`) against the HLS rules and against itself, with ffprobe, panicking with a
/// description on the first violation:
/// - media playlists are VOD, ended, integer TARGETDURATION equal to `segment_secs`, EXTINF
///   written with three decimals; no segment longer than the target (the last one may hold a
///   tail of under half a second, its EXTINF still rounding to the target), all but the last
///   within a frame of it;
/// - BANDWIDTH is the peak segment bitrate and AVERAGE-BANDWIDTH the mean (1 %), peak within
///   200 % of the average;
/// - RESOLUTION and CODECS (profile and level) match the media, AAC is 48 kHz stereo;
/// - every video segment starts with a key frame, at the same instants in every rendition.
pub fn verify_ladder(dir: &std::path::Path, segment_secs: u64) -> Vec<RenditionReport> {
    use crate::clip::{probe, probe_packets};
    let master_text = std::fs::read_to_string(dir.join("master.m3u8"))
        .unwrap_or_else(|e| panic!("{}/master.m3u8: {e}", dir.display()));
    let master = parse_master(&master_text);
    assert!(!master.variants.is_empty(), "no variants:\n{master_text}");
    let mut reports = Vec::new();
    for variant in &master.variants {
        let name = variant.uri.trim_end_matches("/index.m3u8").to_string();
        let playlist_path = dir.join(&variant.uri);
        let text = std::fs::read_to_string(&playlist_path)
            .unwrap_or_else(|e| panic!("{}: {e}", playlist_path.display()));
        let media = parse_media(&text);
        assert_eq!(media.playlist_type.as_deref(), Some("VOD"), "{name}");
        assert!(media.ended, "{name}: no ENDLIST");
        assert_eq!(media.target_duration, Some(segment_secs), "{name}:\n{text}");
        for t in &media.extinf_texts {
            let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
            assert!(
                whole.parse::<u32>().is_ok() && frac.len() == 3,
                "{name}: EXTINF {t} is not a clean value"
            );
        }
        let n = media.segments.len();
        assert!(n >= 1, "{name}: no segments");
        let target = segment_secs as f64;
        let probed = probe(playlist_path.to_str().unwrap()).unwrap();
        let streams = probed["streams"].as_array().cloned().unwrap_or_default();
        let video = streams.iter().find(|s| s["codec_type"] == "video").cloned();
        let audio = streams.iter().find(|s| s["codec_type"] == "audio").cloned();
        let frame = video
            .as_ref()
            .map(|v| {
                let (a, b) = v["r_frame_rate"]
                    .as_str()
                    .and_then(|r| r.split_once('/'))
                    .unwrap_or(("30", "1"));
                num(&serde_json::json!(b)) / num(&serde_json::json!(a))
            })
            .unwrap_or(1024.0 / 48_000.0);
        for (i, s) in media.segments.iter().enumerate() {
            // The last segment may carry a short tail (a frame or two after the last GOP)
            // as long as its EXTINF still rounds to the target (RFC 8216 4.3.3.1).
            let limit = if i + 1 == n {
                target + 0.4995
            } else {
                target + 0.0005
            };
            assert!(
                s.duration <= limit,
                "{name}: segment {i} lasts {} s, above the {target} s target",
                s.duration
            );
            if i + 1 < n {
                assert!(
                    (s.duration - target).abs() <= frame + 0.0005,
                    "{name}: segment {i} lasts {} s, not within a frame of {target} s",
                    s.duration
                );
            }
        }
        let sizes: Vec<u64> = media
            .segments
            .iter()
            .map(|s| {
                std::fs::metadata(dir.join(&name).join(&s.uri))
                    .unwrap()
                    .len()
            })
            .collect();
        let total: f64 = media.segments.iter().map(|s| s.duration).sum();
        let peak = media
            .segments
            .iter()
            .zip(&sizes)
            .map(|(s, &b)| b as f64 * 8.0 / s.duration)
            .fold(0.0, f64::max);
        let average = sizes.iter().sum::<u64>() as f64 * 8.0 / total;
        let bandwidth = variant.number("BANDWIDTH").expect("BANDWIDTH");
        let avg_bandwidth = variant
            .number("AVERAGE-BANDWIDTH")
            .expect("AVERAGE-BANDWIDTH");
        assert!(
            (bandwidth / peak - 1.0).abs() < 0.01,
            "{name}: BANDWIDTH {bandwidth} vs measured peak {peak}"
        );
        assert!(
            (avg_bandwidth / average - 1.0).abs() < 0.01,
            "{name}: AVERAGE-BANDWIDTH {avg_bandwidth} vs measured {average}"
        );
        assert!(
            bandwidth <= 2.0 * avg_bandwidth,
            "{name}: peak above 200 % of average"
        );
        let codecs = variant.attr("CODECS").expect("CODECS");
        if let Some(a) = &audio {
            assert_eq!(a["codec_name"], "aac", "{name}");
            assert_eq!(a["sample_rate"], "48000", "{name}");
            assert_eq!(a["channels"], 2, "{name}");
            assert!(codecs.contains("mp4a.40.2"), "{name}: {codecs}");
        } else {
            assert!(
                !codecs.contains("mp4a"),
                "{name}: lists audio it does not have"
            );
        }
        let mut report = RenditionReport {
            name: name.clone(),
            size: None,
            profile: None,
            video_bps: 0.0,
            has_audio: audio.is_some(),
            segment_starts: Vec::new(),
            segments: n,
        };
        if let Some(v) = &video {
            let (w, h) = (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap());
            assert_eq!(
                variant.attr("RESOLUTION"),
                Some(format!("{w}x{h}").as_str()),
                "{name}"
            );
            let level = v["level"].as_u64().unwrap();
            let profile_idc = match v["profile"].as_str() {
                Some("High") => "64",
                Some("Main") => "4d",
                Some("Constrained Baseline") | Some("Baseline") => "42",
                other => panic!("{name}: unexpected profile {other:?}"),
            };
            let first = codecs.split(',').next().unwrap();
            assert!(
                first.starts_with(&format!("avc1.{profile_idc}"))
                    && first.ends_with(&format!("{level:02x}")),
                "{name}: CODECS {first} vs profile {} level {level}",
                v["profile"]
            );
            assert!(variant.attr("FRAME-RATE").is_some(), "{name}: FRAME-RATE");
            let mut bytes = 0u64;
            for s in &media.segments {
                let path = dir.join(&name).join(&s.uri);
                let packets = probe_packets(path.to_str().unwrap()).unwrap();
                let video_packets: Vec<&serde_json::Value> = packets["packets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["codec_type"] == "video")
                    .collect();
                let first = video_packets
                    .first()
                    .unwrap_or_else(|| panic!("{name}/{}: no video", s.uri));
                assert!(
                    first["flags"].as_str().unwrap_or("").starts_with('K'),
                    "{name}/{} does not start with a key frame",
                    s.uri
                );
                report.segment_starts.push(num(&first["pts_time"]));
                bytes += video_packets
                    .iter()
                    .map(|p| num(&p["size"]) as u64)
                    .sum::<u64>();
            }
            report.size = Some((w, h));
            report.profile = v["profile"].as_str().map(String::from);
            report.video_bps = bytes as f64 * 8.0 / total;
        } else {
            assert!(
                variant.attr("RESOLUTION").is_none(),
                "{name}: audio-only with RESOLUTION"
            );
        }
        reports.push(report);
    }
    let video: Vec<&RenditionReport> = reports.iter().filter(|r| r.size.is_some()).collect();
    for r in video.iter().skip(1) {
        assert_eq!(
            r.segment_starts, video[0].segment_starts,
            "{} cuts at other instants than {}",
            r.name, video[0].name
        );
    }
    reports
}
