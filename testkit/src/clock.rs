//! A live test stream that shows the wall clock: every frame carries the Unix time in
//! milliseconds at which it was made, as a block code a browser reads back from pixels, so a
//! player's glass-to-glass latency is `now - code` on the same machine.
//!
//! The code: 48 bits of milliseconds and a 16-bit CRC (CRC-16/CCITT-FALSE over the six
//! big-endian bytes), 64 bits, each drawn as a pair of cells, white then black for 1, black then
//! white for 0 (Manchester), so every bit is read against its own partner, not a fixed threshold,
//! and a pair with no clear difference makes the frame unreadable. The cells sit on a grid of
//! [`GRID_COLS`] x [`GRID_ROWS`] equal cells over the whole frame (so the layout survives any
//! scaling): 32 cells (16 bits) per grid row, in [`CODE_ROWS`] rows from grid row [`FIRST_ROW`],
//! from column 1 (column 0 and the last are margin), bit 0 first. At 1280x720 a cell is about 38x40 pixels; H.264
//! at any sane quality keeps it black or white. `web/tests/clock-code.mjs` is the browser's
//! reader of the same layout; change both together.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// Columns of the grid the frame is divided into.
pub const GRID_COLS: u32 = 34;
/// Rows of the grid the frame is divided into.
pub const GRID_ROWS: u32 = 18;
/// The grid row of the first row of the code.
pub const FIRST_ROW: u32 = 1;
/// Grid rows the code takes: 64 bits of 2 cells each, 32 cells per row.
pub const CODE_ROWS: u32 = 4;
/// Bits in the code: 48 of milliseconds, 16 of CRC.
pub const BITS: u32 = 64;
/// Luma of a black cell (video range).
pub const BLACK: u8 = 16;
/// Luma of a white cell (video range).
pub const WHITE: u8 = 235;
/// Luma of everything that is not the code.
const BACKGROUND: u8 = 96;

/// The largest value the code carries: 48 bits of milliseconds reach the year 10889.
pub const MAX_MS: u64 = (1 << 48) - 1;

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 64 bits for `ms`, most significant first: 48 bits of `ms` and its CRC-16.
/// `ms` above [`MAX_MS`] keeps its low 48 bits.
pub fn encode(ms: u64) -> [bool; BITS as usize] {
    let ms = ms & MAX_MS;
    let bytes = &ms.to_be_bytes()[2..];
    let word = (ms << 16) | u64::from(crc16(bytes));
    std::array::from_fn(|i| (word >> (63 - i)) & 1 == 1)
}

/// The milliseconds in 64 bits from [`encode`], or `None` when the CRC does not match.
pub fn decode(bits: &[bool; BITS as usize]) -> Option<u64> {
    let word = bits.iter().fold(0u64, |w, &b| (w << 1) | u64::from(b));
    let ms = word >> 16;
    let bytes = &ms.to_be_bytes()[2..];
    (crc16(bytes) == (word & 0xFFFF) as u16).then_some(ms)
}

/// Where cell `index` (0..128: bit `index / 2`, first or second half of its pair) lies on the
/// grid: (column, row).
pub fn cell(index: u32) -> (u32, u32) {
    let per_row = GRID_COLS - 2;
    (1 + index % per_row, FIRST_ROW + index / per_row)
}

