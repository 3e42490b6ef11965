#!/usr/bin/env python3
"""Measures the projection kernel (projection/examples/project.rs) against ffmpeg's v360 on the
same raw input, side by side: frames/s without and with table set-up, set-up time, the ratio,
and PSNR of our output against ffmpeg's. Run by bench/projection.sh, which builds the binary
and makes the input; see bench/README.md."""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminate)


def log(msg):
    print(f"  {msg}", flush=True)


def machine_ticks():
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals[:8]) - idle, sum(vals[:8])


def wait_quiet(max_wait, below=10.0):
    """Waits (at most max_wait s) until the machine is below `below` % busy over 3 s.
    Returns the last busy %."""
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


def timed(argv):
    """Runs argv; returns (wall s, cpu s of the child, stdout). Fails loudly."""
    r0 = os.times()
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1 = os.times()
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return wall, cpu, p.stdout


def ffmpeg_argv(args, layout, frames=None, out=None):
    """ffmpeg projecting to `layout`, or with layout None the same pipeline with the `null`
    filter instead of v360 (reading, demuxing and the null output alone)."""
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-threads", str(args.threads), "-filter_threads", str(args.threads),
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", args.size, "-i", args.input]
    if frames is not None:
        argv += ["-frames:v", str(frames)]
    argv += ["-vf", f"v360=e:{layout}:interp=linear" if layout else "null"]
    if out:
        argv += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-y", out]
    else:
        argv += ["-f", "null", "-"]
    return argv


def ours_argv(args, layout, frames=None, extra=()):
    argv = [args.bin, "--input", args.input, "--size", args.size, "--layout", layout,
            "--threads", str(args.threads)]
    if frames is not None:
        argv += ["--frames", str(frames)]
    return argv + list(extra)


def psnr(a, b, size):
    """Per-plane PSNR of two raw yuv420p frames, by ffmpeg's psnr filter."""
    p = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", size,
         "-i", a, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", size, "-i", b,
         "-lavfi", "psnr", "-f", "null", "-"], capture_output=True, text=True)
    m = re.search(r"PSNR y:(\S+) u:(\S+) v:(\S+) average:(\S+)", p.stderr)
    if p.returncode != 0 or not m:
        sys.exit(f"bench: psnr failed:\n{p.stderr[-2000:]}")
    val = lambda s: None if s == "inf" else float(s)  # noqa: E731
    return {"y": val(m.group(1)), "u": val(m.group(2)), "v": val(m.group(3)), "all": val(m.group(4))}


def derive(t1, tn, n):
    """From the wall time of a 1-frame run and an n-frame run: frames/s without set-up, the
    set-up (the 1-frame run less one frame's time), frames/s with set-up."""
    per_frame = (tn - t1) / (n - 1)
    return {"fps": 1.0 / per_frame, "setup_s": t1 - per_frame, "fps_with_setup": n / tn,
            "t1_s": t1, "tn_s": tn}


