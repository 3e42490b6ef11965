//! Runs the live ladder over the H.264 of an FLV file as fast as the machine allows (not paced
//! at real time), for `bench/live_ladder.sh`: `live_ladder INPUT.flv [RUNG...]`, where RUNG is
//! a rung name of the default ladder (`_480`, `_960`, `_1920`); all three when none is given.
//! Prints the frames and bytes each rung produced and the wall time. CPU time is measured
//! from outside (`/usr/bin/time`), the same way as for ffmpeg.

use std::time::Instant;

use anyhow::{Context, bail};
use live::{Backpressure, LiveAbrConfig, Output, Transcoder};
use media::flv::{FrameType, TagKind, VideoPacketType, VideoTag};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .context("usage: live_ladder INPUT.flv [RUNG...]")?;
    let names: Vec<String> = args.collect();
    let bytes = std::fs::read(&input).with_context(|| format!("reading {input}"))?;
    let file = media::flv::parse_file(&bytes).with_context(|| format!("parsing {input}"))?;

    let mut record = None;
    let mut frames = Vec::new();
    for tag in file.tags.iter().filter(|t| t.kind == TagKind::Video) {
        let video = VideoTag::parse(tag.body)?;
        match video.packet_type {
            VideoPacketType::SequenceHeader if record.is_none() => record = Some(video.payload),
            VideoPacketType::Nalu => frames.push((
                tag.timestamp_ms,
                video.composition_time_ms,
                video.frame_type == FrameType::Key,
                video.payload,
            )),
            _ => {}
        }
    }
    let record = record.context("the input has no AVC sequence header")?;

    let mut config = LiveAbrConfig {
        backpressure: Backpressure::Block,
        drain_timeout_ms: 600_000,
        ..LiveAbrConfig::default()
    };
    if !names.is_empty() {
        config.rungs.retain(|r| names.contains(&r.name));
        if config.rungs.len() != names.len() {
            bail!("unknown rung among {names:?} (the default ladder has _480, _960, _1920)");
        }
    }

    let started = Instant::now();
    let (mut ladder, mut rx) = Transcoder::start("bench", &config, record)?;
    let rungs = ladder.rungs();
    let collector = std::thread::spawn(move || {
        let mut out = vec![(0u64, 0u64); rungs.len()];
        while let Some(o) = rx.blocking_recv() {
            if let Output::Frame(f) = o {
                out[f.rung].0 += 1;
                out[f.rung].1 += f.avcc.len() as u64;
            }
        }
        (rungs, out)
    });
    for &(dts, cts, key, avcc) in &frames {
        ladder.push(dts, cts, key, avcc)?;
    }
    let stats = ladder.finish()?;
    let wall = started.elapsed().as_secs_f64();
    let (rungs, out) = collector.join().expect("the collector does not panic");
    if stats.frames_dropped > 0 {
        bail!("{} access units were not transcoded", stats.frames_dropped);
    }
    // Media time from the timestamps: first to last DTS plus one frame's duration.
    let span_ms = frames.last().map_or(0, |f| f.0) - frames.first().map_or(0, |f| f.0);
    let media_s = f64::from(span_ms) / 1000.0 * frames.len() as f64
        / (frames.len().saturating_sub(1).max(1)) as f64;
    for (rung, (n, bytes)) in rungs.iter().zip(out) {
        println!(
            "rung {} {}x{} frames {n} kbps {:.0}",
            rung.name,
            rung.width,
            rung.height,
            bytes as f64 * 8.0 / media_s / 1000.0
        );
    }
    println!(
        "input_frames {} media_s {media_s:.3} wall_s {wall:.3}",
        frames.len()
    );
    Ok(())
}