/// One frame in I420 (planar Y, U, V, 4:2:0), of `width` x `height` (both even).
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Frame {
    /// A grey frame with no code on it.
    pub fn new(width: u32, height: u32) -> anyhow::Result<Frame> {
        if width < GRID_COLS * 4
            || height < GRID_ROWS * 4
            || !width.is_multiple_of(2)
            || !height.is_multiple_of(2)
        {
            bail!(
                "a clock frame must be even-sized and at least {}x{} (got {width}x{height})",
                GRID_COLS * 4,
                GRID_ROWS * 4
            );
        }
        let luma = (width * height) as usize;
        let mut data = vec![128u8; luma + luma / 2];
        data[..luma].fill(BACKGROUND);
        Ok(Frame {
            width,
            height,
            data,
        })
    }

    /// The luma sample at (x, y).
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        self.data[(y * self.width + x) as usize]
    }

    /// The pixel rectangle of grid cell (column, row): x0..x1, y0..y1.
    pub fn cell_rect(&self, col: u32, row: u32) -> (u32, u32, u32, u32) {
        let x = |c: u32| c * self.width / GRID_COLS;
        let y = |r: u32| r * self.height / GRID_ROWS;
        (x(col), x(col + 1), y(row), y(row + 1))
    }

    fn fill_cell(&mut self, col: u32, row: u32, value: u8) {
        let (x0, x1, y0, y1) = self.cell_rect(col, row);
        for y in y0..y1 {
            let start = (y * self.width + x0) as usize;
            self.data[start..start + (x1 - x0) as usize].fill(value);
        }
    }

    /// Draws the code for `ms`, and a bar below it at a position that moves with `frame` (so the
    /// picture is moving video, not a still, for the encoder and the player).
    pub fn draw(&mut self, ms: u64, frame: u64) {
        for (bit, &one) in encode(ms).iter().enumerate() {
            let (first, second) = if one { (WHITE, BLACK) } else { (BLACK, WHITE) };
            let (col, row) = cell(2 * bit as u32);
            self.fill_cell(col, row, first);
            let (col, row) = cell(2 * bit as u32 + 1);
            self.fill_cell(col, row, second);
        }
        let top = (FIRST_ROW + CODE_ROWS + 1) * self.height / GRID_ROWS;
        let bar = (frame % u64::from(self.width / 8)) as u32 * 8;
        for y in top..self.height {
            let row = (y * self.width) as usize;
            let line = &mut self.data[row..row + self.width as usize];
            line.fill(BACKGROUND);
            line[bar as usize..(bar + 8) as usize].fill(WHITE);
        }
    }

    /// Reads the code back from the luma plane, sampling the middle half of every cell: the
    /// milliseconds, or `None` when a pair has no clear difference or the CRC fails.
    pub fn read(&self) -> Option<u64> {
        let mean = |index: u32| {
            let (col, row) = cell(index);
            let (x0, x1, y0, y1) = self.cell_rect(col, row);
            let (w, h) = (x1 - x0, y1 - y0);
            let (mut sum, mut n) = (0u32, 0u32);
            for y in y0 + h / 4..y1 - h / 4 {
                for x in x0 + w / 4..x1 - w / 4 {
                    sum += u32::from(self.luma(x, y));
                    n += 1;
                }
            }
            i64::from(sum / n.max(1))
        };
        let mut bits = [false; BITS as usize];
        for (bit, out) in bits.iter_mut().enumerate() {
            let (a, b) = (mean(2 * bit as u32), mean(2 * bit as u32 + 1));
            if (a - b).abs() < MIN_CONTRAST {
                return None;
            }
            *out = a > b;
        }
        decode(&bits)
    }
}

/// The least luma difference between the two cells of a pair for the bit to count as read
/// (white and black differ by 219).
pub const MIN_CONTRAST: i64 = 64;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How to push the clock stream.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames between keyframes (x264 `-g`, no scene cuts).
    pub gop: u32,
    /// Stop after this long; `None` runs until [`ClockPush::stop`].
    pub duration: Option<Duration>,
    /// Add a 48 kHz stereo AAC tone, as a real stream has (players then wait for both tracks).
    pub audio: bool,
}

impl Default for PushOptions {
    /// 1280x720 at 30 fps, a keyframe every 2 s, with audio, until stopped.
    fn default() -> Self {
        PushOptions {
            width: 1280,
            height: 720,
            fps: 30,
            gop: 60,
            duration: None,
            audio: true,
        }
    }
}

