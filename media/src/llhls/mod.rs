//! Low-latency HLS (RFC 8216bis): CMAF parts and segments, and the media playlist that lists
//! them with `EXT-X-PART`, `EXT-X-PRELOAD-HINT` and `EXT-X-SERVER-CONTROL`.
//!
//! Three pure pieces, one per rendition:
//! - [`units::TagUnits`] turns RTMP/FLV audio and video tags into access units on one
//!   continuous 90 kHz timeline (only the passthrough rendition needs it; a transcoder feeds
//!   its own access units);
//! - [`Packager`] cuts access units into parts and segments (fMP4 fragments);
//! - [`Window`] keeps the recent segments and parts and renders the playlist.
//!
//! Naming: the init segment of the segments starting at media sequence `M` is `init-M.mp4`,
//! segment `M` is `M.m4s`, and parts are numbered across segments, `pN.m4s`, so the preload
//! hint always names the next part whether or not it starts a new segment. Numbers start at
//! the packager's first sequence number, which the origin takes from the wall clock, so no
//! name repeats across publish sessions of a stream (players and caches keep media for long).

mod packager;
#[cfg(test)]
mod tests;
pub mod units;
mod window;

pub use packager::{
    AudioFrame, Event, Packager, PackagerConfig, Part, SegmentEnd, SegmentStart, Tracks, VideoFrame,
};
pub use window::{Position, RenditionReport, Window, WindowConfig};

use std::time::Duration;

/// 90 kHz ticks in `d`, rounded down.
pub(crate) fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros() * 9 / 100).unwrap_or(u64::MAX)
}

/// URI of the init segment `id`, relative to the media playlist.
pub fn init_uri(id: u64) -> String {
    format!("init-{id}.mp4")
}

/// URI of segment `msn`, relative to the media playlist.
pub fn segment_uri(msn: u64) -> String {
    format!("{msn}.m4s")
}

/// URI of part number `number`, relative to the media playlist.
pub fn part_uri(number: u64) -> String {
    format!("p{number}.m4s")
}

/// What a file name in a rendition's folder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Playlist,
    Init(u64),
    Segment(u64),
    Part(u64),
}

impl Resource {
    /// Parses a file name made by [`init_uri`], [`segment_uri`], [`part_uri`], or
    /// `index.m3u8`; `None` for anything else.
    pub fn parse(file: &str) -> Option<Resource> {
        if file == "index.m3u8" {
            return Some(Resource::Playlist);
        }
        let number = |s: &str| {
            s.parse::<u64>()
                .ok()
                .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        };
        if let Some(id) = file
            .strip_prefix("init-")
            .and_then(|s| s.strip_suffix(".mp4"))
        {
            return number(id).map(Resource::Init);
        }
        let stem = file.strip_suffix(".m4s")?;
        match stem.strip_prefix('p') {
            Some(n) => number(n).map(Resource::Part),
            None => number(stem).map(Resource::Segment),
        }
    }
}

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn file_names_round_trip_and_strangers_are_refused() {
        assert_eq!(Resource::parse(&init_uri(17)), Some(Resource::Init(17)));
        assert_eq!(
            Resource::parse(&segment_uri(42)),
            Some(Resource::Segment(42))
        );
        assert_eq!(Resource::parse(&part_uri(9)), Some(Resource::Part(9)));
        assert_eq!(Resource::parse("index.m3u8"), Some(Resource::Playlist));
        for bad in [
            "1.ts",
            "p.m4s",
            "p-1.m4s",
            "+1.m4s",
            "init-.mp4",
            "init-x.mp4",
            "x.m4s",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad}");
        }
    }
}
