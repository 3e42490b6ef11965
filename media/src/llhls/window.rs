//! The live window of one LL-HLS rendition: recent segments with their parts and init
//! segments, and the media playlist that lists them.
//!
//! Invariants: the playlist lists the last `window` complete segments and the open one; parts
//! are listed only for segments that end within three target durations of the live edge
//! (RFC 8216bis 6.2.2); segments stay downloadable for one more window after they leave the
//! playlist, parts as long as their segment is listed; `EXT-X-TARGETDURATION` only grows.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::packager::{Event, Part, SegmentEnd, SegmentStart};
use super::{init_uri, part_uri, segment_uri, ticks};

/// What the window lists and how the playlist announces parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowConfig {
    /// Complete segments listed.
    pub window: usize,
    /// `EXT-X-PART-INF:PART-TARGET`; the packager's part target.
    pub part_target: Duration,
    /// The packager's segment target: the floor of `EXT-X-TARGETDURATION`.
    pub segment_target: Duration,
}

/// `EXT-X-RENDITION-REPORT` for another rendition of the same stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// That rendition's media playlist, relative to this one.
    pub uri: String,
    pub last_msn: u64,
    pub last_part: u32,
}

/// How far the rendition has got: what blocking playlist requests wait on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// The newest part: (media sequence of its segment, index in the segment).
    pub last_part: Option<(u64, u32)>,
    /// The newest complete segment.
    pub last_segment: Option<u64>,
    /// Number of the part after the newest (the preload hint).
    pub next_part: u64,
    /// The stream ended: nothing more will come.
    pub ended: bool,
}

impl Position {
    /// The playlist already holds what `_HLS_msn=msn` (and `_HLS_part=part`) waits for: the
    /// segment, or that part of it or a later part (RFC 8216bis 6.2.5.2).
    pub fn satisfies(&self, msn: u64, part: Option<u32>) -> bool {
        match part {
            None => self.last_segment.is_some_and(|last| last >= msn),
            Some(part) => self.last_part.is_some_and(|last| last >= (msn, part)),
        }
    }

    /// Media sequence number of the last segment in the playlist (the open one included).
    pub fn last_msn(&self) -> Option<u64> {
        match (self.last_part, self.last_segment) {
            (Some((m, _)), Some(s)) => Some(m.max(s)),
            (Some((m, _)), None) => Some(m),
            (None, s) => s,
        }
    }
}

#[derive(Debug)]
struct PartEntry {
    number: u64,
    duration_90k: u64,
    independent: bool,
    data: Bytes,
}

#[derive(Debug)]
struct SegmentEntry {
    start: SegmentStart,
    parts: Vec<PartEntry>,
    /// Set once complete.
    end: Option<(u64, Bytes)>,
}

/// The window. See the module documentation.
#[derive(Debug)]
pub struct Window {
    config: WindowConfig,
    inits: VecDeque<(u64, Bytes)>,
    /// Oldest first; complete ones, then at most one open one.
    segments: VecDeque<SegmentEntry>,
    discontinuity_sequence: u64,
    target_duration: u64,
    position: Position,
}

impl Window {
    pub fn new(config: WindowConfig) -> Self {
        let target_duration = config.segment_target.as_secs_f64().ceil().max(1.0) as u64;
        Window {
            config: WindowConfig {
                window: config.window.max(1),
                ..config
            },
            inits: VecDeque::new(),
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            target_duration,
            position: Position::default(),
        }
    }

    pub fn position(&self) -> Position {
        self.position
    }

    /// `EXT-X-TARGETDURATION` in seconds.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Nothing has been packaged yet.
    pub fn is_empty(&self) -> bool {
        self.position.last_part.is_none()
    }