/// The ffmpeg arguments that encode raw I420 frames from stdin (x264 ultrafast, zerolatency,
/// a keyframe every `gop` frames and no others) and push FLV to every URL in `urls`: one
/// encode, sent to each (ffmpeg's tee muxer; a server that fails is dropped, the others go on).
pub fn ffmpeg_args(options: &PushOptions, urls: &[String]) -> Vec<String> {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut args = strings(&[
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
    ]);
    args.extend([
        "-video_size".into(),
        format!("{}x{}", options.width, options.height),
        "-framerate".into(),
        options.fps.to_string(),
        "-i".into(),
        "pipe:0".into(),
    ]);
    if options.audio {
        // -re: the tone comes at its own pace, as the frames do, so neither runs ahead.
        args.extend(strings(&[
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ]));
    }
    args.extend(strings(&[
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-sc_threshold",
        "0",
    ]));
    args.extend([
        "-g".into(),
        options.gop.to_string(),
        "-keyint_min".into(),
        options.gop.to_string(),
    ]);
    if options.audio {
        args.extend(strings(&[
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-shortest",
        ]));
    }
    if let [url] = urls {
        args.extend(["-f".into(), "flv".into(), url.clone()]);
    } else {
        // The tee muxer opens its outputs after the encoders start: the codecs' headers must go
        // in the extradata (global headers), or the FLV outputs lack the AVC and AAC sequence
        // headers and servers drop every frame.
        args.extend(strings(&["-flags", "+global_header", "-map", "0:v"]));
        if options.audio {
            args.extend(strings(&["-map", "1:a"]));
        }
        let slaves: Vec<String> = urls
            .iter()
            .map(|u| format!("[f=flv:onfail=ignore]{u}"))
            .collect();
        args.extend(["-f".into(), "tee".into(), slaves.join("|")]);
    }
    args
}

/// A running push: ffmpeg, and the thread that feeds it a frame every 1/fps of wall time.
pub struct ClockPush {
    ffmpeg: Child,
    feeder: Option<JoinHandle<anyhow::Result<u64>>>,
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
}

impl ClockPush {
    /// Starts ffmpeg pushing to every URL in `urls` (one encode) and the feeder thread. Each frame carries the time just
    /// before it was drawn and handed to ffmpeg. The feeder paces frames on the wall clock
    /// (frame `k` at start + k/fps); when it falls behind it writes the late frames at once,
    /// each with its own (late) time, so media time keeps up with the wall clock.
    pub fn start(urls: &[String], options: &PushOptions) -> anyhow::Result<ClockPush> {
        let mut frame = Frame::new(options.width, options.height)?;
        if options.fps == 0 || options.gop == 0 {
            bail!("fps and gop must be at least 1");
        }
        if urls.is_empty() {
            bail!("no URL to push to");
        }
        let mut ffmpeg = Command::new("ffmpeg")
            .args(ffmpeg_args(options, urls))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting ffmpeg (scripts/setup.sh installs it)")?;
        let stdin = ffmpeg.stdin.take().context("ffmpeg's stdin")?;
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let (fps, duration) = (options.fps, options.duration);
        let (stop_flag, counter) = (stop.clone(), frames.clone());
        let feeder = std::thread::Builder::new()
            .name("clock-feeder".into())
            .spawn(move || feed(stdin, &mut frame, fps, duration, &stop_flag, &counter))?;
        Ok(ClockPush {
            ffmpeg,
            feeder: Some(feeder),
            stop,
            frames,
        })
    }

    /// Frames handed to ffmpeg so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Whether ffmpeg has exited (the push failed or ended).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.ffmpeg.try_wait().ok().flatten()
    }

    /// Waits for the push to end by itself (its duration), up to `limit`, then stops it.
    /// Returns the frames written.
    pub fn wait(mut self, limit: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + limit;
        while self.feeder.as_ref().is_some_and(|f| !f.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.finish()
    }

    /// Stops feeding, lets ffmpeg flush and end the RTMP session, and returns the frames written.
    pub fn stop(mut self) -> anyhow::Result<u64> {
        self.finish()
    }

    fn finish(&mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let fed = match self.feeder.take() {
            Some(f) => f
                .join()
                .map_err(|_| anyhow::anyhow!("the clock feeder panicked"))?,
            None => Ok(self.frames()),
        };
        // stdin closed by the feeder: ffmpeg ends on its own; give it a moment, then kill it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.ffmpeg.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.ffmpeg.kill();
                let _ = self.ffmpeg.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let frames = fed?;
        match status {
            Some(s) if !s.success() => bail!("ffmpeg ended with {s} after {frames} frames"),
            _ => Ok(frames),
        }
    }
}

