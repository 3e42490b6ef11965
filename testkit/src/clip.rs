//! Media helpers around the real ffmpeg and ffprobe: make short test clips, push them over
//! RTMP, and probe what comes back.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

fn require(tool: &str) -> anyhow::Result<()> {
    match Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("{tool} is not installed: run scripts/setup.sh"),
    }
}

/// Arguments for ffmpeg's test pattern with a tone: `seconds` long, H.264 with a keyframe
/// every `gop` frames and AAC.
pub fn test_pattern_args(width: u32, height: u32, fps: u32, seconds: f64, gop: u32) -> Vec<String> {
    let size = format!("testsrc=size={width}x{height}:rate={fps}");
    [
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        &size,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &format!("{seconds}"),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop.to_string(),
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-ar",
        "48000",
        "-ac",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Writes a clip with only the streams asked for: `video` as (width, height, fps) from
/// ffmpeg's `testsrc2` (moving, detailed: x264 cannot squeeze it to nothing) with a key frame
/// every second, and/or a 48 kHz stereo tone; the container follows `out`'s extension
/// (`.flv`, `.mp4`, ...).
pub fn make_clip(
    out: &Path,
    video: Option<(u32, u32, u32)>,
    audio: bool,
    seconds: f64,
) -> anyhow::Result<()> {
    require("ffmpeg")?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if let Some((w, h, fps)) = video {
        cmd.args(["-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={w}x{h}:rate={fps}"));
    }
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.arg("-t").arg(format!("{seconds}"));
    if let Some((_, _, fps)) = video {
        cmd.args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
        ])
        .arg(fps.to_string());
    }
    if audio {
        cmd.args(["-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "2"]);
    }
    let status = cmd.arg(out).status().context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not write the test clip {}", out.display());
    }
    Ok(())
}

/// Writes a test clip (H.264 + AAC in FLV) to `out`.
pub fn make_flv(
    out: &Path,
    width: u32,
    height: u32,
    fps: u32,
    seconds: f64,
    gop: u32,
) -> anyhow::Result<()> {
    require("ffmpeg")?;
    let status = Command::new("ffmpeg")
        .args(test_pattern_args(width, height, fps, seconds, gop))
        .args(["-y", "-f", "flv"])
        .arg(out)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not write the test clip {}", out.display());
    }
    Ok(())
}

/// Starts ffmpeg pushing the test pattern live (`-re`) to `url`. The caller waits on or kills it.
pub fn push_test_pattern(
    url: &str,
    width: u32,
    height: u32,
    fps: u32,
    seconds: f64,
    gop: u32,
) -> anyhow::Result<Child> {
    require("ffmpeg")?;
    let mut args = vec!["-re".to_string()];
    args.extend(test_pattern_args(width, height, fps, seconds, gop));
    Command::new("ffmpeg")
        .args(args)
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ffmpeg")
}

/// Pushes an existing file at its own pace without re-encoding.
pub fn push_file(path: &Path, url: &str) -> anyhow::Result<Child> {
    require("ffmpeg")?;
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(path)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ffmpeg")
}

/// `ffprobe -show_format -show_streams` of a file or URL, as JSON.
pub fn probe(input: &str) -> anyhow::Result<Value> {
    run_ffprobe(&["-show_format", "-show_streams"], input)
}

/// Every packet of every stream, with flags (K = keyframe) and timestamps.
pub fn probe_packets(input: &str) -> anyhow::Result<Value> {
    run_ffprobe(&["-show_packets", "-show_streams"], input)
}

