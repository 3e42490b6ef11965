//! `spherecast-clock URL... [--size WxH] [--fps N] [--gop FRAMES] [--seconds S] [--no-audio]`:
//! pushes the wall-clock stream of `testkit::clock` over RTMP with ffmpeg (one encode, sent to
//! every URL), until the time is up or the process is stopped (ffmpeg then sees its input end
//! and closes the sessions).

use std::time::Duration;

use anyhow::{Context, bail};
use testkit::clock::{ClockPush, PushOptions};

const USAGE: &str = "usage: spherecast-clock RTMP_URL... [--size 1280x720] [--fps 30] [--gop 60] [--seconds S] [--no-audio]";

fn main() -> anyhow::Result<()> {
    let (urls, options) = parse(std::env::args().skip(1))?;
    let push = ClockPush::start(&urls, &options)?;
    let frames = match options.duration {
        Some(d) => push.wait(d + Duration::from_secs(10))?,
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    };
    eprintln!(
        "spherecast-clock: pushed {frames} frames to {}",
        urls.join(" ")
    );
    Ok(())
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<(Vec<String>, PushOptions)> {
    let mut options = PushOptions::default();
    let mut urls = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--size" => {
                let v = value()?;
                let (w, h) = v
                    .split_once('x')
                    .with_context(|| format!("--size {v}: expected WIDTHxHEIGHT"))?;
                options.width = w.parse().with_context(|| format!("--size {v}"))?;
                options.height = h.parse().with_context(|| format!("--size {v}"))?;
            }
            "--fps" => options.fps = value()?.parse().context("--fps")?,
            "--gop" => options.gop = value()?.parse().context("--gop")?,
            "--seconds" => {
                let s: f64 = value()?.parse().context("--seconds")?;
                if !(s > 0.0 && s.is_finite()) {
                    bail!("--seconds must be positive");
                }
                options.duration = Some(Duration::from_secs_f64(s));
            }
            "--no-audio" => options.audio = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ if !arg.starts_with('-') => urls.push(arg),
            _ => bail!("unexpected argument {arg}; {USAGE}"),
        }
    }
    if urls.is_empty() {
        bail!("{USAGE}");
    }
    Ok((urls, options))
}
