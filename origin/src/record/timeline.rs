//! The playing time of a recording, computed the same way while writing and while repairing.

use std::time::Duration;

/// First and last frame timestamps (milliseconds, as written in the file) per track, and the
/// spacing of each track's last two frames, which stands in for the duration of its last frame.
///
/// Only coded frames are noted: sequence headers and end-of-sequence markers carry no playing
/// time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeline {
    first_ms: Option<u32>,
    video: Track,
    audio: Track,
}

/// Which track a coded frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackKind {
    Video,
    Audio,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Track {
    last_ms: Option<u32>,
    /// Spacing of the last two frames with increasing timestamps.
    step_ms: u32,
}

impl Track {
    fn note(&mut self, ts_ms: u32) {
        match self.last_ms {
            Some(last) if ts_ms > last => {
                self.step_ms = ts_ms - last;
                self.last_ms = Some(ts_ms);
            }
            Some(_) => {}
            None => self.last_ms = Some(ts_ms),
        }
    }

    fn end_ms(&self) -> Option<u64> {
        self.last_ms
            .map(|last| u64::from(last) + u64::from(self.step_ms))
    }
}

impl Timeline {
    /// Notes a coded frame at `ts_ms`.
    pub(crate) fn note(&mut self, track: TrackKind, ts_ms: u32) {
        self.first_ms = Some(self.first_ms.map_or(ts_ms, |first| first.min(ts_ms)));
        match track {
            TrackKind::Video => self.video.note(ts_ms),
            TrackKind::Audio => self.audio.note(ts_ms),
        }
    }

    /// True once any coded frame was noted: the recording has something to play.
    pub(crate) fn has_frames(&self) -> bool {
        self.first_ms.is_some()
    }

    /// Last timestamp minus first, plus the last frame's own duration (the later of the two
    /// tracks' ends counts). Zero when nothing was noted.
    pub(crate) fn duration(&self) -> Duration {
        let Some(first) = self.first_ms else {
            return Duration::ZERO;
        };
        let end = self
            .video
            .end_ms()
            .max(self.audio.end_ms())
            .unwrap_or(u64::from(first));
        Duration::from_millis(end.saturating_sub(u64::from(first)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_adds_the_last_frame_of_the_track_that_ends_last() {
        let mut t = Timeline::default();
        for i in 0..30 {
            t.note(TrackKind::Video, i * 33);
        }
        for i in 0..43 {
            t.note(TrackKind::Audio, 10 + i * 23);
        }
        // Video ends at 29*33 + 33 = 990; audio at 10 + 42*23 + 23 = 999.
        assert_eq!(t.duration(), Duration::from_millis(999));
    }

    #[test]
    fn an_empty_timeline_has_no_frames_and_no_duration() {
        let t = Timeline::default();
        assert!(!t.has_frames());
        assert_eq!(t.duration(), Duration::ZERO);
    }

    #[test]
    fn a_single_frame_lasts_nothing_and_late_timestamps_do_not_shrink_the_end() {
        let mut t = Timeline::default();
        t.note(TrackKind::Audio, 500);
        assert!(t.has_frames());
        assert_eq!(t.duration(), Duration::ZERO);
        t.note(TrackKind::Audio, 540);
        t.note(TrackKind::Audio, 520);
        assert_eq!(t.duration(), Duration::from_millis(80));
    }
}