def measure(args, layout):
    n = args.frames
    hz = os.sysconf("SC_CLK_TCK")
    ticks0, own0, wall0 = machine_ticks(), os.times(), time.monotonic()
    runs = {"ffmpeg": {"t1": [], "tn": [], "cpu_n": [], "null_t1": [], "null_tn": []},
            "ours": {"t1": [], "tn": [], "cpu_n": [], "json": []}}
    for r in range(args.repeat):
        order = ["ffmpeg", "ours"] if r % 2 == 0 else ["ours", "ffmpeg"]
        for tool in order:
            if tool == "ffmpeg":
                t1, _, _ = timed(ffmpeg_argv(args, layout, frames=1))
                tn, cpu, _ = timed(ffmpeg_argv(args, layout))
                runs[tool]["null_t1"].append(timed(ffmpeg_argv(args, None, frames=1))[0])
                runs[tool]["null_tn"].append(timed(ffmpeg_argv(args, None))[0])
            else:
                t1, _, _ = timed(ours_argv(args, layout, frames=1))
                tn, cpu, out = timed(ours_argv(args, layout))
                runs[tool]["json"].append(json.loads(out))
            runs[tool]["t1"].append(t1)
            runs[tool]["tn"].append(tn)
            runs[tool]["cpu_n"].append(cpu)
            log(f"{layout} round {r + 1}/{args.repeat} {tool:6}: 1 frame {t1:.3f} s, "
                f"{n} frames {tn:.3f} s ({n / tn:.1f} frames/s with set-up)")
    # Other load on the machine during the timed runs, in cores: all busy time less our
    # children's (the tools'). Above ~0.1 the figures are skewed.
    ticks1, own1, wall1 = machine_ticks(), os.times(), time.monotonic()
    own = (own1.children_user - own0.children_user) + (own1.children_system - own0.children_system)
    other = max(0.0, (ticks1[0] - ticks0[0]) / hz - own) / (wall1 - wall0)
    res = {"other_load_cores": round(other, 3)}
    for tool, rr in runs.items():
        t1, tn = statistics.median(rr["t1"]), statistics.median(rr["tn"])
        d = derive(t1, tn, n)
        # Best of the rounds too (least disturbed): the fastest 1-frame and n-frame runs.
        d["best"] = derive(min(rr["t1"]), min(rr["tn"]), n)
        d["cpu_s_n_frames"] = statistics.median(rr["cpu_n"])
        d["runs_t1_s"], d["runs_tn_s"] = rr["t1"], rr["tn"]
        if tool == "ours":
            js = rr["json"]
            d["internal"] = {
                "setup_s": statistics.median(j["setup_s"] for j in js),
                "fps_project_only": statistics.median(j["frames"] / j["project_s"] for j in js),
                "fps_read_and_project": statistics.median(j["fps"] for j in js),
            }
            for k in ("output", "map_runs", "map_pixels_per_run", "map_clamped_runs", "map_bytes",
                      "ffmpeg_table_bytes"):
                d[k] = js[0][k]
        else:
            # The filter alone: ffmpeg's per-frame time less that of the same pipeline with the
            # null filter (reading, demuxing, output).
            null = derive(statistics.median(rr["null_t1"]), statistics.median(rr["null_tn"]), n)
            d["pipeline_without_v360_fps"] = null["fps"]
            d["v360_alone_fps"] = 1.0 / (1.0 / d["fps"] - 1.0 / null["fps"])
        res[tool] = d
    res["ratio_fps"] = res["ours"]["fps"] / res["ffmpeg"]["fps"]
    res["ratio_fps_with_setup"] = res["ours"]["fps_with_setup"] / res["ffmpeg"]["fps_with_setup"]
    res["ratio_fps_best"] = res["ours"]["best"]["fps"] / res["ffmpeg"]["best"]["fps"]
    res["ratio_kernel_alone"] = res["ours"]["internal"]["fps_project_only"] / res["ffmpeg"]["v360_alone_fps"]

    # Quality, on the first frame (untimed): ours against ffmpeg's own output, and the map's
    # coordinate error against the exact per-pixel map.
    ff = os.path.join(args.run_dir, f"ffmpeg-{layout}.yuv")
    us = os.path.join(args.run_dir, f"ours-{layout}.yuv")
    timed(ffmpeg_argv(args, layout, frames=1, out=ff))
    _, _, out = timed(ours_argv(args, layout, frames=1, extra=["--out", us, "--map-error"]))
    j = json.loads(out)
    res["output"] = j["output"]
    res["psnr_vs_ffmpeg_db"] = psnr(us, ff, j["output"])
    res["map_error"] = {k: j[k] for k in ("map_error_max_px", "map_error_rms_px", "map_window_differs", "map_pixels")}
    os.remove(ff)
    os.remove(us)
    return res


def fmt_db(x):
    return "inf" if x is None else f"{x:.2f}"


