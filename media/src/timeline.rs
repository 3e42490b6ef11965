//! The live timeline: maps each stream's RTMP timestamps (milliseconds, 32-bit, may wrap or
//! jump) onto one continuous output timeline in 90 kHz ticks that starts at
//! [`OUTPUT_START_90K`].
//!
//! The 32-bit millisecond wrap is followed seamlessly. Timestamp jumps (encoder restarts, clock
//! steps) are rebased so the new timeline continues one frame after the old one, and they open
//! a new epoch (a packager starts a discontinuous segment there). Output DTS strictly increase
//! per stream. Shared by the MPEG-TS segmenter and the LL-HLS access-unit source.

use std::time::Duration;

/// Output timeline origin: the first frame's DTS, in 90 kHz ticks (10 s). Leaves room for the
/// PCR offset and for audio that starts slightly before the first key frame.
pub const OUTPUT_START_90K: u64 = 900_000;
const OUTPUT_START_MS: i64 = 10_000;

/// Which elementary stream a timestamp belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// Maps one stream's input timestamps onto the output timeline.
#[derive(Debug, Clone, Default)]
struct StreamClock {
    last_in: Option<u32>,
    last_out_ms: i64,
    /// Last positive input step, ms; the frame duration estimate.
    last_step_ms: i64,
    epoch: u64,
    /// Last DTS handed out, 90 kHz, to keep the stream strictly increasing.
    last_dts: Option<u64>,
}

/// Signed difference `a - b` of two 32-bit millisecond timestamps, modulo 2^32.
fn ts_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The audio and video clocks of one publish. See the module documentation.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// A forward step larger than this (within one stream) is a discontinuity.
    jump_threshold: Duration,
    /// A backward step larger than this (within one stream) is a discontinuity; smaller steps
    /// are clamped to keep output monotonic.
    backward_tolerance: Duration,
    video: StreamClock,
    audio: StreamClock,
    /// Newest epoch handed out.
    epoch: u64,
    /// Largest output timestamp handed out so far (ms).
    max_out_ms: i64,
    /// The input timestamp that maps to the output origin; `None`: the first frame's.
    anchor: Option<u32>,
}

impl Timeline {
    pub fn new(jump_threshold: Duration, backward_tolerance: Duration) -> Self {
        Timeline {
            jump_threshold,
            backward_tolerance,
            video: StreamClock::default(),
            audio: StreamClock::default(),
            epoch: 0,
            max_out_ms: OUTPUT_START_MS,
            anchor: None,
        }
    }

    /// Maps input timestamp `anchor` (not the first frame's) to the output origin. Renditions
    /// of one publish (the passthrough and the transcoded rungs, which keep the source's
    /// timestamps) given the same anchor share one output timeline, however late each starts.
    pub fn anchored(mut self, anchor: Option<u32>) -> Self {
        self.anchor = anchor;
        self
    }

    /// Starts a new epoch for `track` (its decoder configuration changed).
    pub fn bump_epoch(&mut self, track: Track) {
        self.epoch += 1;
        let epoch = self.epoch;
        self.clock_mut(track).epoch = epoch;
    }

    /// The last positive step between two video timestamps, in ms: the frame duration
    /// estimate. `None` before two video frames.
    pub fn video_step_ms(&self) -> Option<u64> {
        u64::try_from(self.video.last_step_ms)
            .ok()
            .filter(|&s| s > 0)
    }

    fn clock_mut(&mut self, track: Track) -> &mut StreamClock {
        match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        }
    }

    /// Maps an input timestamp onto the output timeline; returns (DTS in 90 kHz, epoch).
    pub fn map(&mut self, track: Track, t: u32) -> (u64, u64) {
        let forward = millis(self.jump_threshold);
        let backward = millis(self.backward_tolerance);
        let (me, other) = match track {
            Track::Video => (&self.video, &self.audio),
            Track::Audio => (&self.audio, &self.video),
        };
        let gap = if me.last_step_ms > 0 {
            me.last_step_ms.min(1_000)
        } else if track == Track::Video {
            33
        } else {
            21
        };
        let own = me.last_in.map(|l| ts_diff(t, l));
        // The other stream's clock predicts where this frame belongs when our own cannot
        // (first frame, or after a gap in this stream alone, or after the other stream
        // already jumped with the same encoder clock).
        let via_other = other
            .last_in
            .map(|l| ts_diff(t, l))
            .filter(|d| d.abs() <= forward)
            .map(|d| (other.last_out_ms + d, other.epoch))
            .filter(|&(out, _)| me.last_in.is_none() || out >= me.last_out_ms - backward);
        let (out, epoch, step) = match (own, via_other) {
            (Some(d), _) if d >= -backward && d <= forward => (me.last_out_ms + d, me.epoch, d),
            (_, Some((out, epoch))) => (out, epoch.max(me.epoch), 0),
            (None, None) => match other.last_in {
                // First frame of this stream, far from the other stream: align to "now".
                Some(_) => (other.last_out_ms, other.epoch, 0),
                None => (
                    OUTPUT_START_MS + self.anchor.map_or(0, |a| ts_diff(t, a)),
                    self.epoch,
                    0,
                ),
            },
            (Some(_), None) => {
                self.epoch += 1;
                (self.max_out_ms + gap, self.epoch, 0)
            }
        };
        let out = out.max(0);
        self.max_out_ms = self.max_out_ms.max(out);
        let clock = self.clock_mut(track);
        clock.last_in = Some(t);
        clock.last_out_ms = out;
        clock.epoch = epoch;
        if step > 0 {
            clock.last_step_ms = step;
        }
        let mut dts = (out as u64).saturating_mul(90);
        if let Some(last) = clock.last_dts
            && dts <= last
        {
            dts = last + 1;
        }
        clock.last_dts = Some(dts);
        (dts, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(anchor: Option<u32>) -> Timeline {
        Timeline::new(Duration::from_secs(5), Duration::from_millis(500)).anchored(anchor)
    }

    #[test]
    fn timelines_with_one_anchor_agree_however_late_the_second_starts() {
        let mut src = timeline(Some(1_000));
        src.map(Track::Audio, 1_000);
        let src_video: Vec<u64> = (0..100)
            .map(|i| src.map(Track::Video, 1_010 + i * 33).0)
            .collect();
        // A rung starts two seconds later, and with an audio frame, not a video frame.
        let mut rung = timeline(Some(1_000));
        rung.map(Track::Audio, 3_020);
        for i in 60..100 {
            assert_eq!(
                rung.map(Track::Video, 1_010 + i * 33).0,
                src_video[i as usize],
                "frame {i}"
            );
        }
        // Without the anchor the late starter gets its own origin.
        let mut plain = timeline(None);
        plain.map(Track::Audio, 3_020);
        assert_ne!(plain.map(Track::Video, 1_010 + 60 * 33).0, src_video[60]);
    }
}
