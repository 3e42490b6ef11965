//! The text table `spherecast scaler simulate` prints.

use std::fmt::Write as _;

use super::candidate::Candidate;
use super::model::Model;
use super::outcome::{Outcome, Summary};
use super::trace::{Trace, clock};

/// `0s`, `45s`, `4m05s`, `2h03m`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

/// The headline of one outcome, for a chart's title: waits, instance-hours, kills.
pub fn headline(summary: &Summary) -> String {
    let wait = |w: Option<u64>| w.map_or_else(|| "-".to_owned(), duration);
    format!(
        "wait p50 {} / p95 {} / max {}; {:.1} instance-hours; {} killed by scale-in; \
         {} spot interruptions",
        wait(summary.p50_wait),
        wait(summary.p95_wait),
        wait(summary.max_wait),
        summary.instance_hours,
        summary.killed_by_scale_in,
        summary.interrupted_by_spot
    )
}

/// The comparison table: what the trace and the model were, one row per candidate, and a
/// line per candidate saying what it is.
pub fn table(
    trace_name: &str,
    trace: &Trace,
    model: &Model,
    candidates: &[Candidate],
    outcomes: &[Outcome],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{trace_name}: {} recordings, {:.1} h of video, arriving {} to {}",
        trace.recordings.len(),
        trace.total_duration() as f64 / 3600.0,
        clock(trace.first_arrival()),
        clock(trace.last_arrival())
    );
    let _ = writeln!(
        out,
        "model: boot {}-{} s; {}x realtime + {} s per job; {} job(s) per worker; {} spot \
         interruptions per instance-hour ({} s notice); idle workers power off after {} s \
         (where a candidate's do); scaler every {} s on counters up to {} s old; a killed \
         job's message back after {} s; seed {}",
        model.boot_min_secs,
        model.boot_max_secs,
        model.speed,
        model.job_overhead_secs,
        model.slots,
        model.spot_interruptions_per_hour,
        model.spot_notice_secs,
        model.idle_shutdown_secs,
        model.scaler_period_secs,
        model.counter_lag_secs,
        model.visibility_secs,
        model.seed
    );
    out.push('\n');

    let header = [
        "candidate",
        "wait p50",
        "wait p95",
        "wait max",
        "done p95",
        "instance-h",
        "per day",
        "killed by scale-in",
        "spot interrupted",
        "last job done",
        "launches",
        "target changes",
    ];
    let wait = |w: Option<u64>| w.map_or_else(|| "-".to_owned(), duration);
    let rows: Vec<[String; 12]> = outcomes
        .iter()
        .map(|o| {
            let s = o.summary();
            let mut last = s.last_completion.map_or_else(|| "-".to_owned(), clock);
            if !s.settled {
                last.push_str(" (limit)");
            }
            let mut p95 = wait(s.p95_wait);
            if s.never_started > 0 {
                p95.push_str(&format!(" ({} never started)", s.never_started));
            }
            [
                o.candidate.clone(),
                wait(s.p50_wait),
                p95,
                wait(s.max_wait),
                wait(s.p95_done),
                format!("{:.1}", s.instance_hours),
                format!("{:.1}", s.day_instance_hours),
                s.killed_by_scale_in.to_string(),
                s.interrupted_by_spot.to_string(),
                last,
                s.launches.to_string(),
                s.target_changes.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c == 0 {
                let _ = write!(text, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(text, "  {cell:>w$}", w = widths[c]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out.push('\n');
    for candidate in candidates {
        let _ = writeln!(
            out,
            "{}: {}",
            candidate.name,
            candidate.describe(model.idle_shutdown_secs)
        );
    }
    out.push_str(
        "wait: arrival on the queue to a worker's first receive; done: arrival to the ladder \
         published (nearest-rank percentiles).\n\
         instance-h: every instance from its launch request to its end, from the first arrival \
         until the fleet is back at its floor after the last job; per day: that plus the \
         floor's instances for the rest of 24 hours.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m00s");
        assert_eq!(duration(245), "4m05s");
        assert_eq!(duration(3599), "59m59s");
        assert_eq!(duration(7380), "2h03m");
    }
}
