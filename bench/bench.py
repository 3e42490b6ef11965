#!/usr/bin/env python3
"""Measurement helpers for bench/origin.sh (Python 3 standard library only).

Subcommands (each measurement appends one JSON object per figure to --out):
  freeport                 print a free TCP port on 127.0.0.1
  wait-ready               wait until a server's RTMP and HTTP ports answer (fails if it dies)
  cpu                      server CPU with N concurrent publishers over a steady window
  first                    publish -> first playable playlist, repeated, median
  http                     wrk on a live segment and on a live playlist
  table                    print the comparison table from the JSON lines
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = {"ours": "spherecast", "nginx": "nginx-rtmp"}


class Failure(Exception):
    """A measurement that could not be taken; the message says why."""


def _terminate(signum, frame):
    # Turn SIGTERM (from origin.sh's clean-up) into an exception so that `finally` blocks stop
    # the ffmpeg and wrk processes this helper started.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminate)


# ---------------------------------------------------------------------------------------------
# URLs per server

def media_playlist_url(kind, http, name):
    if kind == "ours":
        return f"http://127.0.0.1:{http}/hls/{name}_src/index.m3u8"
    return f"http://127.0.0.1:{http}/hls/{name}.m3u8"


def master_url(kind, http, name):
    # nginx-rtmp has no master playlist without hls_variant; its media playlist is what players open.
    if kind == "ours":
        return f"http://127.0.0.1:{http}/hls/{name}.m3u8"
    return None


def rtmp_url(rtmp, name):
    return f"rtmp://127.0.0.1:{rtmp}/live/{name}"


# ---------------------------------------------------------------------------------------------
# Small utilities

def http_get(url, timeout=2.0):
    """Returns (status, body); status 0 when the connection failed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def playlist_segments(body):
    text = body.decode("utf-8", "replace")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def proc_ticks(pid):
    """utime + stime of one process (all its threads), in clock ticks; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def proc_name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return "?"
    m = re.match(r"nginx: \w+(?: \w+)? process", argv[0])
    return m.group(0) if m else os.path.basename(argv[0])


def tree_pids(root):
    """root and all its descendants (nginx: master + workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_ticks(root):
    """Per-pid ticks of the server's process tree (a dict, so that a process that appears or
    goes away during a window can be accounted for)."""
    return {p: t for p in tree_pids(root) if (t := proc_ticks(p)) is not None}


def ticks_delta(before, after):
    # A process that exited in the window loses its last ticks (not reaped into our view); a
    # process that appeared counts from zero.
    return sum(t - before.get(p, 0) for p, t in after.items())


def machine_ticks():
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # user..steal (guest is already inside user)
    return total - idle, total


def start_push(ffmpeg, input_path, url, seconds=None, log=None):
    cmd = ["nice", "-n", "5", ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
           "-re", "-i", input_path, "-c", "copy"]
    if seconds:
        cmd += ["-t", str(seconds)]
    cmd += ["-f", "flv", url]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log if log is not None else subprocess.DEVNULL)


def stop_procs(procs, grace=5.0):
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)  # ffmpeg finishes its output on SIGINT
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def check_server(pid):
    if not alive(pid):
        raise Failure(f"server process {pid} is gone (crashed?)")


def settle(pids, max_wait=30.0, below=0.05):
    """Waits until the servers use less than `below` of a core together for 2 s in a row
    (finishing the recordings of a previous round), at most max_wait seconds."""
    def ticks():
        out = {}
        for pid in pids:
            out.update(tree_ticks(pid))
        return out
    quiet, deadline = 0, time.monotonic() + max_wait
    prev = ticks()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        cur = ticks()
        quiet = quiet + 1 if ticks_delta(prev, cur) / CLK_TCK < below else 0
        prev = cur
        if quiet >= 2:
            return


