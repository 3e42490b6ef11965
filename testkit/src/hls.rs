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
        } else if !line.starts_with('#') {
            if let Some(attributes) = pending.take() {
                master.variants.push(VariantEntry {
                    attributes,
                    uri: line.to_string(),
                });
            }
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