def table(result):
    lines = []
    a = result["args"]
    lines.append(f"projection benchmark {result['stamp']}: {a['size']} yuv420p, {a['frames']} frames, "
                 f"{a['threads']} threads each, median of {a['repeat']} rounds, raw in, null out")
    lines.append(f"{'layout':6} {'output':10} {'tool':6} {'frames/s':>9} {'with set-up':>11} "
                 f"{'set-up s':>9} {'cpu s':>7} {'PSNR y/u/v vs ffmpeg (dB)':>27}")
    for layout in ("c3x2", "eac"):
        r = result["layouts"].get(layout)
        if not r:
            continue
        for tool in ("ffmpeg", "ours"):
            d = r[tool]
            q = r["psnr_vs_ffmpeg_db"]
            qs = "-" if tool == "ffmpeg" else f"{fmt_db(q['y'])} / {fmt_db(q['u'])} / {fmt_db(q['v'])}"
            lines.append(f"{layout:6} {r['output']:10} {tool:6} {d['fps']:9.1f} {d['fps_with_setup']:11.1f} "
                         f"{d['setup_s']:9.3f} {d['cpu_s_n_frames']:7.2f} {qs:>27}")
        lines.append(f"{layout:6} {'':10} {'ratio':6} {r['ratio_fps']:8.2f}x {r['ratio_fps_with_setup']:10.2f}x"
                     f"   (best rounds: ffmpeg {r['ffmpeg']['best']['fps']:.1f}, ours {r['ours']['best']['fps']:.1f} frames/s, "
                     f"{r['ratio_fps_best']:.2f}x; other load {r['other_load_cores']:.2f} cores)")
        me = r["map_error"]
        o = r["ours"]
        lines.append(f"{'':6} map: {o['map_runs']} runs ({o['map_pixels_per_run']:.1f} px each), "
                     f"{o['map_bytes'] / 1e6:.1f} MB vs ffmpeg's {o['ffmpeg_table_bytes'] / 1e6:.0f} MB; "
                     f"coordinate error max {me['map_error_max_px']:.4f} px, rms {me['map_error_rms_px']:.5f} px; "
                     f"our set-up {o['internal']['setup_s'] * 1000:.0f} ms (internal)")
        f = r["ffmpeg"]
        lines.append(f"{'':6} without reading and output: ffmpeg's v360 alone {f['v360_alone_fps']:.1f} frames/s "
                     f"(its pipeline with -vf null: {f['pipeline_without_v360_fps']:.0f} frames/s), our projection "
                     f"alone {o['internal']['fps_project_only']:.1f} frames/s: {r['ratio_kernel_alone']:.2f}x")
    lines.append(f"machine busy before: {result['machine_busy_before_pct']}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--input", required=True)
    r.add_argument("--size", required=True)
    r.add_argument("--frames", type=int, required=True)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--bin", required=True)
    r.add_argument("--run-dir", required=True)
    r.add_argument("--json", required=True)
    r.add_argument("--quiet-wait", type=float, default=120.0)
    r.add_argument("--layouts", default="c3x2,eac")
    r.add_argument("--machine", default="{}")
    r.add_argument("--versions", default="{}")
    r.add_argument("--command", default="")
    t = sub.add_parser("table")
    t.add_argument("--json", required=True)
    args = p.parse_args()

    if args.cmd == "table":
        with open(args.json) as f:
            print(table(json.load(f)))
        return

    result = {
        "stamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": args.command,
        "args": {"size": args.size, "frames": args.frames, "threads": args.threads, "repeat": args.repeat},
        "machine": json.loads(args.machine),
        "versions": json.loads(args.versions),
        "machine_busy_before_pct": {},
        "layouts": {},
    }
    for layout in args.layouts.split(","):
        busy = wait_quiet(args.quiet_wait)
        result["machine_busy_before_pct"][layout] = round(busy, 1)
        log(f"{layout}: machine {busy:.0f} % busy before")
        result["layouts"][layout] = measure(args, layout)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(table(result))


if __name__ == "__main__":
    main()
