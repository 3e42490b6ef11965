//! The progress line on stderr while a run goes: active viewers, request rate, throughput,
//! errors, stalls and the generator's own CPU.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::stats::{Recorder, Snapshot};

/// Ticks the recorder every second (so the active-viewer series has no holes) and prints a
/// line every `config.progress`, until `stop`.
pub(crate) async fn run(recorder: Arc<Recorder>, config: Arc<Config>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (
        recorder.now(),
        Snapshot::default(),
        crate::process_cpu_time(),
    );
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        recorder.tick();
        let now = recorder.now();
        if config.progress.is_zero() || now - last.0 < config.progress {
            continue;
        }
        let snapshot = recorder.snapshot();
        let cpu = crate::process_cpu_time();
        let secs = (now - last.0).as_secs_f64();
        let cpu_percent = match (last.2, cpu) {
            (Some(a), Some(b)) => {
                format!("{:.0}%", 100.0 * b.saturating_sub(a).as_secs_f64() / secs)
            }
            _ => "?".into(),
        };
        eprintln!(
            "[{:>5.0}s] viewers {}/{} active, {:.0} req/s, {:.1} MB/s, errors {}, stalls {}, \
             generator cpu {}",
            now.as_secs_f64(),
            snapshot.active,
            config.viewers,
            (snapshot.requests - last.1.requests) as f64 / secs,
            (snapshot.bytes - last.1.bytes) as f64 / secs / 1e6,
            snapshot.errors,
            snapshot.stalls,
            cpu_percent,
        );
        last = (now, snapshot, cpu);
    }
}
