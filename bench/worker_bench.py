#!/usr/bin/env python3
"""Measurement helper for bench/worker.sh (Python 3 standard library only).

Transcodes one input into the same 4-rung HLS ladder three ways, one after the other, and
compares them: `spherecast transcode` (ours), one ffmpeg command with split=4 (ffmpeg), and
one ffmpeg MP4 transcode per rung followed by one ffmpeg segmenting pass per rung (reference,
the method of the architecture this project replaces).

Subcommands:
  run      run the methods, measure them, compute SSIM, print the table, write the JSON
  table    print the table again from a JSON result file
"""

import argparse
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The ladder under test. Widths follow the source aspect ratio, forced even.
LADDER = [
    dict(name="1080p", height=1080, video_kbps=3980, audio_kbps=128),
    dict(name="720p", height=720, video_kbps=2136, audio_kbps=128),
    dict(name="480p", height=480, video_kbps=1080, audio_kbps=96),
    dict(name="360p", height=360, video_kbps=500, audio_kbps=96),
]
PRESET = "veryfast"
SEGMENT_SECS = 6
KEYFRAME_SECS = 2
BFRAMES = 3
MAXRATE_FACTOR = 1.0  # VBV maxrate = the video bitrate (as x264enc pass=cbr sets it), 2 s buffer
BUFSIZE_FACTOR = 2.0  # VBV buffer = 2 x video bitrate

METHODS = {
    "ours": "spherecast transcode",
    "ffmpeg": "ffmpeg, one command",
    "reference": "reference, per rung",
}

# High-quality scaler for the SSIM reference (the source scaled to each rendition's size).
SSIM_SCALER = "lanczos+accurate_rnd+full_chroma_int"


class Failure(Exception):
    """A method or measurement that could not complete; the message says why."""


def _terminate(signum, frame):
    # worker.sh's clean-up sends SIGTERM: raise so that `finally` blocks stop the running child.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminate)


def log(msg):
    print(f"  {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Processes

def machine_ticks():
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])
    return total - idle, total


