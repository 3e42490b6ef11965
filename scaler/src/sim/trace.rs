//! Traces: the recordings a day brings, one line each (see the format in [`super`]).

use std::fmt::Write as _;
use std::path::Path;

use super::SimError;

/// One recording: when its S3 event reaches the queue and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Seconds on the trace's clock (09:45:00 is 35,100) at which the event is on the queue.
    pub arrival: u64,
    /// Seconds of video to transcode.
    pub duration: u64,
    /// A label for people (`track2-talk3`); the simulator ignores it.
    pub name: Option<String>,
}

/// Recordings in arrival order (lines with the same arrival keep their file order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub recordings: Vec<Recording>,
}

/// What is wrong with a trace, and on which line (1-based, as an editor counts them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error(
        "no recordings: a trace needs one `arrival,duration[,name]` line per recording \
         (arrival in seconds or HH:MM:SS, duration in seconds or HH:MM:SS)"
    )]
    Empty,
}

impl Trace {
    /// Parses the CSV text of a trace. Unsorted lines are fine (they are sorted by arrival).
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut recordings = Vec::new();
        let mut first = true;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split(',').map(str::trim).collect();
            let is_header = fields[0].eq_ignore_ascii_case("arrival");
            if is_header && first {
                first = false;
                continue;
            }
            first = false;
            let error = |message: String| TraceError::Line { line, message };
            if !(2..=3).contains(&fields.len()) {
                return Err(error(format!(
                    "expected `arrival,duration[,name]`, found {} comma-separated fields",
                    fields.len()
                )));
            }
            let arrival = parse_secs(fields[0]).map_err(|m| error(format!("arrival: {m}")))?;
            let duration = parse_secs(fields[1]).map_err(|m| error(format!("duration: {m}")))?;
            if duration == 0 {
                return Err(error(
                    "duration: 0 s; a recording to transcode lasts at least a second".to_owned(),
                ));
            }
            let name = fields
                .get(2)
                .filter(|name| !name.is_empty())
                .map(|name| (*name).to_owned());
            recordings.push(Recording {
                arrival,
                duration,
                name,
            });
        }
        if recordings.is_empty() {
            return Err(TraceError::Empty);
        }
        // Stable: recordings that arrive together keep the order of the file.
        recordings.sort_by_key(|r| r.arrival);
        Ok(Trace { recordings })
    }

    /// Reads and parses a trace file.
    pub fn load(path: &Path) -> Result<Trace, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.to_owned(),
            source,
        })?;
        Trace::parse(&text).map_err(|source| SimError::Trace {
            path: path.to_owned(),
            source,
        })
    }

    /// The trace as CSV, in the format [`Trace::parse`] reads (arrivals as HH:MM:SS).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("arrival,duration,name\n");
        for r in &self.recordings {
            let _ = writeln!(
                out,
                "{},{},{}",
                clock(r.arrival),
                r.duration,
                r.name.as_deref().unwrap_or("")
            );
        }
        out
    }

    /// The first arrival.
    pub fn first_arrival(&self) -> u64 {
        self.recordings.first().map_or(0, |r| r.arrival)
    }

    /// The last arrival.
    pub fn last_arrival(&self) -> u64 {
        self.recordings.last().map_or(0, |r| r.arrival)
    }

    /// Seconds of video in the whole trace.
    pub fn total_duration(&self) -> u64 {
        self.recordings.iter().map(|r| r.duration).sum()
    }
}