fn run_ffprobe(what: &[&str], input: &str) -> anyhow::Result<Value> {
    require("ffprobe")?;
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(what)
        .arg(input)
        .output()
        .context("running ffprobe")?;
    if !output.status.success() {
        bail!(
            "ffprobe failed on {input}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut value: Value =
        serde_json::from_slice(&output.stdout).context("ffprobe printed invalid JSON")?;
    value["stderr"] = Value::String(String::from_utf8_lossy(&output.stderr).into_owned());
    Ok(value)
}

/// `format.duration` in seconds.
pub fn duration_secs(probe: &Value) -> Option<f64> {
    probe["format"]["duration"].as_str()?.parse().ok()
}

/// The codec names of the streams, in order (`["h264", "aac"]`).
pub fn codec_names(probe: &Value) -> Vec<String> {
    probe["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["codec_name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Media time covered by the packets themselves (first PTS to the end of the last packet),
/// in seconds. Unlike `format.duration` it does not trust the container's metadata, so it
/// sees frames that are missing.
pub fn packet_span_secs(input: &str) -> anyhow::Result<f64> {
    let probe = probe_packets(input)?;
    let packets = probe["packets"].as_array().cloned().unwrap_or_default();
    let num = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let start = packets
        .iter()
        .filter_map(|p| num(&p["pts_time"]))
        .fold(f64::INFINITY, f64::min);
    let end = packets
        .iter()
        .filter_map(|p| Some(num(&p["pts_time"])? + num(&p["duration_time"]).unwrap_or(0.0)))
        .fold(f64::NEG_INFINITY, f64::max);
    if packets.is_empty() || !start.is_finite() || !end.is_finite() {
        bail!("{input} has no timed packets");
    }
    Ok(end - start)
}

/// One FLV tag read from a clip: kind, timestamp in ms, body as sent over RTMP.
pub type Tag = (media::flv::TagKind, u32, Vec<u8>);

/// The audio and video tags of a fresh ffmpeg test clip (H.264 with a keyframe every second,
/// AAC), made in `dir` once per size and length.
pub fn sample_tags(dir: &Path, width: u32, height: u32, seconds: f64) -> anyhow::Result<Vec<Tag>> {
    let path = dir.join(format!("sample-{width}x{height}-{seconds}.flv"));
    if !path.exists() {
        make_flv(&path, width, height, 30, seconds, 30)?;
    }
    flv_tags(&path)
}

/// The audio and video tags of an FLV file.
pub fn flv_tags(path: &Path) -> anyhow::Result<Vec<Tag>> {
    let bytes = std::fs::read(path)?;
    let file = media::flv::parse_file(&bytes)
        .with_context(|| format!("{} is an FLV that does not parse", path.display()))?;
    Ok(file
        .tags
        .iter()
        .filter(|t| t.kind != media::flv::TagKind::Script)
        .map(|t| (t.kind, t.timestamp_ms, t.body.to_vec()))
        .collect())
}

/// The `.flv` files in `dir` whose names start with `prefix`, sorted.
pub fn flv_files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".flv"))
    });
    found.sort();
    found
}

/// Waits until `dir` holds at least one `prefix*.flv`, then returns them all.
pub fn wait_for_flv_files(
    dir: &Path,
    prefix: &str,
    limit: std::time::Duration,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let found = flv_files(dir, prefix);
        if !found.is_empty() {
            return Ok(found);
        }
        if std::time::Instant::now() > deadline {
            bail!("no {prefix}*.flv in {} after {limit:?}", dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The colours of the synthetic 360 test pattern's cube faces, as RGB: what a player must show
/// looking in each direction. Saturated and far apart, so they survive 4:2:0 and H.264.
pub const FACE_COLOURS: [(&str, [u8; 3]); 6] = [
    ("right", [255, 0, 0]),
    ("left", [0, 255, 0]),
    ("up", [0, 0, 255]),
    ("down", [255, 255, 0]),
    ("front", [255, 0, 255]),
    ("back", [0, 255, 255]),
];

/// Writes a synthetic 360 test pattern (H.264 in FLV, `seconds` long, 25 fps, a key frame
/// every second): a cube whose six faces are [`FACE_COLOURS`], each face's upper half in its
/// colour and its lower half at half that brightness (upper and lower as the face stands
/// upright in `c3x2`: toward the sky on the four side faces, toward the back on the up face and
/// toward the front on the down face), so a face drawn rotated or mirrored shows; laid out as ffmpeg's
/// `c3x2` (faces `face` pixels square) and converted with ffmpeg's v360 filter to
/// `projection`: `"e"` (equirect, 4·face x 2·face), `"c3x2"` or `"eac"`.
pub fn make_360_pattern(
    out: &Path,
    projection: &str,
    face: u32,
    seconds: f64,
) -> anyhow::Result<()> {
    require("ffmpeg")?;
    let colour = |name: &str| {
        let (_, [r, g, b]) = FACE_COLOURS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a face of the pattern");
        let half = face / 2;
        format!(
            "color=c=0x{r:02x}{g:02x}{b:02x}:s={face}x{face}:r=25:d={seconds},\
             drawbox=x=0:y={half}:w={face}:h={half}:t=fill:color=0x{:02x}{:02x}{:02x}",
            r / 2,
            g / 2,
            b / 2
        )
    };
    let convert = match projection {
        "c3x2" => String::new(),
        "e" => format!(",v360=c3x2:e:w={}:h={}", 4 * face, 2 * face),
        "eac" => ",v360=c3x2:eac".to_owned(),
        other => bail!("unknown test projection {other:?}: use e, c3x2 or eac"),
    };
    let graph = format!(
        "{};{};{};{};{};{};[r][l][u]hstack=3[top];[d][f][b]hstack=3[bottom];\
         [top][bottom]vstack{convert},format=yuv420p",
        colour("right") + "[r]",
        colour("left") + "[l]",
        colour("up") + "[u]",
        colour("down") + "[d]",
        colour("front") + "[f]",
        colour("back") + "[b]",
    );
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-filter_complex",
            &graph,
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "25",
            "-keyint_min",
            "25",
        ])
        .args([
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-y",
            "-f",
            "flv",
        ])
        .arg(out)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!(
            "ffmpeg could not write the 360 test pattern {}",
            out.display()
        );
    }
    Ok(())
}