    /// Applies what the packager produced.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Init { id, data } => self.inits.push_back((id, data)),
            Event::SegmentStart(start) => self.segments.push_back(SegmentEntry {
                start,
                parts: Vec::new(),
                end: None,
            }),
            Event::Part(part) => self.add_part(part),
            Event::SegmentEnd(end) => self.end_segment(end),
        }
    }

    /// Marks the stream ended: `EXT-X-ENDLIST`, no preload hint. Call after the packager's
    /// `finish`.
    pub fn end(&mut self) {
        self.position.ended = true;
    }

    fn add_part(&mut self, part: Part) {
        let Some(segment) = self.segments.back_mut().filter(|s| s.start.msn == part.msn) else {
            return;
        };
        self.position.last_part = Some((part.msn, part.index));
        self.position.next_part = part.number + 1;
        segment.parts.push(PartEntry {
            number: part.number,
            duration_90k: part.duration_90k,
            independent: part.independent,
            data: part.data,
        });
    }

    fn end_segment(&mut self, end: SegmentEnd) {
        let Some(segment) = self.segments.back_mut().filter(|s| s.start.msn == end.msn) else {
            return;
        };
        if segment.parts.is_empty() {
            // A segment without media is not worth listing.
            self.segments.pop_back();
            return;
        }
        let mut data = Vec::with_capacity(segment.parts.iter().map(|p| p.data.len()).sum());
        for part in &segment.parts {
            data.extend_from_slice(&part.data);
        }
        segment.end = Some((end.duration_90k, Bytes::from(data)));
        self.position.last_segment = Some(end.msn);
        let rounded = (end.duration_90k + 45_000) / 90_000;
        self.target_duration = self.target_duration.max(rounded);

        let window = self.config.window;
        let complete = self.segments.iter().filter(|s| s.end.is_some()).count();
        if complete > window {
            // The segment that just left the playlist; its parts are no longer listed.
            let left = &mut self.segments[complete - window - 1];
            if left.start.discontinuity {
                self.discontinuity_sequence += 1;
            }
            left.parts = Vec::new();
        }
        while self.segments.iter().filter(|s| s.end.is_some()).count() > 2 * window {
            self.segments.pop_front();
        }
        let oldest_init = self.segments.front().map(|s| s.start.init_id);
        while self.inits.len() > 1 && self.inits.front().map(|i| i.0) < oldest_init {
            self.inits.pop_front();
        }
    }

    pub fn init(&self, id: u64) -> Option<Bytes> {
        self.inits.iter().find(|i| i.0 == id).map(|i| i.1.clone())
    }

    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        let first = self.segments.front()?.start.msn;
        let segment = self
            .segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)?;
        segment
            .end
            .as_ref()
            .filter(|_| segment.start.msn == msn)
            .map(|e| e.1.clone())
    }

    pub fn part(&self, number: u64) -> Option<Bytes> {
        self.segments
            .iter()
            .rev()
            .flat_map(|s| s.parts.iter().rev())
            .take_while(|p| p.number >= number)
            .find(|p| p.number == number)
            .map(|p| p.data.clone())
    }

    /// This rendition as another rendition's playlist reports it.
    pub fn report(&self, uri: String) -> Option<RenditionReport> {
        let (last_msn, last_part) = self.position.last_part?;
        Some(RenditionReport {
            uri,
            last_msn,
            last_part,
        })
    }

    /// The media playlist.
    pub fn render(&self, reports: &[RenditionReport]) -> String {
        let window = self.config.window;
        let complete = self.segments.iter().filter(|s| s.end.is_some()).count();
        let listed: Vec<&SegmentEntry> = self
            .segments
            .iter()
            .skip(complete.saturating_sub(window))
            .filter(|s| s.end.is_some() || !s.parts.is_empty())
            .collect();
        // Parts are listed for segments ending within three target durations of the edge.
        let horizon = 3 * self.target_duration * 90_000;
        let mut with_parts = vec![false; listed.len()];
        let mut after = 0u64;
        for (i, segment) in listed.iter().enumerate().rev() {
            with_parts[i] = after < horizon;
            after += segment.end.as_ref().map_or_else(
                || segment.parts.iter().map(|p| p.duration_90k).sum(),
                |e| e.0,
            );
        }

        let part_target = ticks(self.config.part_target);
        let mut out = String::with_capacity(256 + listed.len() * 400);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", secs(part_target));
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={}",
            secs(3 * part_target)
        );
        let first_msn = listed.first().map_or(0, |s| s.start.msn);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        let mut init = None;
        for (segment, parts) in listed.iter().zip(with_parts) {
            if segment.start.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if init != Some(segment.start.init_id) {
                init = Some(segment.start.init_id);
                let _ = writeln!(
                    out,
                    "#EXT-X-MAP:URI=\"{}\"",
                    init_uri(segment.start.init_id)
                );
            }
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                date_time(segment.start.program_date_time)
            );
            if parts {
                for part in &segment.parts {
                    let _ = write!(
                        out,
                        "#EXT-X-PART:DURATION={},URI=\"{}\"",
                        secs(part.duration_90k),
                        part_uri(part.number)
                    );
                    if part.independent {
                        out.push_str(",INDEPENDENT=YES");
                    }
                    out.push('\n');
                }
            }
            if let Some((duration, _)) = &segment.end {
                let _ = writeln!(out, "#EXTINF:{},", secs(*duration));
                out.push_str(&segment_uri(segment.start.msn));
                out.push('\n');
            }
        }
        if self.position.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if self.position.last_part.is_some() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                part_uri(self.position.next_part)
            );
        }
        for report in reports {
            let _ = writeln!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
                report.uri, report.last_msn, report.last_part
            );
        }
        out
    }
}

/// 90 kHz ticks as seconds with five decimals (exact for whole milliseconds), rounded.
fn secs(ticks: u64) -> String {
    let hundred_thousandths = (u128::from(ticks) * 100_000 + 45_000) / 90_000;
    format!(
        "{}.{:05}",
        hundred_thousandths / 100_000,
        hundred_thousandths % 100_000
    )
}

/// ISO 8601 / RFC 3339 UTC with milliseconds, as `EXT-X-PROGRAM-DATE-TIME` wants.
fn date_time(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}