/// Seconds as `HH:MM:SS` on the trace's clock (hours go past 24 on a long run).
pub fn clock(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `5400`, `5400.5` (fractions round up to the simulator's whole second) or `[H]H:MM:SS`.
fn parse_secs(field: &str) -> Result<u64, String> {
    if field.contains(':') {
        let parts: Vec<&str> = field.split(':').collect();
        let [h, m, s] = parts.as_slice() else {
            return Err(format!("{field:?} is not HH:MM:SS"));
        };
        let number = |part: &str, limit: u64| -> Result<u64, String> {
            match part.parse::<u64>() {
                Ok(n) if n < limit => Ok(n),
                _ => Err(format!(
                    "{field:?} is not HH:MM:SS (minutes and seconds are 00 to 59)"
                )),
            }
        };
        return Ok(number(h, u64::MAX / 3600)? * 3600 + number(m, 60)? * 60 + number(s, 60)?);
    }
    let value: f64 = field.parse().map_err(|_| {
        format!("{field:?} is not a number of seconds (e.g. 2700) nor HH:MM:SS (e.g. 09:45:00)")
    })?;
    if !value.is_finite() {
        return Err(format!("{field:?} is not a finite number of seconds"));
    }
    if value < 0.0 {
        return Err(format!("{field} is negative"));
    }
    // Whole seconds are the simulator's resolution; `as` saturates on absurd values.
    Ok(value.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_error(text: &str) -> (usize, String) {
        match Trace::parse(text).unwrap_err() {
            TraceError::Line { line, message } => (line, message),
            other => panic!("expected a line error, got {other}"),
        }
    }

    #[test]
    fn reads_seconds_clock_times_comments_a_header_and_names() {
        let trace = Trace::parse(
            "# a conference\n\
             arrival,duration,name\n\
             \n\
             09:45:10, 2700, track1-talk1   # keynote\n\
             35111,00:40:00\n\
             35112.2,1.5,\n",
        )
        .unwrap();
        assert_eq!(
            trace.recordings,
            vec![
                Recording {
                    arrival: 9 * 3600 + 45 * 60 + 10,
                    duration: 2700,
                    name: Some("track1-talk1".to_owned()),
                },
                Recording {
                    arrival: 35111,
                    duration: 2400,
                    name: None,
                },
                Recording {
                    arrival: 35113,
                    duration: 2,
                    name: None,
                },
            ]
        );
    }

    #[test]
    fn unsorted_lines_are_sorted_by_arrival_keeping_ties_in_file_order() {
        let trace = Trace::parse("300,10,c\n100,10,a\n300,20,d\n200,10,b\n").unwrap();
        let names: Vec<_> = trace
            .recordings
            .iter()
            .map(|r| r.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(trace.first_arrival(), 100);
        assert_eq!(trace.last_arrival(), 300);
        assert_eq!(trace.total_duration(), 50);
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let (line, message) = line_error("arrival,duration\n10,60\n\n20,sixty\n");
        assert_eq!(line, 4);
        assert!(
            message.contains("duration") && message.contains("\"sixty\""),
            "{message}"
        );

        let (line, message) = line_error("10,60\n-5,60\n");
        assert_eq!(line, 2);
        assert!(
            message.contains("arrival") && message.contains("negative"),
            "{message}"
        );

        let (line, message) = line_error("09:61:00,60\n");
        assert_eq!(line, 1);
        assert!(message.contains("HH:MM:SS"), "{message}");

        let (line, message) = line_error("10,60,a,b\n");
        assert_eq!(line, 1);
        assert!(message.contains("4 comma-separated fields"), "{message}");

        let (line, message) = line_error("10,0\n");
        assert_eq!(line, 1);
        assert!(message.contains("0 s"), "{message}");

        // A header anywhere but first is a bad number, not silently skipped.
        let (line, _) = line_error("10,60\narrival,duration\n");
        assert_eq!(line, 2);
    }

    #[test]
    fn an_empty_trace_is_an_error() {
        for text in ["", "\n\n", "# only a comment\n", "arrival,duration\n"] {
            assert_eq!(Trace::parse(text), Err(TraceError::Empty), "{text:?}");
        }
    }

    #[test]
    fn csv_round_trips() {
        let trace = Trace::parse("100,10,a\n90000,20\n").unwrap();
        let text = trace.to_csv();
        assert!(text.contains("25:00:00,20,"), "{text}");
        assert_eq!(Trace::parse(&text).unwrap(), trace);
    }
}