/// Luma PSNR (dB, averaged over the frames both have) of `distorted` against `reference` run
/// through the ffmpeg filter chain `reference_filter` (for example `v360=e:eac:interp=linear`),
/// measured by ffmpeg's `psnr` filter. Infinite for identical pictures.
pub fn psnr_luma(
    distorted: &Path,
    reference: &Path,
    reference_filter: &str,
) -> anyhow::Result<f64> {
    require("ffmpeg")?;
    let graph = format!(
        "[1:v]{reference_filter},format=yuv420p[ref];[0:v]format=yuv420p[dis];[dis][ref]psnr"
    );
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(distorted)
        .arg("-i")
        .arg(reference)
        .args(["-filter_complex", &graph, "-f", "null", "-"])
        .output()
        .context("running ffmpeg")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("ffmpeg psnr failed: {stderr}");
    }
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("PSNR y:"))
        .with_context(|| format!("no PSNR line in ffmpeg's output: {stderr}"))?;
    let value = line
        .split("PSNR y:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("no y value")?;
    if value == "inf" {
        return Ok(f64::INFINITY);
    }
    value
        .parse()
        .with_context(|| format!("PSNR y value {value:?} in {line:?}"))
}

/// Re-encodes `input` with ffmpeg `args` (between `-i input` and `out`), for making bad or
/// unusual sources (10-bit, odd sizes) from a test pattern.
pub fn reencode(input: &Path, args: &[&str], out: &Path) -> anyhow::Result<()> {
    require("ffmpeg")?;
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(out)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not write {}", out.display());
    }
    Ok(())
}

/// One H.264 access unit of a clip as the origin receives it over RTMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcFrame {
    /// The tag's timestamp (DTS), ms.
    pub dts_ms: u32,
    /// Composition offset (PTS - DTS), ms.
    pub cts_ms: i32,
    /// FLV frame type 1.
    pub keyframe: bool,
    /// Length-prefixed NAL units.
    pub avcc: Vec<u8>,
}

impl AvcFrame {
    /// PTS in ms.
    pub fn pts_ms(&self) -> i64 {
        i64::from(self.dts_ms) + i64::from(self.cts_ms)
    }
}

/// The AVCDecoderConfigurationRecord (from the first AVC sequence header) and every coded
/// H.264 access unit of `tags`, in decode order.
pub fn avc_stream(tags: &[Tag]) -> anyhow::Result<(Vec<u8>, Vec<AvcFrame>)> {
    use media::flv::{FrameType, TagKind, VideoPacketType, VideoTag};
    let mut record = None;
    let mut frames = Vec::new();
    for (kind, ts, body) in tags {
        if *kind != TagKind::Video {
            continue;
        }
        let tag = VideoTag::parse(body).context("a video tag of the clip does not parse")?;
        match tag.packet_type {
            VideoPacketType::SequenceHeader if record.is_none() => {
                record = Some(tag.payload.to_vec());
            }
            VideoPacketType::Nalu => frames.push(AvcFrame {
                dts_ms: *ts,
                cts_ms: tag.composition_time_ms,
                keyframe: tag.frame_type == FrameType::Key,
                avcc: tag.payload.to_vec(),
            }),
            _ => {}
        }
    }
    let record = record.context("the clip has no AVC sequence header")?;
    Ok((record, frames))
}

/// The first video stream's packets of `input`: (PTS in seconds, key frame), in presentation
/// order.
pub fn video_packets(input: &str) -> anyhow::Result<Vec<(f64, bool)>> {
    let probe = run_ffprobe(
        &["-select_streams", "v:0", "-show_packets", "-show_streams"],
        input,
    )?;
    let mut packets: Vec<(f64, bool)> = probe["packets"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| {
                    let pts = p["pts_time"].as_str()?.parse().ok()?;
                    let key = p["flags"].as_str().is_some_and(|f| f.contains('K'));
                    Some((pts, key))
                })
                .collect()
        })
        .unwrap_or_default();
    packets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(packets)
}
