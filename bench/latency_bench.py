#!/usr/bin/env python3
"""Helpers for bench/latency.sh (Python 3 standard library only).

Subcommands:
  wait-live   wait until a live playlist (a master is followed to its first variant) lists
              at least --segments segments
  leg         run the browser reader (web/tests/latency.mjs) on one playlist; write its JSON
              with how busy the machine was meanwhile
  report      gather the legs into one results JSON and print the comparison table
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def http_get(url, timeout=2.0):
    """Returns (status, body); status 0 when the connection failed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def media_playlist(url):
    """The media playlist text behind `url` (following a master to its first variant), or None."""
    status, body = http_get(url)
    if status != 200:
        return None
    text = body.decode("utf-8", "replace")
    if "#EXT-X-STREAM-INF" in text:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("#EXT-X-STREAM-INF") and i + 1 < len(lines):
                return media_playlist(urllib.parse.urljoin(url, lines[i + 1].strip()))
        return None
    return text


def machine_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def cmd_wait_live(args):
    deadline = time.monotonic() + args.timeout
    segments = 0
    while time.monotonic() < deadline:
        text = media_playlist(args.url)
        if text is not None:
            segments = text.count("#EXTINF")
            if segments >= args.segments:
                return
        time.sleep(0.2)
    print(f"{args.url}: {segments} segments after {args.timeout} s (waiting for {args.segments})",
          file=sys.stderr)
    sys.exit(1)


def cmd_leg(args):
    cmd = ["node", os.path.join(ROOT, "web/tests/latency.mjs"), args.url,
           "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if args.low_latency:
        cmd.append("--low-latency")
    if args.hls_config:
        cmd += ["--hls-config", args.hls_config]
    if args.sync_count:
        cmd += ["--sync-count", str(args.sync_count)]
    b0 = machine_ticks()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b1 = machine_ticks()
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"url": args.url, "samples": 0, "errors": [f"the reader printed no JSON: {proc.stderr[-2000:]}"]}
    result["label"] = args.label
    result["server"] = args.server
    result["machineBusyPercent"] = round(100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1]), 1)
    result["readerExit"] = proc.returncode
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    lat = result.get("latencyMs") or {}
    print(f"   {args.label}: p50 {fmt_s(lat.get('p50'))}, p95 {fmt_s(lat.get('p95'))}, "
          f"{result.get('samples', 0)} frames read, {result.get('unreadable', 0)} unreadable, "
          f"machine {result['machineBusyPercent']} % busy", flush=True)
    if proc.returncode != 0 or not result.get("samples"):
        print(f"bench: {args.label}: no latency measured; {result.get('errors')}", file=sys.stderr)
        sys.exit(1)


def fmt_s(ms):
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def cmd_report(args):
    legs = []
    for path in args.legs:
        try:
            with open(path) as f:
                legs.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            print(f"bench: {path}: {e}", file=sys.stderr)
    doc = {"benchmark": "latency", **json.loads(args.meta), "legs": legs}
    if args.json:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    print_table(doc)


def print_table(doc):
    legs = doc["legs"]
    rows = [("leg", "p50", "p95", "min", "max", "frames read", "unreadable", "stalls", "busy")]
    for leg in legs:
        lat = leg.get("latencyMs") or {}
        rows.append((
            leg["label"], fmt_s(lat.get("p50")), fmt_s(lat.get("p95")), fmt_s(lat.get("min")),
            fmt_s(lat.get("max")), str(leg.get("samples", 0)), str(leg.get("unreadable", 0)),
            str(leg.get("waitingEvents", "-")), f"{leg.get('machineBusyPercent', '-')} %",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    by = {leg["server"]: leg for leg in legs if leg.get("latencyMs")}
    if "nginx" in by:
        base = by["nginx"]["latencyMs"]["p50"]
        for server, leg in by.items():
            if server != "nginx" and base:
                print(f"p50 {leg['label']} / nginx-rtmp: {leg['latencyMs']['p50'] / base:.2f}x")
    for leg in legs:
        errors = leg.get("errors") or []
        if errors:
            shown = "; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
            print(f"{leg['label']}: player errors: {shown}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("wait-live")
    p.add_argument("--url", required=True)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("leg")
    p.add_argument("--label", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--warmup", type=float, default=10)
    p.add_argument("--low-latency", action="store_true")
    p.add_argument("--hls-config", default="")
    p.add_argument("--sync-count", type=int, default=0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--meta", default="{}", help="JSON object merged into the results document")
    p.add_argument("--json", help="write the results document here")
    p.add_argument("legs", nargs="*")
    p = sub.add_parser("table")
    p.add_argument("json")
    args = parser.parse_args()
    if args.cmd == "wait-live":
        cmd_wait_live(args)
    elif args.cmd == "leg":
        cmd_leg(args)
    elif args.cmd == "report":
        cmd_report(args)
    else:
        with open(args.json) as f:
            print_table(json.load(f))


if __name__ == "__main__":
    main()
