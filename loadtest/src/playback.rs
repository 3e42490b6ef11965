//! A viewer's playback buffer, on a clock of seconds since the run began: media that arrives
//! fills it, playback drains it in real time, and media that arrives after it ran dry is a
//! stall. Pure, so the accounting is tested without a network.

use std::time::Duration;

/// The buffer of one viewer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Playback {
    /// When the buffer runs dry; `None` until playback starts.
    dry_at: Option<Duration>,
    /// Media downloaded before playback started.
    waiting: Duration,
    /// Media that arrived after the buffer ran dry.
    pub stalls: u32,
    /// Total time spent with an empty buffer before media arrived.
    pub stalled: Duration,
}

impl Playback {
    /// Whether playback has started.
    pub fn started(&self) -> bool {
        self.dry_at.is_some()
    }

    /// Media buffered ahead of the play position at `now` (zero before playback starts).
    pub fn ahead(&self, now: Duration) -> Duration {
        self.dry_at
            .map_or(Duration::ZERO, |dry| dry.saturating_sub(now))
    }

    /// `media` of content finished downloading at `now`. Returns the stall it ended, if the
    /// buffer had run dry before it arrived.
    pub fn arrive(&mut self, now: Duration, media: Duration) -> Option<Duration> {
        match self.dry_at {
            None => {
                self.waiting += media;
                None
            }
            Some(dry) if now > dry => {
                let stall = now - dry;
                self.stalls += 1;
                self.stalled += stall;
                self.dry_at = Some(now + media);
                Some(stall)
            }
            Some(dry) => {
                self.dry_at = Some(dry + media);
                None
            }
        }
    }

    /// Playback starts at `now` with whatever arrived so far.
    pub fn start(&mut self, now: Duration) {
        if self.dry_at.is_none() {
            self.dry_at = Some(now + std::mem::take(&mut self.waiting));
        }
    }

    /// The viewer leaves at `now`. A live stream (not ended) whose buffer is dry at that
    /// moment leaves its player stalled: that counts as a stall too. Returns it, if any.
    pub fn leave(&mut self, now: Duration, stream_ended: bool) -> Option<Duration> {
        match self.dry_at {
            Some(dry) if !stream_ended && now > dry => {
                let stall = now - dry;
                self.stalls += 1;
                self.stalled += stall;
                self.dry_at = Some(now);
                Some(stall)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn media_arriving_before_the_buffer_runs_dry_is_no_stall() {
        let mut p = Playback::default();
        assert_eq!(p.arrive(s(1.0), s(2.0)), None);
        p.start(s(1.0));
        // Plays until t=3; segments every 2 s keep it ahead.
        assert_eq!(p.arrive(s(2.9), s(2.0)), None);
        assert_eq!(p.arrive(s(4.9), s(2.0)), None);
        assert!((p.ahead(s(6.0)).as_secs_f64() - 1.0).abs() < 1e-6);
        assert_eq!(Playback::default().ahead(s(6.0)), Duration::ZERO);
        assert_eq!(p.leave(s(6.0), false), None);
        assert_eq!((p.stalls, p.stalled), (0, Duration::ZERO));
    }

    #[test]
    fn media_arriving_after_the_buffer_ran_dry_is_a_stall_of_the_gap() {
        let mut p = Playback::default();
        p.arrive(s(0.5), s(1.0));
        p.start(s(0.5));
        // Dry at 1.5; next arrives at 2.0: a 0.5 s stall, then plays until 3.0.
        assert_eq!(p.arrive(s(2.0), s(1.0)), Some(s(0.5)));
        assert_eq!(p.arrive(s(2.5), s(1.0)), None);
        // Dry at 4.0; arrives at 5.0.
        assert_eq!(p.arrive(s(5.0), s(1.0)), Some(s(1.0)));
        assert_eq!(p.stalls, 2);
        assert!((p.stalled.as_secs_f64() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn media_downloaded_before_the_start_is_all_buffered() {
        let mut p = Playback::default();
        p.arrive(s(0.1), s(2.0));
        p.arrive(s(0.2), s(2.0));
        p.arrive(s(0.3), s(2.0));
        assert!(!p.started());
        p.start(s(0.3));
        assert!(p.started());
        // 6 s buffered at 0.3: a segment at 6.2 is in time.
        assert_eq!(p.arrive(s(6.2), s(2.0)), None);
        assert_eq!(p.arrive(s(8.2), s(2.0)), None);
        let stall = p.arrive(s(10.4), s(2.0)).expect("dry at 10.3");
        assert!((stall.as_secs_f64() - 0.1).abs() < 1e-6, "{stall:?}");
    }

    #[test]
    fn leaving_a_live_stream_with_a_dry_buffer_is_a_stall_but_an_ended_stream_is_not() {
        let mut live = Playback::default();
        live.arrive(s(0.0), s(1.0));
        live.start(s(0.0));
        assert_eq!(live.leave(s(3.0), false), Some(s(2.0)));
        assert_eq!(live.stalls, 1);

        let mut ended = Playback::default();
        ended.arrive(s(0.0), s(1.0));
        ended.start(s(0.0));
        assert_eq!(ended.leave(s(3.0), true), None);
        assert_eq!(ended.stalls, 0);

        let mut never = Playback::default();
        assert_eq!(never.leave(s(3.0), false), None);
    }
}
