//! The summary printed at the end of a run: totals and a line per request kind.

use std::fmt::Write;

use crate::stats::{Report, RequestKind};

/// A plain-text summary of `report`.
pub fn summary_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} viewers started ({} played, peak {} active) in {:.1} s; {} requests, {} errors, \
         {} stalls ({:.1} s); {:.1} MB/s received; segments {}, parts {}, missed {}",
        report.viewers.started,
        report.viewers.played,
        report.viewers.peak_active,
        report.elapsed_secs,
        report.total_requests,
        report.total_errors,
        report.stalls.count,
        report.stalls.seconds,
        report.bytes_per_sec / 1e6,
        report.media.segments,
        report.media.parts,
        report.media.missed_segments,
    );
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "kind", "requests", "errors", "MB/s", "p50 ms", "p95 ms", "p99 ms"
    );
    for kind in RequestKind::ALL {
        let k = report.kind(kind);
        if k.count == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>7} {:>9.2} {:>9.1} {:>9.1} {:>9.1}",
            kind.label(),
            k.count,
            k.errors,
            k.bytes_per_sec / 1e6,
            k.latency_ms.p50,
            k.latency_ms.p95,
            k.latency_ms.p99
        );
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {} {}: {}", e.kind.label(), e.error, e.count);
    }
    if let Some(cpu) = &report.cpu {
        let _ = writeln!(
            out,
            "load generator CPU: {:.1} s, {:.0} % of one core",
            cpu.seconds, cpu.percent_of_one_core
        );
    }
    out
}