def emit(out, **rec):
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def log(msg):
    print(f"  {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Subcommands

def cmd_freeport(args):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cmd_quiet(args):
    """Waits (at most --max-wait s) for the machine to be below --below % busy over 3 s, so that
    other work (builds, tests) does not skew the figures; prints the last busy %. Never fails."""
    deadline = time.monotonic() + args.max_wait
    while True:
        b0 = machine_ticks()
        time.sleep(3.0)
        b1 = machine_ticks()
        busy = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        if busy < args.below or time.monotonic() >= deadline:
            break
        print(f"  machine {busy:.0f} % busy before the run: waiting for it to quiet down",
              file=sys.stderr, flush=True)
    print(f"{busy:.0f}")


def cmd_wait_ready(args):
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not alive(args.pid):
            print(f"server process {args.pid} exited during start-up", file=sys.stderr)
            sys.exit(1)
        ok = True
        for port in (args.rtmp, args.http):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                ok = False
        if ok and args.health:
            ok = http_get(f"http://127.0.0.1:{args.http}{args.health}")[0] == 200
        if ok:
            return
        time.sleep(0.1)
    print(f"server not ready on rtmp {args.rtmp} / http {args.http} after {args.timeout} s",
          file=sys.stderr)
    sys.exit(1)


def cmd_cpu(args):
    kind, n = args.kind, args.publishers
    tag = f"c{n}x{os.getpid() % 10000}"
    names = [f"{tag}n{i:03d}" for i in range(n)]
    w0, w1 = args.window
    procs = []
    rec = dict(server=kind, metric=f"cpu_{n}", publishers=n, window=[w0, w1])
    try:
        check_server(args.pid)
        settle(args.settle)
        # Idle baseline over 3 s, so a busy idle server shows up in the details.
        b0 = tree_ticks(args.pid)
        time.sleep(3.0)
        rec["idle_pct"] = 100.0 * ticks_delta(b0, tree_ticks(args.pid)) / CLK_TCK / 3.0

        errlog = open(os.path.join(args.logdir, f"{kind}-cpu{n}-ffmpeg.log"), "ab")
        for name in names:
            procs.append(start_push(args.ffmpeg, args.input, rtmp_url(args.rtmp, name),
                                    seconds=args.duration, log=errlog))
        t0 = time.monotonic()
        time.sleep(max(0.0, t0 + w0 - time.monotonic()))
        check_server(args.pid)
        s_srv, s_mach = tree_ticks(args.pid), machine_ticks()
        s_cli = {p.pid: proc_ticks(p.pid) or 0 for p in procs}
        ts = time.monotonic()
        time.sleep(max(0.0, t0 + w1 - time.monotonic()))
        e_srv, e_mach = tree_ticks(args.pid), machine_ticks()
        e_cli = {p.pid: proc_ticks(p.pid) or 0 for p in procs}
        te = time.monotonic()
        check_server(args.pid)
        secs = te - ts
        ncpu = os.cpu_count() or 1

        pushing = sum(1 for p in procs if p.poll() is None)
        live = sum(1 for name in names
                   if (r := http_get(media_playlist_url(kind, args.http, name)))[0] == 200
                   and playlist_segments(r[1]))
        total = 100.0 * ticks_delta(s_srv, e_srv) / CLK_TCK / secs
        busy = 100.0 * (e_mach[0] - s_mach[0]) / max(1, e_mach[1] - s_mach[1])
        client = 100.0 * sum(e_cli[p] - s_cli[p] for p in e_cli) / CLK_TCK / secs
        # Everything else on the machine (other builds, tests...), in % of one core.
        other = max(0.0, busy * ncpu - total - client)
        rec.update(
            value=total, per_publisher=total / n, seconds=secs, other_pct=other,
            server_pids=len(e_srv), server_procs=sorted(proc_name(p) for p in e_srv),
            client_pct=client,
            machine_busy_pct=busy, machine_cores=ncpu,
            pushing_at_window_end=pushing, live_playlists=live,
        )
        log(f"{SERVERS[kind]}: {n} publisher(s): server {total:.1f} % of a core "
            f"({total / n:.2f} % each), ffmpegs {rec['client_pct']:.1f} %, "
            f"machine {busy:.0f} % busy of {ncpu} cores (other processes {other:.0f} % of a "
            f"core), pushing {pushing}/{n}, "
            f"live playlists {live}/{n}")
        # Let the pushes run to their end and check they all exited cleanly.
        deadline = time.monotonic() + args.duration + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        failed = [p.returncode for p in procs if p.returncode not in (0,)]
        rec["ffmpeg_failures"] = len(failed)
        problems = []
        if pushing < n:
            problems.append(f"only {pushing}/{n} ffmpeg pushes still running at the window end")
        if live < n:
            problems.append(f"only {live}/{n} live playlists with segments at the window end")
        if failed:
            problems.append(f"{len(failed)}/{n} ffmpeg pushes exited non-zero "
                            f"(see {errlog.name})")
        if problems:
            raise Failure("; ".join(problems))
        notes = []
        if busy > 90.0:
            notes.append(f"machine {busy:.0f} % busy during the window: load generator and "
                         f"server competed for CPU")
        if other > 20.0:
            notes.append(f"other processes used {other:.0f} % of a core during the window")
        if notes:
            rec["caveat"] = "; ".join(notes)
    except Failure as e:
        rec["error"] = str(e)
        log(f"{SERVERS[kind]}: {n} publisher(s): FAILED: {e}")
    finally:
        stop_procs(procs)
    emit(args.out, **rec)
    return 1 if "error" in rec else 0


def cmd_first(args):
    kind = args.kind
    samples, errors = [], []
    errlog = open(os.path.join(args.logdir, f"{kind}-first-ffmpeg.log"), "ab")
    for i in range(args.repeats):
        name = f"first{i}x{os.getpid() % 10000}"
        pl_url = media_playlist_url(kind, args.http, name)
        m_url = master_url(kind, args.http, name)
        proc = None
        try:
            check_server(args.pid)
            settle(args.settle, max_wait=10)
            t0 = time.monotonic()
            proc = start_push(args.ffmpeg, args.input, rtmp_url(args.rtmp, name), log=errlog)
            got = None
            while time.monotonic() - t0 < args.timeout:
                tick = time.monotonic()
                status, body = http_get(pl_url)
                segs = playlist_segments(body) if status == 200 else []
                ok = bool(segs)
                if ok and m_url:  # ours: the master a player opens must be there too
                    ok = http_get(m_url)[0] == 200
                if ok:  # and the first listed segment must download as MPEG-TS
                    st, seg = http_get(urllib.parse.urljoin(pl_url, segs[0]), timeout=5)
                    ok = st == 200 and len(seg) >= 188 and seg[0] == 0x47
                if ok:
                    got = time.monotonic() - t0
                    break
                if proc.poll() is not None:
                    raise Failure(f"ffmpeg push exited with {proc.returncode} before a playlist appeared")
                check_server(args.pid)
                time.sleep(max(0.0, tick + 0.05 - time.monotonic()))
            if got is None:
                raise Failure(f"no playable playlist at {pl_url} within {args.timeout} s")
            samples.append(got)
            log(f"{SERVERS[kind]}: first playable playlist #{i + 1}: {got:.2f} s")
        except Failure as e:
            errors.append(str(e))
            log(f"{SERVERS[kind]}: first playable playlist #{i + 1}: FAILED: {e}")
        finally:
            if proc:
                stop_procs([proc])
        time.sleep(1.0)
    rec = dict(server=kind, metric="first_playlist", samples=samples)
    if samples:
        rec["value"] = statistics.median(samples)
    if errors:
        rec["error"] = "; ".join(errors)
    emit(args.out, **rec)
    return 1 if errors else 0


WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_SOCKERR = re.compile(r"Socket errors:\s+connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_REQS = re.compile(r"(\d+) requests in ([\d.]+)(\w+),\s+([\d.]+\w+) read")
WRK_LAT = re.compile(r"^\s+99%\s+([\d.]+\w+)", re.M)
WRK_AVG = re.compile(r"^\s+Latency\s+([\d.]+\w+)", re.M)


def run_wrk(args, url, label):
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
           "--latency", url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
    with open(os.path.join(args.logdir, f"{args.kind}-wrk-{label}.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n" + res.stdout + res.stderr)
    out = res.stdout
    m = WRK_RPS.search(out)
    if res.returncode != 0 or not m:
        raise Failure(f"wrk failed (exit {res.returncode}): {res.stderr.strip() or out.strip()}")
    rec = dict(value=float(m.group(1)), url=url)
    non2xx = WRK_NON2XX.search(out)
    rec["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    se = WRK_SOCKERR.search(out)
    rec["socket_errors"] = sum(int(x) for x in se.groups()) if se else 0
    rq = WRK_REQS.search(out)
    if rq:
        rec["requests"] = int(rq.group(1))
        rec["read"] = rq.group(4)
    if (lat := WRK_AVG.search(out)):
        rec["latency_avg"] = lat.group(1)
    if (lat := WRK_LAT.search(out)):
        rec["latency_p99"] = lat.group(1)
    return rec


def cmd_http(args):
    kind = args.kind
    name = f"wrk{os.getpid() % 10000}"
    pl_url = media_playlist_url(kind, args.http, name)
    errlog = open(os.path.join(args.logdir, f"{kind}-http-ffmpeg.log"), "ab")
    proc, rc, done = None, 0, set()
    try:
        check_server(args.pid)
        settle(args.settle, max_wait=10)
        proc = start_push(args.ffmpeg, args.input, rtmp_url(args.rtmp, name), log=errlog)
        # Wait for a few segments, so the playlist is a typical live one, not a first one.
        t0, segs = time.monotonic(), []
        while time.monotonic() - t0 < 30:
            status, body = http_get(pl_url)
            segs = playlist_segments(body) if status == 200 else []
            if len(segs) >= args.min_segments:
                break
            if proc.poll() is not None:
                raise Failure(f"ffmpeg push exited with {proc.returncode}")
            time.sleep(0.2)
        if len(segs) < args.min_segments:
            raise Failure(f"{pl_url} did not list {args.min_segments} segments within 30 s")

        # The newest listed segment: it stays listed (and on disk) longest.
        seg_url = urllib.parse.urljoin(pl_url, segs[-1])
        st, seg = http_get(seg_url, timeout=5)
        if st != 200:
            raise Failure(f"listed segment {seg_url} returned {st}")
        for label, url in (("segment", seg_url), ("playlist", pl_url)):
            check_server(args.pid)
            st, body = http_get(url, timeout=5)
            if st != 200:
                raise Failure(f"{url} returned {st} just before the wrk run")
            rec = dict(server=kind, metric=f"rps_{label}", bytes=len(body))
            try:
                rec.update(run_wrk(args, url, label))
                if rec["non2xx"] or rec["socket_errors"]:
                    rec["error"] = (f"{rec['non2xx']} non-2xx responses, {rec['socket_errors']} "
                                    f"socket errors of {rec.get('requests', '?')}: figure invalid")
                check_server(args.pid)
            except (Failure, subprocess.TimeoutExpired) as e:
                rec["error"] = str(e)
            if label == "segment":
                rec["still_served_after"] = http_get(seg_url, timeout=5)[0]
            if proc.poll() is not None:
                rec["error"] = (rec.get("error", "") + "; " if "error" in rec else "") + \
                    "the publisher stopped during the run"
            emit(args.out, **rec)
            done.add(label)
            msg = f"{rec['value']:.0f} req/s" if "value" in rec else "no figure"
            log(f"{SERVERS[kind]}: wrk {label} {url} ({rec['bytes']} bytes): {msg}"
                + (f"  [{rec['error']}]" if "error" in rec else ""))
            rc |= 1 if "error" in rec else 0
    except Failure as e:
        for label in sorted({"segment", "playlist"} - done):
            emit(args.out, server=kind, metric=f"rps_{label}", error=str(e))
        log(f"{SERVERS[kind]}: wrk: FAILED: {e}")
        rc = 1
    finally:
        if proc:
            stop_procs([proc])
    return rc


# ---------------------------------------------------------------------------------------------
# Table

ROWS = [
    # metric key, label, unit/format, lower is better
    ("cpu_1", "CPU, 1 publisher (% of one core)", "{:.1f} %", True),
    ("cpu_N", "CPU, {n} publishers (% of one core)", "{:.1f} %", True),
    ("cpu_N_each", "CPU per publisher at {n} (% of one core)", "{:.2f} %", True),
    ("first_playlist", "Publish -> first playable playlist (median)", "{:.2f} s", True),
    ("rps_segment", "HTTP req/s, live segment", "{:,.0f}", False),
    ("rps_playlist", "HTTP req/s, live playlist", "{:,.0f}", False),
]


def cmd_table(args):
    recs = {}
    with open(args.results) as f:
        for line in f:
            r = json.loads(line)
            recs[(r["server"], r["metric"])] = r
    n = args.publishers
    for srv in SERVERS:
        if (srv, f"cpu_{n}") in recs:
            r = dict(recs[(srv, f"cpu_{n}")])
            recs[(srv, "cpu_N")] = r
            if "per_publisher" in r:
                recs[(srv, "cpu_N_each")] = dict(r, value=r["per_publisher"])
            else:
                recs[(srv, "cpu_N_each")] = r

    def cell(srv, key, fmt):
        r = recs.get((srv, key))
        if r is None:
            return "not run", None
        if "value" not in r:
            return "FAILED", None
        text = fmt.format(r["value"])
        if "error" in r:
            text += " (INVALID)"
        return text, (None if "error" in r else r["value"])

    lines = []
    header = ("figure", "spherecast", "nginx-rtmp", "ours/nginx")
    body = []
    for key, label, fmt, lower in ROWS:
        ours, ov = cell("ours", key, fmt)
        ngx, nv = cell("nginx", key, fmt)
        if ov is not None and nv:
            ratio = ov / nv
            better = (ratio < 1) if lower else (ratio > 1)
            verdict = "same" if abs(ratio - 1) < 0.03 else "better" if better else "worse"
            rtext = f"{ratio:.2f}x ({verdict})"
        else:
            rtext = "-"
        body.append((label.format(n=n), ours, ngx, rtext.strip()))
    widths = [max(len(r[i]) for r in body + [header]) for i in range(4)]
    fmt_row = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    lines.append(fmt_row(header))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [fmt_row(r) for r in body]
    lines.append("")
    lines.append("Lower is better for CPU and time to first playlist; higher is better for req/s.")
    lines.append("CPU is read in 10 ms clock ticks: over the 10 s window a figure is good to about "
                 "+-0.1 % of a core,\nso the 1-publisher ratio is coarse; the many-publisher one "
                 "is the meaningful CPU comparison.")

    lines.append("")
    lines.append("Details:")
    for srv, label in SERVERS.items():
        for key in ("cpu_1", f"cpu_{n}"):
            r = recs.get((srv, key))
            if r and "value" in r:
                lines.append(
                    f"  {label}, {r['publishers']} publisher(s): window t={r['window'][0]}-"
                    f"{r['window'][1]} s ({r['seconds']:.1f} s), server processes "
                    f"{'; '.join(r.get('server_procs', []))}, idle before {r['idle_pct']:.1f} %, ffmpeg pushers "
                    f"{r['client_pct']:.1f} % of a core, other processes {r['other_pct']:.0f} % "
                    f"of a core, machine {r['machine_busy_pct']:.0f} % busy ({r['machine_cores']} "
                    f"cores), live playlists {r['live_playlists']}/"
                    f"{r['publishers']}")
        r = recs.get((srv, "first_playlist"))
        if r and r.get("samples"):
            lines.append(f"  {label}, first playable playlist samples: "
                         + ", ".join(f"{s:.2f} s" for s in r["samples"]))
        for key in ("rps_segment", "rps_playlist"):
            r = recs.get((srv, key))
            if r and "value" in r:
                extra = ""
                if key == "rps_segment":
                    extra = f", still served after the run: HTTP {r.get('still_served_after')}"
                lines.append(
                    f"  {label}, {key[4:]} {r['url']} ({r['bytes']:,} bytes): "
                    f"{r.get('requests', '?')} requests, {r.get('read', '?')} read, latency avg "
                    f"{r.get('latency_avg', '?')} p99 {r.get('latency_p99', '?')}, non-2xx "
                    f"{r['non2xx']}, socket errors {r['socket_errors']}{extra}")
    problems = [(SERVERS[s], m, r["error"]) for (s, m), r in recs.items()
                if "error" in r and m not in ("cpu_N", "cpu_N_each")]
    caveats = [(SERVERS[s], m, r["caveat"]) for (s, m), r in recs.items()
               if "caveat" in r and m not in ("cpu_N", "cpu_N_each")]
    if caveats:
        lines.append("")
        lines.append("Caveats:")
        lines += [f"  {s} {m}: {c}" for s, m, c in caveats]
    if problems:
        lines.append("")
        lines.append("Failed or invalid measurements:")
        lines += [f"  {s} {m}: {e}" for s, m, e in problems]
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport")

    p = sub.add_parser("quiet")
    p.add_argument("--below", type=float, default=15.0)
    p.add_argument("--max-wait", type=float, default=120.0)

    p = sub.add_parser("wait-ready")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--rtmp", type=int, required=True)
    p.add_argument("--http", type=int, required=True)
    p.add_argument("--health", default=None, help="HTTP path that must answer 200")
    p.add_argument("--timeout", type=float, default=30.0)

    def common(p):
        p.add_argument("--kind", choices=list(SERVERS), required=True)
        p.add_argument("--pid", type=int, required=True, help="server (root) process id")
        p.add_argument("--settle", type=int, nargs="+", default=[],
                       help="server process ids that must be quiet before a measurement")
        p.add_argument("--rtmp", type=int, required=True)
        p.add_argument("--http", type=int, required=True)
        p.add_argument("--input", required=True)
        p.add_argument("--out", required=True, help="JSON lines file to append to")
        p.add_argument("--logdir", required=True)
        p.add_argument("--ffmpeg", default="ffmpeg")

    p = sub.add_parser("cpu")
    common(p)
    p.add_argument("--publishers", type=int, required=True)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--window", type=float, nargs=2, default=[5.0, 15.0])

    p = sub.add_parser("first")
    common(p)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=30.0)

    p = sub.add_parser("http")
    common(p)
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--min-segments", type=int, default=3)

    p = sub.add_parser("table")
    p.add_argument("--results", required=True)
    p.add_argument("--publishers", type=int, default=50)

    args = ap.parse_args()
    fn = {"freeport": cmd_freeport, "quiet": cmd_quiet, "wait-ready": cmd_wait_ready, "cpu": cmd_cpu,
          "first": cmd_first, "http": cmd_http, "table": cmd_table}[args.cmd]
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
