//! Projects raw equirectangular frames from a file, for benchmarks (bench/projection.sh) and by
//! hand. Frames are read one after the other into one buffer, as ffmpeg's rawvideo demuxer
//! does, projected, and dropped (or the first one written with `--out`).
//!
//! ```text
//! cargo run --release -p projection --example project -- \
//!     --input in.yuv --size 3840x1920 --layout c3x2 [--output-size WxH] [--threads 2]
//!     [--frames N] [--format i420|nv12] [--out first.yuv] [--map-error]
//! ```
//!
//! Prints one JSON object: set-up seconds, frames, seconds spent reading and projecting, frames
//! per second without and with the set-up, map facts (and, with `--map-error`, the map's
//! coordinate error against the exact per-pixel map).

use std::fs::File;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use projection::{Frame, FrameMut, Interp, Layout, PixelFormat, Projector, packed_len};

struct Args {
    input: String,
    size: (u32, u32),
    layout: Layout,
    output_size: Option<(u32, u32)>,
    threads: usize,
    frames: Option<usize>,
    format: PixelFormat,
    out: Option<String>,
    map_error: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or(format!("size {s:?} is not WxH"))?;
    Ok((
        w.parse().map_err(|_| format!("bad width in {s:?}"))?,
        h.parse().map_err(|_| format!("bad height in {s:?}"))?,
    ))
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        input: String::new(),
        size: (0, 0),
        layout: Layout::Cubemap3x2,
        output_size: None,
        threads: 1,
        frames: None,
        format: PixelFormat::I420,
        out: None,
        map_error: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--input" => a.input = value()?,
            "--size" => a.size = parse_size(&value()?)?,
            "--layout" => {
                a.layout = match value()?.as_str() {
                    "c3x2" => Layout::Cubemap3x2,
                    "eac" => Layout::Eac,
                    other => return Err(format!("unknown layout {other:?} (c3x2 or eac)")),
                }
            }
            "--output-size" => a.output_size = Some(parse_size(&value()?)?),
            "--threads" => a.threads = value()?.parse().map_err(|_| "bad --threads")?,
            "--frames" => a.frames = Some(value()?.parse().map_err(|_| "bad --frames")?),
            "--format" => a.format = value()?.parse().map_err(|e| format!("{e}"))?,
            "--out" => a.out = Some(value()?),
            "--map-error" => a.map_error = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.input.is_empty() || a.size == (0, 0) {
        return Err("--input and --size are required".into());
    }
    Ok(a)
}

fn run(a: Args) -> Result<(), String> {
    let started = Instant::now();
    let p = Projector::new(
        a.layout,
        a.size,
        a.output_size,
        Interp::Bilinear,
        a.format,
        a.threads,
    )
    .map_err(|e| e.to_string())?;
    let setup = started.elapsed().as_secs_f64();
    let (sw, sh) = (a.size.0 as usize, a.size.1 as usize);
    let (ow, oh) = (p.output_size().0 as usize, p.output_size().1 as usize);
    let mut input = File::open(&a.input).map_err(|e| format!("{}: {e}", a.input))?;
    let mut frame = vec![0u8; packed_len(sw, sh)];
    let mut out = vec![0u8; packed_len(ow, oh)];
    let (mut read_s, mut project_s, mut frames) = (0.0, 0.0, 0usize);
    let loop_started = Instant::now();
    while a.frames.is_none_or(|n| frames < n) {
        let t = Instant::now();
        match input.read_exact(&mut frame) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("{}: {e}", a.input)),
        }
        let t1 = Instant::now();
        read_s += (t1 - t).as_secs_f64();
        p.project(
            &Frame::packed(a.format, &frame, sw, sh).map_err(|e| e.to_string())?,
            &mut FrameMut::packed(a.format, &mut out, ow, oh).map_err(|e| e.to_string())?,
            a.threads,
        )
        .map_err(|e| e.to_string())?;
        project_s += t1.elapsed().as_secs_f64();
        if frames == 0
            && let Some(path) = &a.out
        {
            File::create(path)
                .and_then(|mut f| f.write_all(&out))
                .map_err(|e| format!("{path}: {e}"))?;
        }
        frames += 1;
    }
    let loop_s = loop_started.elapsed().as_secs_f64();
    if frames == 0 {
        return Err(format!("{} holds no whole {sw}x{sh} frame", a.input));
    }
    let stats = p.map_stats();
    let mut json = format!(
        "{{\"layout\":\"{}\",\"source\":\"{sw}x{sh}\",\"output\":\"{ow}x{oh}\",\"threads\":{},\
         \"frames\":{frames},\"setup_s\":{setup:.6},\"read_s\":{read_s:.6},\"project_s\":{project_s:.6},\
         \"loop_s\":{loop_s:.6},\"fps\":{:.3},\"fps_with_setup\":{:.3},\"map_runs\":{},\
         \"map_pixels_per_run\":{:.2},\"map_clamped_runs\":{},\"map_bytes\":{},\"ffmpeg_table_bytes\":{}",
        a.layout,
        a.threads,
        frames as f64 / loop_s,
        frames as f64 / (loop_s + setup),
        stats.runs,
        stats.pixels_per_run,
        stats.clamped_runs,
        stats.bytes,
        stats.ffmpeg_bytes,
    );
    if a.map_error {
        let e = p.map_error();
        json += &format!(
            ",\"map_error_max_px\":{:.6},\"map_error_rms_px\":{:.6},\"map_window_differs\":{},\"map_pixels\":{}",
            e.max, e.rms, e.window_differs, e.pixels
        );
    }
    json.push('}');
    println!("{json}");
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("project: {e}");
            ExitCode::FAILURE
        }
    }
}
