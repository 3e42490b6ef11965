#!/usr/bin/env python3
"""Helpers for bench/viewers.sh (Python 3 standard library only).

Subcommands:
  ticks PID                 CPU ticks of a process tree, as JSON (for `step --ticks-*`)
  wait-playlist URL         wait until a live playlist (master or media) lists 3 segments
  step                      judge one loadtest step from its JSON report, append a record
  summary                   print the side-by-side table, write the results JSON
"""

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (tree_ticks, ticks_delta, CLK_TCK)

LABELS = {"ours": "spherecast", "nginx": "nginx-rtmp"}


def cmd_ticks(args):
    print(json.dumps(bench.tree_ticks(args.pid)))


def fetch(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.read().decode("utf-8", "replace")


def cmd_wait_playlist(args):
    deadline = time.monotonic() + args.timeout
    url = args.url
    while time.monotonic() < deadline:
        try:
            text = fetch(url)
            if "#EXT-X-STREAM-INF" in text:
                variant = [l for l in text.splitlines() if l and not l.startswith("#")][0]
                url = urllib.parse.urljoin(url, variant)
                continue
            if sum(1 for l in text.splitlines() if l.startswith("#EXTINF")) >= 3:
                return
        except (OSError, IndexError):
            pass
        time.sleep(0.5)
    print(f"{args.url}: no live playlist with 3 segments after {args.timeout} s", file=sys.stderr)
    sys.exit(1)


def cmd_step(args):
    with open(args.json) as f:
        report = json.load(f)
    before = {int(k): v for k, v in json.loads(args.ticks_before).items()}
    after = {int(k): v for k, v in json.loads(args.ticks_after).items()}
    elapsed = report["elapsed_secs"]
    server_cpu = 100.0 * bench.ticks_delta(before, after) / bench.CLK_TCK / max(elapsed, 1e-3)
    kinds = {k["kind"]: k for k in report["requests"]}
    held = (
        report["total_errors"] == 0
        and report["stalls"]["count"] == 0
        and report["viewers"]["started"] == args.viewers
        and report["media"]["missed_segments"] == 0
    )
    record = {
        "server": args.kind,
        "viewers": args.viewers,
        "held": held,
        "errors": report["total_errors"],
        "error_kinds": report["errors"],
        "stalls": report["stalls"]["count"],
        "stalled_secs": round(report["stalls"]["seconds"], 1),
        "viewers_with_stalls": report["viewers"]["with_stalls"],
        "missed_segments": report["media"]["missed_segments"],
        "segments": report["media"]["segments"],
        "bytes_per_sec": round(report["bytes_per_sec"]),
        "segment_ms": kinds["segment"]["latency_ms"],
        "playlist_ms": kinds["playlist"]["latency_ms"],
        "elapsed_secs": round(elapsed, 1),
        "server_cpu_pct": round(server_cpu, 1),
        "generator_cpu_pct": round((report.get("cpu") or {}).get("percent_of_one_core", -1), 1),
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    seg = record["segment_ms"]
    print(
        f"  {LABELS[args.kind]:>10} {args.viewers:>5} viewers: "
        f"{'HELD' if held else 'FAILED'}; errors {record['errors']}, stalls {record['stalls']} "
        f"({record['viewers_with_stalls']} viewers), {record['bytes_per_sec'] / 1e6:.0f} MB/s, "
        f"segment p50/p99 {seg['p50']:.0f}/{seg['p99']:.0f} ms, "
        f"server CPU {server_cpu:.0f} %, generator CPU {record['generator_cpu_pct']:.0f} %"
    )
    sys.exit(0 if held else 3)


def cmd_summary(args):
    records = []
    with open(args.results) as f:
        records = [json.loads(l) for l in f if l.strip()]
    steps = sorted({r["viewers"] for r in records})
    by = {(r["server"], r["viewers"]): r for r in records}
    servers = [s for s in ("ours", "nginx") if any(r["server"] == s for r in records)]
    best = {}
    for s in servers:
        held = [r for r in records if r["server"] == s and r["held"]]
        best[s] = max(held, key=lambda r: r["viewers"]) if held else None
    width = 56
    header = f"{'viewers':>8} | " + " | ".join(f"{LABELS[s]:^{width}}" for s in servers)
    print(header)
    print("-" * len(header))
    for n in steps:
        cells = []
        for s in servers:
            r = by.get((s, n))
            if r is None:
                cells.append(f"{'(not run)':^{width}}")
                continue
            verdict = "held" if r["held"] else f"{r['errors']} err, {r['stalls']} stalls"
            cells.append(
                f"{verdict:>18} {r['bytes_per_sec'] / 1e6:>5.0f} MB/s, p99 {r['segment_ms']['p99']:>5.0f} ms,"
                f" cpu {r['server_cpu_pct']:>3.0f}%".ljust(width)
            )
        print(f"{n:>8} | " + " | ".join(cells))
    print()
    for s in servers:
        b = best[s]
        if b:
            print(
                f"{LABELS[s]}: most viewers held with zero stalls and zero errors: {b['viewers']} "
                f"({b['bytes_per_sec'] / 1e6:.0f} MB/s of segments, server CPU {b['server_cpu_pct']:.0f} % "
                f"of one core, load generator {b['generator_cpu_pct']:.0f} %)"
            )
        else:
            print(f"{LABELS[s]}: held no step")
    summary = {
        "benchmark": "viewers",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": args.machine,
        "busy_before_pct": args.busy,
        "settings": {"ramp_secs": args.ramp, "duration_secs": args.duration,
                     "steps": steps, "input": args.input},
        "most_viewers_held": {s: (best[s]["viewers"] if best[s] else 0) for s in servers},
        "steps": records,
    }
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(f"\nresults: {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ticks")
    s.add_argument("pid", type=int)
    s = sub.add_parser("wait-playlist")
    s.add_argument("url")
    s.add_argument("--timeout", type=float, default=60)
    s = sub.add_parser("step")
    s.add_argument("--kind", required=True, choices=LABELS)
    s.add_argument("--viewers", type=int, required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--ticks-before", required=True)
    s.add_argument("--ticks-after", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--machine", default="")
    s.add_argument("--busy", default="")
    s.add_argument("--ramp", type=float, required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--input", default="")
    args = p.parse_args()
    {"ticks": cmd_ticks, "wait-playlist": cmd_wait_playlist, "step": cmd_step,
     "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    main()