def wait_quiet(max_wait, below=15.0):
    """Waits (at most max_wait s) until the machine is below `below` % busy over 3 s, so that
    other work (builds, tests) does not skew the timings. Returns the last busy %."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = machine_ticks()
        time.sleep(3.0)
        b1 = machine_ticks()
        busy = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        if busy < below or time.monotonic() >= deadline:
            return busy
        log(f"machine {busy:.0f} % busy: waiting for it to quiet down "
            f"(at most {max(0, deadline - time.monotonic()):.0f} s more)")


def cpu_list():
    cpus = sorted(os.sched_getaffinity(0))
    return cpus, ",".join(str(c) for c in cpus)


def run_measured(argv, logpath, timeout):
    """Runs one process pinned to the allowed CPUs and returns its wall time and its rusage
    (from wait4: user+sys and peak RSS of the process and its waited-for descendants)."""
    _, cpus = cpu_list()
    cmd = ["taskset", "-c", cpus] + argv  # taskset execs: same pid, same rusage
    m0 = machine_ticks()
    t0 = time.monotonic()
    with open(logpath, "ab") as logf:
        logf.write(("$ " + " ".join(argv) + "\n").encode())
        logf.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        # os.kill, not proc.kill: Popen would poll, and could reap the child before wait4.
        os.kill(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, on_timeout)
    timer.start()
    try:
        # wait4 rather than Popen.wait: it returns the child's rusage.
        _, status, ru = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted (SIGTERM, Ctrl-C): stop and reap the child
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    wall = time.monotonic() - t0
    m1 = machine_ticks()
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime
    machine_busy_s = (m1[0] - m0[0]) / CLK_TCK
    return dict(
        argv=argv, rc=proc.returncode, wall_s=wall, user_s=ru.ru_utime, sys_s=ru.ru_stime,
        cpu_s=cpu, peak_rss_kib=ru.ru_maxrss,
        # Everything else the machine did meanwhile, in cores (other builds, tests...).
        other_load_cores=max(0.0, (machine_busy_s - cpu) / wall) if wall > 0 else 0.0,
        timed_out=timed_out.is_set(),
    )


def tail(path, n=25):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in lines[-n:])


# ---------------------------------------------------------------------------------------------
# Probing

def ffprobe_json(path, entries, extra=()):
    out = subprocess.run(
        ["ffprobe", "-v", "error", *extra, "-show_entries", entries, "-of", "json", path],
        stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if out.returncode != 0:
        raise Failure(f"ffprobe {path} failed: {out.stderr.decode('utf-8', 'replace').strip()[-300:]}")
    return json.loads(out.stdout)


def probe_source(path):
    j = ffprobe_json(path, "stream=index,codec_type,codec_name,profile,width,height,avg_frame_rate,"
                           "sample_rate,channels:packet=stream_index,size:format=duration,bit_rate")
    streams = j.get("streams", [])
    v = next((s for s in streams if s.get("codec_type") == "video"), None)
    a = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if not v:
        raise Failure(f"{path}: no video stream")
    num, den = (int(x) for x in v["avg_frame_rate"].split("/"))
    frames = sum(1 for p in j.get("packets", []) if p["stream_index"] == v["index"])
    duration = float(j["format"]["duration"])
    return dict(
        path=path, width=v["width"], height=v["height"], fps=num / den, fps_num=num, fps_den=den,
        frames=frames,
        duration_s=duration, video_codec=f"{v['codec_name']} {v.get('profile', '')}".strip(),
        audio=(f"{a['codec_name']} {a.get('sample_rate')} Hz {a.get('channels')} ch" if a else None),
        bitrate_kbps=round(int(j["format"].get("bit_rate", 0)) / 1000),
        bytes=os.path.getsize(path),
    )


def parse_playlist(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    extinf = [float(m) for m in re.findall(r"#EXTINF:([\d.]+)", text)]
    uris = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    td = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
    return dict(extinf=extinf, segments=len(uris), uris=uris, endlist="#EXT-X-ENDLIST" in text,
                target_duration=int(td.group(1)) if td else None)


def probe_rendition(playlist):
    """Size, frame count and bitrates of one HLS rendition (reads every packet, decodes none)."""
    pl = parse_playlist(playlist)
    j = ffprobe_json(playlist, "stream=index,codec_type,codec_name,profile,width,height,"
                               "sample_rate,channels:packet=stream_index,size")
    streams = {s["index"]: s for s in j.get("streams", [])}
    v = next((s for s in streams.values() if s.get("codec_type") == "video"), None)
    a = next((s for s in streams.values() if s.get("codec_type") == "audio"), None)
    vbytes = abytes = frames = 0
    for p in j.get("packets", []):
        s = streams.get(p["stream_index"])
        if s is v:
            vbytes += int(p["size"])
            frames += 1
        elif s is a:
            abytes += int(p["size"])
    dur = sum(pl["extinf"])
    seg_bytes = sum(os.path.getsize(os.path.join(os.path.dirname(playlist), u))
                    for u in pl["uris"] if os.path.exists(os.path.join(os.path.dirname(playlist), u)))
    r = dict(
        playlist=playlist, segments=pl["segments"], endlist=pl["endlist"],
        target_duration=pl["target_duration"], extinf=pl["extinf"], duration_s=dur,
        bytes=seg_bytes,
    )
    if v:
        r.update(width=v.get("width"), height=v.get("height"), frames=frames,
                 video=f"{v['codec_name']} {v.get('profile', '')}".strip(),
                 video_kbps=vbytes * 8 / dur / 1000 if dur else None)
    if a:
        r.update(audio=f"{a['codec_name']} {a.get('sample_rate')} Hz {a.get('channels')} ch",
                 audio_kbps=abytes * 8 / dur / 1000 if dur else None)
    return r


# ---------------------------------------------------------------------------------------------
# The three methods

def gop_frames(src):
    return max(1, round(src["fps"] * KEYFRAME_SECS))


def x264_opts(rung, spec=""):
    kbps = rung["video_kbps"]
    return [f"-b:v{spec}", f"{kbps}k",
            f"-maxrate:v{spec}", f"{round(kbps * MAXRATE_FACTOR)}k",
            f"-bufsize:v{spec}", f"{round(kbps * BUFSIZE_FACTOR)}k"]


def common_video_opts(src, threads):
    g = gop_frames(src)
    return ["-c:v", "libx264", "-preset", PRESET, "-pix_fmt", "yuv420p",
            "-g", str(g), "-keyint_min", str(g), "-sc_threshold", "0", "-bf", str(BFRAMES),
            "-threads", str(threads)]


def common_audio_opts():
    return ["-c:a", "aac", "-ar", "48000", "-ac", "2"]


def hls_opts():
    return ["-f", "hls", "-hls_time", str(SEGMENT_SECS), "-hls_playlist_type", "vod",
            "-hls_segment_type", "mpegts"]


def ours_config(path):
    lines = ["# Written by bench/worker_bench.py", "[worker]",
             f"segment_secs = {SEGMENT_SECS}", f"keyframe_interval_secs = {KEYFRAME_SECS}"]
    for r in LADDER:
        lines += ["", "[[worker.rungs]]", f'name = "{r["name"]}"', f"height = {r['height']}",
                  f"video_kbps = {r['video_kbps']}", f"audio_kbps = {r['audio_kbps']}",
                  f'preset = "{PRESET}"']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def commands(method, args, src, outdir, workdir):
    """The processes of one method, run one after the other."""
    n = len(cpu_list()[0])
    ff = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning", "-y"]
    if method == "ours":
        cfg = os.path.join(workdir, "ours.toml")
        ours_config(cfg)
        return [[args.bin, "transcode", "--config", cfg, src["path"], outdir]]
    if method == "ffmpeg":
        k = len(LADDER)
        graph = f"[0:v]split={k}" + "".join(f"[s{i}]" for i in range(k)) + ";" + ";".join(
            f"[s{i}]scale=-2:{r['height']}[v{i}]" for i, r in enumerate(LADDER))
        cmd = ff + ["-threads", str(n), "-i", src["path"], "-filter_complex_threads", str(n),
                    "-filter_complex", graph]
        for i in range(k):
            cmd += ["-map", f"[v{i}]"]
        for i in range(k):
            cmd += ["-map", "0:a:0"]
        cmd += common_video_opts(src, n)
        for i, r in enumerate(LADDER):
            cmd += x264_opts(r, f":{i}")
        cmd += common_audio_opts()
        for i, r in enumerate(LADDER):
            cmd += [f"-b:a:{i}", f"{r['audio_kbps']}k"]
        cmd += hls_opts() + [
            "-hls_segment_filename", os.path.join(outdir, "%v", "%05d.ts"),
            "-master_pl_name", "master.m3u8",
            "-var_stream_map", " ".join(f"v:{i},a:{i},name:{r['name']}" for i, r in enumerate(LADDER)),
            os.path.join(outdir, "%v", "index.m3u8")]
        return [cmd]
    if method == "reference":
        cmds = []
        for r in LADDER:  # 1. one MP4 transcode per rung
            mp4 = os.path.join(workdir, f"reference-{r['name']}.mp4")
            cmds.append(ff + ["-threads", str(n), "-i", src["path"], "-map", "0:v:0", "-map", "0:a:0",
                              "-vf", f"scale=-2:{r['height']}"] + common_video_opts(src, n)
                        + x264_opts(r) + common_audio_opts() + ["-b:a", f"{r['audio_kbps']}k", mp4])
        for r in LADDER:  # 2. one segmenting pass per rung
            mp4 = os.path.join(workdir, f"reference-{r['name']}.mp4")
            d = os.path.join(outdir, r["name"])
            os.makedirs(d, exist_ok=True)
            cmds.append(ff + ["-i", mp4, "-map", "0", "-c", "copy"] + hls_opts() + [
                "-hls_segment_filename", os.path.join(d, "%05d.ts"), os.path.join(d, "index.m3u8")])
        return cmds
    raise ValueError(method)


def write_reference_master(outdir, renditions):
    # The reference system wrote its master manifest with a script; this is not timed.
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for r in LADDER:
        rd = renditions.get(r["name"])
        if not rd or "width" not in rd:
            continue
        bw = round(((rd.get("video_kbps") or 0) + (rd.get("audio_kbps") or 0)) * 1000)
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={rd['width']}x{rd['height']}",
                  f"{r['name']}/index.m3u8"]
    with open(os.path.join(outdir, "master.m3u8"), "w") as f:
        f.write("\n".join(lines) + "\n")


def read_ssim_stats(path):
    vals = []
    with open(path) as f:
        for ln in f:
            m = re.search(r"All:([\d.]+)", ln)
            if m:
                vals.append(float(m.group(1)))
    return vals


def aligned(label, stream, skip, src):
    """Frame-index alignment: drop `skip` leading frames, then number the frames 0, 1, 2... on a
    1/fps time base, so that the ssim filter pairs frame N of one side with frame N of the other
    whatever timestamps the container carried."""
    return (f"{stream}trim=start_frame={skip},settb={src['fps_den']}/{src['fps_num']},"
            f"setpts=N{label}")


SSIM_OFFSETS = range(-2, 3)


def detect_offset(src, rd, workdir, tag, timeout):
    """Which rendition frame shows source frame 0. Tools differ in how they map the source's
    timestamps (an FLV has millisecond timestamps; ffmpeg's constant-frame-rate conversion may
    repeat the first frame): comparing by timestamp or by index from 0 could compare every
    frame with its neighbour. Tries offsets -2..2 on the first 3 s at 480x270, keeps the best."""
    secs = f"{min(src['duration_s'], 3.0) + 0.5:.2f}"
    n = len(cpu_list()[0])
    k = len(SSIM_OFFSETS)
    parts = [f"[0:v]scale=480:270,format=yuv420p,split={k}" + "".join(f"[s{i}]" for i in range(k)),
             f"[1:v]scale=480:270,format=yuv420p,split={k}" + "".join(f"[d{i}]" for i in range(k))]
    stats = {}
    for i, off in enumerate(SSIM_OFFSETS):
        stats[off] = os.path.join(workdir, f"offset-{tag}{off:+d}.log")
        parts.append(aligned(f"[ss{i}]", f"[s{i}]", max(0, -off), src))
        parts.append(aligned(f"[dd{i}]", f"[d{i}]", max(0, off), src))
        parts.append(f"[dd{i}][ss{i}]ssim=stats_file={stats[off]}:shortest=1[o{i}]")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
           "-threads", str(n), "-t", secs, "-i", src["path"],
           "-threads", str(n), "-t", secs, "-i", rd["playlist"],
           "-filter_complex", ";".join(parts)]
    for i in range(k):
        cmd += ["-map", f"[o{i}]"]
    cmd += ["-f", "null", "-"]
    logpath = os.path.join(workdir, f"offset-{tag}.log")
    res = run_measured(cmd, logpath, timeout)
    if res["rc"] != 0:
        raise Failure(f"SSIM alignment pass exited with {res['rc']}; see {logpath}:\n{tail(logpath)}")
    scores = {}
    for off, path in stats.items():
        vals = read_ssim_stats(path)
        if vals:
            scores[off] = sum(vals) / len(vals)
    if not scores:
        raise Failure(f"SSIM alignment pass wrote no frames for {tag}")
    best = max(scores, key=scores.get)
    return best, scores


def ssim_pass(src, renditions, workdir, method, timeout):
    """SSIM of each rendition against the source scaled to the rendition's size with a
    high-quality scaler (ffmpeg ssim filter, its "All" value: the mean over frames of the
    weighted Y/U/V SSIM). Frames are paired by index after detect_offset(). One ffmpeg process
    per method decodes the source once for every rendition. Adds ssim, ssim_min, ssim_db,
    frames_compared, offset_frames to each rendition."""
    names = [r["name"] for r in LADDER if r["name"] in renditions
             and renditions[r["name"]].get("width")]
    if not names:
        return None
    t0 = time.monotonic()
    for name in names:
        off, scores = detect_offset(src, renditions[name], workdir, f"{method}-{name}", timeout)
        renditions[name]["offset_frames"] = off
        renditions[name]["offset_scores"] = {f"{o:+d}": round(v, 5) for o, v in scores.items()}
    n = len(cpu_list()[0])
    k = len(names)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
           "-threads", str(n), "-i", src["path"]]
    parts = [f"[0:v]split={k}" + "".join(f"[s{i}]" for i in range(k))]
    stats = {}
    for i, name in enumerate(names):
        rd = renditions[name]
        off = rd["offset_frames"]
        cmd += ["-threads", str(n), "-i", rd["playlist"]]
        stats[name] = os.path.join(workdir, f"ssim-{method}-{name}.log")
        parts.append(aligned("", f"[s{i}]", max(0, -off), src)
                     + f",scale={rd['width']}:{rd['height']}:flags={SSIM_SCALER},format=yuv420p[r{i}]")
        parts.append(aligned("", f"[{i + 1}:v]", max(0, off), src) + f",format=yuv420p[d{i}]")
        parts.append(f"[d{i}][r{i}]ssim=stats_file={stats[name]}:shortest=1[o{i}]")
    cmd += ["-filter_complex_threads", str(n), "-filter_complex", ";".join(parts)]
    for i in range(k):
        cmd += ["-map", f"[o{i}]"]
    cmd += ["-f", "null", "-"]
    logpath = os.path.join(workdir, f"ssim-{method}.log")
    res = run_measured(cmd, logpath, timeout)
    if res["rc"] != 0:
        raise Failure(f"SSIM pass exited with {res['rc']}; see {logpath}:\n{tail(logpath)}")
    for name in names:
        vals = read_ssim_stats(stats[name])
        if not vals:
            raise Failure(f"SSIM pass wrote no frames for {method} {name}")
        mean = sum(vals) / len(vals)
        renditions[name].update(
            ssim=mean, ssim_min=min(vals), frames_compared=len(vals),
            ssim_db=(-10 * math.log10(1 - mean) if mean < 1 else float("inf")))
    return time.monotonic() - t0


def run_method(method, args, src, run_dir):
    outdir = os.path.join(run_dir, f"out-{method}")
    workdir = os.path.join(run_dir, f"work-{method}")
    os.makedirs(outdir, exist_ok=True)
    os.makedirs(workdir, exist_ok=True)
    rec = dict(method=method, label=METHODS[method], outdir=outdir)
    logpath = os.path.join(run_dir, f"{method}.log")
    rec["log"] = logpath
    timeout = max(600.0, 30.0 * src["duration_s"])
    try:
        cmds = commands(method, args, src, outdir, workdir)
        rec["machine_busy_before_pct"] = wait_quiet(args.quiet_wait)
        procs = []
        t0 = time.monotonic()
        for argv in cmds:
            p = run_measured(argv, logpath, timeout)
            procs.append(p)
            if p["rc"] != 0:
                what = "timed out" if p["timed_out"] else f"exited with {p['rc']}"
                raise Failure(f"{os.path.basename(argv[0])} {what}; last lines of {logpath}:\n"
                              f"{tail(logpath)}")
        wall = time.monotonic() - t0
        cpu = sum(p["cpu_s"] for p in procs)
        rec.update(
            processes=procs, wall_s=wall, cpu_s=cpu,
            user_s=sum(p["user_s"] for p in procs), sys_s=sum(p["sys_s"] for p in procs),
            # Per process peak; for a chain of processes the max, never the sum (they do not
            # run at the same time).
            peak_rss_kib=max(p["peak_rss_kib"] for p in procs),
            x_realtime=src["duration_s"] / wall, cores_used=cpu / wall,
            other_load_cores=sum(p["other_load_cores"] * p["wall_s"] for p in procs) / wall,
        )
        log(f"{METHODS[method]}: {wall:.1f} s wall, {cpu:.1f} s CPU, "
            f"peak RSS {rec['peak_rss_kib'] / 1024:.0f} MiB, {rec['x_realtime']:.2f}x realtime "
            f"(other load on the machine {rec['other_load_cores']:.2f} cores)")

        renditions, problems = {}, []
        for r in LADDER:
            pl = os.path.join(outdir, r["name"], "index.m3u8")
            if not os.path.exists(pl):
                problems.append(f"no {r['name']}/index.m3u8")
                continue
            rd = probe_rendition(pl)
            renditions[r["name"]] = rd
            if "width" not in rd:
                problems.append(f"{r['name']} has no video")
            elif abs(rd["frames"] - src["frames"]) > max(2, src["frames"] // 100):
                # A frame or two more or less is timestamp rounding (the details show it); more
                # is lost or invented video.
                problems.append(f"{r['name']} has {rd['frames']} frames, the source {src['frames']}")
            if not rd["endlist"]:
                problems.append(f"{r['name']}/index.m3u8 has no #EXT-X-ENDLIST")
        audio_pl = os.path.join(outdir, "audio", "index.m3u8")
        if os.path.exists(audio_pl):  # ours: a separate audio-only rendition
            renditions["audio"] = probe_rendition(audio_pl)
        if method == "reference":
            write_reference_master(outdir, renditions)
        rec["master"] = os.path.exists(os.path.join(outdir, "master.m3u8"))
        if not rec["master"]:
            problems.append("no master.m3u8")
        video = [renditions[r["name"]] for r in LADDER
                 if r["name"] in renditions and "width" in renditions[r["name"]]]
        # ABR players switch at segment boundaries: every rung should cut at the same times.
        rec["segments_aligned"] = len({tuple(round(d, 2) for d in v["extinf"]) for v in video}) <= 1
        rec["output_bytes"] = sum(v["bytes"] for v in renditions.values())
        rec["renditions"] = renditions
        secs = ssim_pass(src, renditions, workdir, method, timeout)
        if secs is not None:
            log(f"{METHODS[method]}: SSIM " + ", ".join(
                f"{name} {renditions[name]['ssim']:.4f}" for name in renditions
                if "ssim" in renditions[name]) + f" (pass took {secs:.0f} s)")
        if problems:
            rec["problems"] = problems
            log(f"{METHODS[method]}: problems: " + "; ".join(problems))
    except Failure as e:
        rec["error"] = str(e)
        log(f"{METHODS[method]}: FAILED: {e}")
    return rec


# ---------------------------------------------------------------------------------------------
# Report

def ratio(a, b):
    return a / b if a is not None and b else None


def compute_ratios(methods):
    def get(m, key):
        r = methods.get(m) or {}
        return None if ("error" in r or "skipped" in r) else r.get(key)
    out = {}
    for num, den in (("ours", "ffmpeg"), ("reference", "ours"), ("reference", "ffmpeg")):
        for key in ("wall_s", "cpu_s", "peak_rss_kib"):
            v = ratio(get(num, key), get(den, key))
            if v is not None:
                out[f"{num}/{den} {key.rsplit('_', 1)[0]}"] = v
    return out


def render_table(res):
    methods = res["methods"]
    # A skipped method gets no column, only a line saying why.
    order = [m for m in METHODS if m in methods and "skipped" not in methods[m]]
    skipped = [m for m in METHODS if m in methods and "skipped" in methods[m]]

    def cell(m, fn):
        r = methods[m]
        if "error" in r and "wall_s" not in r:
            return "FAILED"
        try:
            v = fn(r)
        except (KeyError, TypeError):
            return "-"
        return "-" if v is None else v

    rows = [
        ("wall time", lambda r: f"{r['wall_s']:.1f} s"),
        ("x realtime (input s / wall s)", lambda r: f"{r['x_realtime']:.2f}x"),
        ("CPU time (user+sys)", lambda r: f"{r['cpu_s']:.1f} s"),
        ("  cores busy on average", lambda r: f"{r['cores_used']:.2f}"),
        ("peak RSS (largest process)", lambda r: f"{r['peak_rss_kib'] / 1024:.0f} MiB"),
        ("processes", lambda r: str(len(r["processes"]))),
        ("other load on the machine", lambda r: f"{r['other_load_cores']:.2f} cores"),
    ]
    for rung in LADDER:
        name = rung["name"]
        rows.append((f"{name} SSIM (All)", lambda r, n=name: (
            f"{r['renditions'][n]['ssim']:.4f} ({r['renditions'][n]['ssim_db']:.1f} dB)")))
        rows.append((f"{name} video kbit/s (target {rung['video_kbps']})",
                     lambda r, n=name: f"{r['renditions'][n]['video_kbps']:.0f}"))
    rows.append(("output size", lambda r: f"{r['output_bytes'] / 1e6:.1f} MB"))
    rows.append(("segments aligned across rungs", lambda r: "yes" if r["segments_aligned"] else "NO"))

    header = ["figure"] + [METHODS[m] for m in order]
    body = [[label] + [cell(m, fn) for m in order] for label, fn in rows]
    widths = [max(len(row[i]) for row in body + [header]) for i in range(len(header))]
    fmt = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    mach, ver = res.get("machine", {}), res.get("versions", {})
    lines = [f"== VOD transcode: {res['input']['duration_s']:.0f} s 1080p30 input, 4-rung HLS ladder "
             f"({res['started']})",
             f"machine: {mach.get('cores', '?')} cores ({mach.get('cpu', '?')}), "
             f"{mach.get('ram_gib', '?')} GiB; tools pinned to CPUs {res.get('cpus', '?')}",
             f"versions: spherecast {ver.get('spherecast', '?')} (git {ver.get('git', '?')}), "
             f"ffmpeg {ver.get('ffmpeg', '?')}, libx264 {ver.get('libx264', '?')}, "
             f"GStreamer {ver.get('gstreamer', '?')}",
             ""]
    lines += [f"SKIPPED {METHODS[m]}: {methods[m]['skipped']}" for m in skipped]
    if skipped:
        lines.append("")
    lines += [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(row) for row in body]

    lines.append("")
    if res["ratios"]:
        lines.append("Ratios (lower is better for the numerator):")
        for k, v in res["ratios"].items():
            lines.append(f"  {k}: {v:.2f}x")
    else:
        lines.append("Ratios: none (fewer than two methods measured)")

    lines.append("")
    lines.append("Details:")
    src = res["input"]
    lines.append(f"  input: {os.path.basename(src['path'])}: {src['width']}x{src['height']} "
                 f"{src['fps']:.3g} fps, {src['duration_s']:.2f} s, {src['frames']} frames, "
                 f"{src['video_codec']}, {src['audio']}, {src['bitrate_kbps']} kbit/s")
    for m in order:
        r = methods[m]
        if "machine_busy_before_pct" in r:
            lines.append(f"  {METHODS[m]}: machine {r['machine_busy_before_pct']:.0f} % busy just "
                         f"before it started")
        for p in r.get("processes", []):
            lines.append(f"  {METHODS[m]}: {os.path.basename(p['argv'][0])} "
                         f"{p['wall_s']:.1f} s wall, {p['user_s']:.1f} s user + {p['sys_s']:.1f} s sys, "
                         f"peak RSS {p['peak_rss_kib'] / 1024:.0f} MiB"
                         + (f" ({'/'.join(p['argv'][-1].split('/')[-2:])})" if m == "reference" else ""))
        for name, rd in r.get("renditions", {}).items():
            parts = [f"{rd.get('width')}x{rd.get('height')} {rd.get('video')}" if "width" in rd
                     else "audio only"]
            if "frames" in rd:
                parts.append(f"{rd['frames']} frames")
            if "audio_kbps" in rd:
                parts.append(f"{rd['audio']} {rd['audio_kbps']:.0f} kbit/s")
            parts.append(f"{rd['segments']} segments, {rd['duration_s']:.2f} s")
            if "ssim" in rd:
                parts.append(f"SSIM min {rd['ssim_min']:.4f} over {rd['frames_compared']} frames, "
                             f"frame offset {rd['offset_frames']:+d}")
            lines.append(f"  {METHODS[m]}: {name}: " + ", ".join(parts))
        if r.get("problems"):
            lines.append(f"  {METHODS[m]}: PROBLEMS: " + "; ".join(r["problems"]))
        if "error" in r:
            lines.append(f"  {METHODS[m]}: FAILED: " + r["error"].splitlines()[0])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------

def cmd_run(args):
    started = datetime.datetime.now(datetime.timezone.utc)
    src = probe_source(args.input)
    methods = {}
    if all(m in args.skip for m in args.methods):
        for m in args.methods:
            log(f"{METHODS[m]}: SKIPPED: {args.skip[m]}")
        log("nothing to measure: every method was skipped; no result written")
        return 1
    for m in args.methods:
        if m in args.skip:
            methods[m] = dict(method=m, label=METHODS[m], skipped=args.skip[m])
            log(f"{METHODS[m]}: SKIPPED: {args.skip[m]}")
            continue
        log(f"{METHODS[m]}: running")
        methods[m] = run_method(m, args, src, args.run_dir)
    res = dict(
        benchmark="worker", started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=json.loads(args.machine), versions=json.loads(args.versions),
        cpus=cpu_list()[1], input=src,
        ladder=[dict(r, preset=PRESET, maxrate_kbps=round(r["video_kbps"] * MAXRATE_FACTOR),
                     bufsize_kbps=round(r["video_kbps"] * BUFSIZE_FACTOR)) for r in LADDER],
        settings=dict(segment_secs=SEGMENT_SECS, keyframe_interval_secs=KEYFRAME_SECS,
                      gop_frames=gop_frames(src), bframes=BFRAMES, ssim_scaler=SSIM_SCALER),
        methods=methods,
    )
    res["ratios"] = compute_ratios(methods)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    table = render_table(res)
    print()
    print(table)
    if args.report:
        with open(args.report, "w") as f:
            f.write(table + "\n")
    failed = [m for m, r in methods.items() if "error" in r or r.get("problems")]
    return 1 if failed else 0


def cmd_table(args):
    with open(args.json) as f:
        print(render_table(json.load(f)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--input", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--json", required=True, help="result file to write")
    p.add_argument("--report", help="also write the printed table to this file")
    p.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], required=True)
    p.add_argument("--skip", action="append", default=[], metavar="METHOD=REASON",
                   help="report METHOD as skipped, with REASON")
    p.add_argument("--bin", default="target/release/spherecast")
    p.add_argument("--quiet-wait", type=float, default=120.0)
    p.add_argument("--machine", default="{}", help="JSON object")
    p.add_argument("--versions", default="{}", help="JSON object")
    p = sub.add_parser("table")
    p.add_argument("--json", required=True)
    args = ap.parse_args()
    if args.cmd == "run":
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown:
            ap.error(f"unknown method(s) {', '.join(unknown)}: use {', '.join(METHODS)}")
        args.skip = dict(s.split("=", 1) for s in args.skip)
        sys.exit(cmd_run(args))
    cmd_table(args)


if __name__ == "__main__":
    main()
