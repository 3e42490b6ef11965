#!/usr/bin/env python3
"""Driver of bench/live_ladder.sh: runs the live ladder (live/examples/live_ladder) and
ffmpeg doing the same ladder over the same FLV, alternating who goes first, and reports
x realtime and CPU seconds per media second for both, with ratios. See bench/README.md."""
import argparse
import json
import os
import subprocess
import sys
import time

# (name, width, height, kbps): the reference live ladder for a 1920x1080 source.
RUNGS = [("_480", 480, 270, 500), ("_960", 960, 540, 2300), ("_1920", 1920, 1080, 5800)]
CASES = [["_480", "_960", "_1920"], ["_480"], ["_960"], ["_1920"]]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def wait_quiet(max_wait, below=10.0):
    """Waits (at most max_wait s) until the machine is below `below` % busy over 3 s."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = machine_ticks()
        time.sleep(3.0)
        b1 = machine_ticks()
        busy = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        if busy < below or time.monotonic() >= deadline:
            return busy
        log(f"machine {busy:.0f} % busy: waiting (at most {max(0, deadline - time.monotonic()):.0f} s more)")


def timed(argv):
    """Runs argv; returns (wall s, cpu s of the child, machine busy % during the run, stdout)."""
    r0, m0, t0 = os.times(), machine_ticks(), time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1, m1 = os.times(), machine_ticks()
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    busy = 100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
    return wall, cpu, busy, p.stdout


def ffmpeg_argv(src, names):
    rungs = [r for r in RUNGS if r[0] in names]
    split = f"[0:v]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs)))
    scales = [f"[s{i}]scale={w}:{h}[o{i}]" for i, (_, w, h, _) in enumerate(rungs)]
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", src, "-an",
            "-filter_complex", ";".join([split] + scales)]
    for i, (_, _, _, kbps) in enumerate(rungs):
        # Same encoder settings as the ladder's x264enc: ultrafast, zerolatency, no B-frames,
        # ABR at the rung's bitrate, an IDR every 2 s (the source's GOP), no scene cuts.
        argv += ["-map", f"[o{i}]", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
                 "zerolatency", "-bf", "0", "-b:v", f"{kbps}k", "-g", "60", "-keyint_min", "60",
                 "-sc_threshold", "0", "-f", "h264", "/dev/null"]
    return argv


def run(args):
    results = []
    for i, names in enumerate(CASES):
        busy0 = wait_quiet(args.quiet_wait)
        case = {"rungs": names, "busy_before_pct": round(busy0, 1), "rounds": []}
        for rnd in range(args.repeat):
            order = ["ours", "ffmpeg"] if (i + rnd) % 2 == 0 else ["ffmpeg", "ours"]
            rr = {}
            for who in order:
                argv = [args.ours, args.input] + names if who == "ours" else ffmpeg_argv(args.input, names)
                wall, cpu, busy, out = timed(argv)
                rr[who] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "busy_pct": round(busy, 1)}
                if who == "ours":
                    rr[who]["output"] = out.strip().splitlines()
                log(f"{'+'.join(names)} {who}: {wall:.1f} s wall, {cpu:.1f} s CPU, machine {busy:.0f} % busy")
            case["rounds"].append(rr)
        results.append(case)
    return results


def summarise(media_s, results):
    rows = []
    for case in results:
        def med(who, key):
            v = sorted(r[who][key] for r in case["rounds"])
            return v[len(v) // 2]
        row = {"rungs": "+".join(case["rungs"])}
        for who in ("ours", "ffmpeg"):
            row[f"{who}_x_realtime"] = round(media_s / med(who, "wall_s"), 2)
            row[f"{who}_cpu_per_media_s"] = round(med(who, "cpu_s") / media_s, 2)
        row["x_realtime_ratio"] = round(row["ours_x_realtime"] / row["ffmpeg_x_realtime"], 2)
        row["cpu_ratio"] = round(row["ours_cpu_per_media_s"] / row["ffmpeg_cpu_per_media_s"], 2)
        row["busy_pct"] = max(r[w]["busy_pct"] for r in case["rounds"] for w in ("ours", "ffmpeg"))
        rows.append(row)
    return rows


def table(doc):
    out = [f"live ladder, {doc['media_s']:.1f} s of 1080p30 (~3.5 Mbit/s, 2 s GOP), "
           f"as fast as possible; median of {doc['repeat']} round(s)", "",
           "| rungs | ours x realtime | ffmpeg x realtime | ratio | ours CPU s / media s | "
           "ffmpeg CPU s / media s | ratio | machine busy |",
           "|---|---|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        out.append(f"| {r['rungs']} | {r['ours_x_realtime']} | {r['ffmpeg_x_realtime']} | "
                   f"{r['x_realtime_ratio']} | {r['ours_cpu_per_media_s']} | "
                   f"{r['ffmpeg_cpu_per_media_s']} | {r['cpu_ratio']} | {r['busy_pct']:.0f} % |")
    out.append("")
    out.append("ratio = ours / ffmpeg (x realtime: above 1 is faster; CPU: below 1 is cheaper). "
               "machine busy = whole machine over the slowest run, ours and others included.")
    first = doc["results"][0]["rounds"][0]["ours"]["output"]
    out.append("ours, all rungs, first round: " + "; ".join(first))
    out.append(f"machine: {json.dumps(doc['machine'])}; versions: {json.dumps(doc['versions'])}")
    out.append(f"command: {doc['command']}")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--ours", required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--media-s", type=float, required=True)
    r.add_argument("--repeat", type=int, default=1)
    r.add_argument("--quiet-wait", type=float, default=60.0)
    r.add_argument("--json", required=True)
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
    results = run(args)
    doc = {"media_s": args.media_s, "repeat": args.repeat, "results": results,
           "summary": summarise(args.media_s, results), "machine": json.loads(args.machine),
           "versions": json.loads(args.versions), "command": args.command}
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(table(doc))


if __name__ == "__main__":
    main()
