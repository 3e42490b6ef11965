//! The glass-to-glass latency measurement itself (bench/latency.sh): the browser's reader
//! decodes exactly what the Rust clock stream draws, rejects damaged codes, and, through the
//! real origin and hls.js in headless Chromium, reads clock values that advance with playback
//! and give a positive, plausible latency.

use std::time::Duration;

use testkit::clock::{self, ClockPush, Frame, PushOptions, WHITE};
use testkit::http::wait_until;
use testkit::up::Spherecast;

/// Writes the luma plane of `frame` to `path`.
fn write_luma(frame: &Frame, path: &std::path::Path) {
    let luma = (frame.width * frame.height) as usize;
    std::fs::write(path, &frame.data[..luma]).unwrap();
}

/// Paints grid cell `index` of the code with `value`.
fn paint_cell(frame: &mut Frame, index: u32, value: u8) {
    let (col, row) = clock::cell(index);
    let (x0, x1, y0, y1) = frame.cell_rect(col, row);
    for y in y0..y1 {
        let start = (y * frame.width + x0) as usize;
        frame.data[start..start + (x1 - x0) as usize].fill(value);
    }
}

/// What `web/tests/clock-read.mjs` (the browser's decoder, run by node) reads from each file.
fn js_read(width: u32, height: u32, files: &[std::path::PathBuf]) -> Vec<Option<u64>> {
    let mut args = vec![width.to_string(), height.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let read = testkit::browser::run_script("clock-read.mjs", &args);
    serde_json::from_value(read).expect("clock-read.mjs prints a JSON array")
}

#[test]
fn the_browser_decoder_reads_what_the_clock_draws_and_rejects_damaged_codes() {
    let tmp = tempfile::tempdir().unwrap();
    for (width, height) in [(1280, 720), (640, 360), (426, 240)] {
        let values = [1_795_000_000_123u64, 1_795_000_000_124, 0, clock::MAX_MS];
        let mut files = Vec::new();
        let mut expected = Vec::new();
        for (i, &ms) in values.iter().enumerate() {
            let mut frame = Frame::new(width, height).unwrap();
            frame.draw(ms, i as u64);
            let path = tmp.path().join(format!("{width}-{i}.y"));
            write_luma(&frame, &path);
            files.push(path);
            expected.push(Some(ms));
        }

        // No code at all: a plain grey frame.
        let blank = Frame::new(width, height).unwrap();
        let path = tmp.path().join(format!("{width}-blank.y"));
        write_luma(&blank, &path);
        files.push(path);
        expected.push(None);

        // One pair grey (a smudge): too little contrast, the frame is unreadable.
        let mut grey = Frame::new(width, height).unwrap();
        grey.draw(values[0], 0);
        paint_cell(&mut grey, 76, 110);
        paint_cell(&mut grey, 77, 140);
        assert_eq!(grey.read(), None, "the Rust reader rejects it too");
        let path = tmp.path().join(format!("{width}-grey.y"));
        write_luma(&grey, &path);
        files.push(path);
        expected.push(None);

        // One pair swapped: a clean but wrong bit, which the CRC catches.
        let mut swapped = Frame::new(width, height).unwrap();
        swapped.draw(values[0], 0);
        let bits = clock::encode(values[0]);
        let (first, second) = if bits[10] {
            (clock::BLACK, WHITE)
        } else {
            (WHITE, clock::BLACK)
        };
        paint_cell(&mut swapped, 20, first);
        paint_cell(&mut swapped, 21, second);
        assert_eq!(swapped.read(), None, "the Rust reader rejects it too");
        let path = tmp.path().join(format!("{width}-swapped.y"));
        write_luma(&swapped, &path);
        files.push(path);
        expected.push(None);

        assert_eq!(js_read(width, height, &files), expected, "{width}x{height}");
    }
}

#[test]
fn hls_js_reads_an_advancing_clock_with_a_plausible_latency_through_the_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let options = PushOptions {
        width: 640,
        height: 360,
        fps: 30,
        gop: 30,
        duration: Some(Duration::from_secs(40)),
        audio: true,
    };
    // Two names, as bench/latency.sh pushes one encode to two servers (ffmpeg's tee muxer).
    let push = ClockPush::start(
        &[server.rtmp_url("clock"), server.rtmp_url("copy")],
        &options,
    )
    .unwrap();
    for name in ["clock", "copy"] {
        wait_until(
            &server.http_url(&format!("/hls/{name}.m3u8")),
            Duration::from_secs(20),
            |r| r.status == 200,
        );
    }

    let seen = clock::read_latency(
        &server.http_url("/hls/clock.m3u8"),
        &["--warmup", "1", "--seconds", "4", "--samples"],
    )
    .unwrap();
    let frames_pushed = push.stop().unwrap();

    let frames = seen["frames"].as_array().cloned().unwrap_or_default();
    let samples: Vec<(f64, f64, f64)> = frames
        .iter()
        .map(|f| {
            let n = |i: usize| f[i].as_f64().expect("numbers");
            (n(0), n(1), n(2))
        })
        .collect();
    // 4 s at 30 fps is 120 frames; a busy machine drops some, a broken decoder reads none.
    assert!(samples.len() >= 20, "too few frames read: {seen}");
    assert_eq!(seen["samples"].as_u64(), Some(samples.len() as u64));
    let unreadable = seen["unreadable"].as_u64().unwrap();
    assert!(
        unreadable * 10 <= samples.len() as u64,
        "{unreadable} unreadable frames against {} read: {seen}",
        samples.len()
    );
    assert_eq!(seen["videoWidth"], 640, "{seen}");

    // The clock read from the picture advances with playback, frame after frame...
    for pair in samples.windows(2) {
        let ((_, code_a, media_a), (_, code_b, media_b)) = (pair[0], pair[1]);
        assert!(
            code_b >= code_a && media_b > media_a,
            "clock or media time went back: {pair:?}"
        );
    }
    // ...and by as much as the media time (the clock stream makes one frame per 1/30 s of wall
    // time, and ffmpeg stamps them 1/30 s apart).
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let clock_span = (last.1 - first.1) / 1000.0;
    let media_span = last.2 - first.2;
    assert!(
        clock_span > 2.0 && (clock_span - media_span).abs() < 1.5,
        "clock advanced {clock_span:.2} s over {media_span:.2} s of media: {seen}"
    );

    // Latency: positive (the frame was made before it was shown) and plausible.
    for &(shown, code, _) in &samples {
        let latency = shown - code;
        assert!(
            latency > 0.0 && latency < 30_000.0,
            "latency {latency} ms: {seen}"
        );
    }
    let p50 = seen["latencyMs"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 30_000.0, "{seen}");
    assert!(frames_pushed > 60, "{frames_pushed} frames pushed");
}