impl Drop for ClockPush {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
    }
}

/// The feeder loop: one frame per 1/fps of wall time until stopped or `duration` is over.
/// Dropping `stdin` at the end tells ffmpeg the input ended.
fn feed(
    mut stdin: ChildStdin,
    frame: &mut Frame,
    fps: u32,
    duration: Option<Duration>,
    stop: &AtomicBool,
    frames: &AtomicU64,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = Duration::from_secs_f64(k as f64 / f64::from(fps));
        if duration.is_some_and(|d| due >= d) {
            break;
        }
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        frame.draw(now_ms(), k);
        if let Err(e) = stdin.write_all(&frame.data) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            return Err(e).context(format!("ffmpeg stopped reading frames after {k}"));
        }
        k += 1;
        frames.store(k, Ordering::Relaxed);
    }
    Ok(k)
}

/// Runs the browser reader, `node web/tests/latency.mjs PLAYLIST_URL ARGS...` (hls.js in
/// headless Chromium), and returns the JSON it prints. An exit code other than 0 (no frame read)
/// still returns the JSON when there is some, so the caller can show why.
pub fn read_latency(playlist_url: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let script = crate::repo_root().join("web/tests/latency.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(playlist_url)
        .args(args)
        .output()
        .context("running node (scripts/setup.sh installs it, playwright-core and chromium)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "{} printed no JSON ({}):\n{stdout}\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_round_trips_and_a_flipped_bit_is_rejected() {
        for ms in [0, 1, 1_795_000_000_123, MAX_MS, 0xA5A5_5A5A_0F0F] {
            let bits = encode(ms);
            assert_eq!(decode(&bits), Some(ms), "{ms}");
            for i in 0..BITS as usize {
                let mut bad = bits;
                bad[i] = !bad[i];
                assert_eq!(decode(&bad), None, "{ms} with bit {i} flipped");
            }
        }
    }

    #[test]
    fn crc16_is_ccitt_false() {
        // The check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn a_drawn_frame_reads_back_and_a_grey_or_swapped_pair_is_rejected() {
        let mut frame = Frame::new(1280, 720).unwrap();
        assert_eq!(frame.read(), None, "a frame without a code");
        let ms = 1_795_000_000_123;
        frame.draw(ms, 7);
        assert_eq!(frame.read(), Some(ms));

        // One pair grey (a smudge): too little contrast for the bit to count.
        let mut grey = Frame {
            width: frame.width,
            height: frame.height,
            data: frame.data.clone(),
        };
        let (col, row) = cell(40);
        grey.fill_cell(col, row, 110);
        let (col, row) = cell(41);
        grey.fill_cell(col, row, 140);
        assert_eq!(grey.read(), None);

        // One pair swapped: a valid-looking bit with the wrong value, caught by the CRC.
        let mut swapped = Frame {
            width: frame.width,
            height: frame.height,
            data: frame.data.clone(),
        };
        let (a, b) = (cell(20), cell(21));
        let first = frame.luma(
            frame.cell_rect(a.0, a.1).0 + 5,
            frame.cell_rect(a.0, a.1).2 + 5,
        );
        let second = if first == WHITE { BLACK } else { WHITE };
        swapped.fill_cell(a.0, a.1, second);
        swapped.fill_cell(b.0, b.1, first);
        assert_eq!(swapped.read(), None);
    }

    #[test]
    fn small_or_odd_frames_are_refused() {
        assert!(Frame::new(100, 100).is_err());
        assert!(Frame::new(1281, 720).is_err());
        assert!(Frame::new(640, 360).is_ok());
    }
}
