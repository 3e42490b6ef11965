#!/usr/bin/env bash
# Glass-to-glass latency, side by side in one run: the Spherecast origin (classic HLS, 2 s
# segments; LL-HLS too when LATENCY_LLHLS_CONFIG is given) and nginx + nginx-rtmp-module
# (hls_fragment 2s), fed by ONE push of a stream whose frames show the wall clock, played by
# the same player (hls.js in headless Chromium, web/tests/latency.mjs). See bench/README.md.
#
# Usage: bench/latency.sh              (after scripts/setup.sh)
# Environment:
#   LATENCY_SECONDS=60         seconds of sampling per leg (after the warm-up)
#   LATENCY_WARMUP=10          seconds of playback per leg before sampling starts
#   LATENCY_LEAD=15            seconds the stream is live before the first player joins
#   LATENCY_ONLY=nginx,ours,ours-llhls   legs to run, in this order (default: all available)
#   LATENCY_LLHLS_CONFIG=FILE  spherecast config whose application LATENCY_LLHLS_APP serves
#                              LL-HLS: adds the leg ours-llhls (hls.js lowLatencyMode on)
#   LATENCY_LLHLS_APP=live     the RTMP application the LL-HLS leg publishes to
#   LATENCY_SIZE=1280x720  LATENCY_FPS=30  LATENCY_GOP=60   the pushed stream
#   LATENCY_HLS_CONFIG=JSON    extra hls.js config for every leg (default: none, hls.js defaults)
#   LATENCY_SYNC_COUNT=2       target durations hls.js holds back on classic playlists, as the
#                              Spherecast player sets it (LL-HLS keeps PART-HOLD-BACK); 0 = hls.js's 3
#   SPHERECAST_BIN=FILE        the origin binary to measure (default: build target/release/spherecast)
#   SPHERECAST_CLOCK_BIN=FILE  the clock stream binary (default: build target/release/spherecast-clock)
#   BENCH_KEEP=1               keep the run folder (configs, logs, every leg's JSON)
#   BENCH_QUIET_WAIT=120       seconds to wait for other load on the machine to stop first
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PY=(python3 "$BENCH/latency_bench.py")
SECONDS_PER_LEG=${LATENCY_SECONDS:-60}
WARMUP=${LATENCY_WARMUP:-10}
LEAD=${LATENCY_LEAD:-15}
SIZE=${LATENCY_SIZE:-1280x720}
FPS=${LATENCY_FPS:-30}
GOP=${LATENCY_GOP:-60}
LL_CONFIG=${LATENCY_LLHLS_CONFIG:-}
LL_APP=${LATENCY_LLHLS_APP:-live}
HLS_CONFIG=${LATENCY_HLS_CONFIG:-}
SYNC_COUNT=${LATENCY_SYNC_COUNT:-2}
NAME=clock
# shellcheck source=bench/lib/nginx_rtmp.sh
. "$BENCH/lib/nginx_rtmp.sh"

die() { echo "bench: $*" >&2; exit 1; }

for tool in nginx ffmpeg node python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || die "chromium not found: run scripts/setup.sh"
[ -f web/node_modules/hls.js/dist/hls.min.js ] && [ -d web/node_modules/playwright-core ] \
  || die "web/node_modules lacks hls.js or playwright-core: run scripts/setup.sh"
nginx_rtmp_module >/dev/null || die "ngx_rtmp_module.so not found: run scripts/setup.sh (libnginx-mod-rtmp)"
if [ -n "$LL_CONFIG" ]; then
  [ -f "$LL_CONFIG" ] || die "LATENCY_LLHLS_CONFIG=$LL_CONFIG: no such file"
  LL_CONFIG=$(realpath "$LL_CONFIG")
fi
[ -z "$HLS_CONFIG" ] || python3 -c 'import json,sys; json.loads(sys.argv[1])' "$HLS_CONFIG" \
  || die "LATENCY_HLS_CONFIG is not JSON: $HLS_CONFIG"

DEFAULT_LEGS=nginx,ours
[ -n "$LL_CONFIG" ] && DEFAULT_LEGS=$DEFAULT_LEGS,ours-llhls
IFS=, read -r -a LEGS <<<"${LATENCY_ONLY:-$DEFAULT_LEGS}"
for leg in "${LEGS[@]}"; do
  case "$leg" in
    nginx|ours) ;;
    ours-llhls) [ -n "$LL_CONFIG" ] || die "the leg ours-llhls needs LATENCY_LLHLS_CONFIG (a spherecast config with an LL-HLS application)" ;;
    *) die "LATENCY_ONLY: unknown leg $leg (nginx, ours, ours-llhls)" ;;
  esac
done
[ ${#LEGS[@]} -gt 0 ] || die "LATENCY_ONLY names no leg"

RUN=$(mktemp -d /tmp/spherecast-latency.XXXXXX)
chmod 755 "$RUN"
PUSH_PID=""
declare -A PID=() RTMP=() HTTP=() LOG=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$PUSH_PID" ] && stop_pid "$PUSH_PID" 10
  finish_run "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Binaries: our origin and the clock stream (testkit's spherecast-clock).
BUILD=()
if [ -n "${SPHERECAST_BIN:-}" ]; then
  [ -x "$SPHERECAST_BIN" ] || die "SPHERECAST_BIN=$SPHERECAST_BIN is not an executable"
else
  SPHERECAST_BIN=$TARGET/release/spherecast
  BUILD=(--workspace --bins)
fi
if [ -n "${SPHERECAST_CLOCK_BIN:-}" ]; then
  [ -x "$SPHERECAST_CLOCK_BIN" ] || die "SPHERECAST_CLOCK_BIN=$SPHERECAST_CLOCK_BIN is not an executable"
else
  SPHERECAST_CLOCK_BIN=$TARGET/release/spherecast-clock
  BUILD=(--workspace --bins)
fi
if [ ${#BUILD[@]} -gt 0 ]; then
  echo "== building ${BUILD[*]} (release, $TARGET)"
  cargo build --release --locked "${BUILD[@]}" || die "cargo build failed"
fi
mkdir -p "$RUN/bin"
# Copies, so that a rebuild by someone else during the run cannot swap them.
cp "$SPHERECAST_BIN" "$RUN/bin/spherecast"
cp "$SPHERECAST_CLOCK_BIN" "$RUN/bin/spherecast-clock"

# ---------------------------------------------------------------------------------------------
# 2. Servers, each on its own free ports.
freeport() { python3 "$BENCH/bench.py" freeport; }

start_server() { # leg
  local leg=$1 dir=$RUN/$1 health=""
  RTMP[$leg]=$(freeport)
  HTTP[$leg]=$(freeport)
  mkdir -p "$dir"
  case "$leg" in
    nginx)
      start_nginx_rtmp "$dir" "${RTMP[$leg]}" "${HTTP[$leg]}" || return 1
      PID[$leg]=$NGINX_RTMP_PID
      LOG[$leg]=$NGINX_RTMP_LOG
      ;;
    ours|ours-llhls)
      local config=()
      [ "$leg" = ours-llhls ] && config=(--config "$LL_CONFIG")
      "$RUN/bin/spherecast" origin "${config[@]}" --data "$dir/data" \
        --rtmp "127.0.0.1:${RTMP[$leg]}" --http "127.0.0.1:${HTTP[$leg]}" >"$dir/server.log" 2>&1 &
      PID[$leg]=$!
      LOG[$leg]=$dir/server.log
      health=/healthz
      ;;
  esac
  echo "== $leg: rtmp 127.0.0.1:${RTMP[$leg]}, http 127.0.0.1:${HTTP[$leg]}"
  if ! python3 "$BENCH/bench.py" wait-ready --pid "${PID[$leg]}" --rtmp "${RTMP[$leg]}" \
      --http "${HTTP[$leg]}" ${health:+--health "$health"}; then
    echo "bench: $leg failed to start; its log:" >&2
    tail -n 30 "${LOG[$leg]}" >&2 || true
    return 1
  fi
}

BUSY_BEFORE=$(python3 "$BENCH/bench.py" quiet --max-wait "${BENCH_QUIET_WAIT:-120}")
echo "== machine $BUSY_BEFORE % busy before the run"
URLS=()
for leg in "${LEGS[@]}"; do
  start_server "$leg" || die "$leg did not start"
  app=live
  [ "$leg" = ours-llhls ] && app=$LL_APP
  URLS+=("rtmp://127.0.0.1:${RTMP[$leg]}/$app/$NAME")
done

# ---------------------------------------------------------------------------------------------
# 3. One push to every server at once: one encode, so each server gets the same bytes at the
# same moment. It runs until every leg is done (plus a margin).
TOTAL=$((LEAD + ${#LEGS[@]} * (WARMUP + SECONDS_PER_LEG + 60) + 60))
echo "== pushing the clock stream ($SIZE, $FPS fps, keyframe every $GOP frames) to ${#URLS[@]} server(s)"
"$RUN/bin/spherecast-clock" "${URLS[@]}" --size "$SIZE" --fps "$FPS" --gop "$GOP" --seconds "$TOTAL" \
  >"$RUN/push.log" 2>&1 &
PUSH_PID=$!
PUSH_STARTED=$(date +%s)
for leg in "${LEGS[@]}"; do
  "${PY[@]}" wait-live --url "http://127.0.0.1:${HTTP[$leg]}/hls/$NAME.m3u8" --segments 3 --timeout 60 \
    || { tail -n 20 "$RUN/push.log" "${LOG[$leg]}" >&2; die "$leg: the stream did not go live"; }
done
sleep $((LEAD - ($(date +%s) - PUSH_STARTED) > 0 ? LEAD - ($(date +%s) - PUSH_STARTED) : 0))

# ---------------------------------------------------------------------------------------------
# 4. One player per leg, one after the other (two Chromiums decoding at once would slow each
# other), each joining the running stream as a viewer does.
FAILED=0
LEG_FILES=()
for leg in "${LEGS[@]}"; do
  kill -0 "$PUSH_PID" 2>/dev/null || { tail -n 20 "$RUN/push.log" >&2; die "the push stopped"; }
  flags=()
  [ "$leg" = ours-llhls ] && flags+=(--low-latency)
  [ -n "$HLS_CONFIG" ] && flags+=(--hls-config "$HLS_CONFIG")
  flags+=(--sync-count "$SYNC_COUNT")
  label=$leg
  [ "$leg" = nginx ] && label=nginx-rtmp
  [ "$leg" = ours ] && label=spherecast
  [ "$leg" = ours-llhls ] && label=spherecast-llhls
  echo "== $label: hls.js plays http://127.0.0.1:${HTTP[$leg]}/hls/$NAME.m3u8 (${WARMUP} s warm-up, ${SECONDS_PER_LEG} s measured)"
  "${PY[@]}" leg --label "$label" --server "$leg" --url "http://127.0.0.1:${HTTP[$leg]}/hls/$NAME.m3u8" \
    --seconds "$SECONDS_PER_LEG" --warmup "$WARMUP" "${flags[@]}" --out "$RUN/$leg.json" || FAILED=1
  [ -f "$RUN/$leg.json" ] && LEG_FILES+=("$RUN/$leg.json")
  if ! kill -0 "${PID[$leg]}" 2>/dev/null; then
    echo "bench: $leg exited during the run; its log:" >&2
    tail -n 30 "${LOG[$leg]}" >&2 || true
    FAILED=1
  fi
done

# ---------------------------------------------------------------------------------------------
# 5. Report: the table, and every figure as JSON under bench/results/.
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/results/latency-$STAMP.json
META=$(python3 - "$BUSY_BEFORE" <<EOF
import json, os, subprocess, sys
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
print(json.dumps({
    "date": "$STAMP",
    "machine": {
        "cores": os.cpu_count(),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'"),
        "busyPercentBefore": float(sys.argv[1]),
    },
    "versions": {
        "spherecast": sh("'$RUN/bin/spherecast' --version | awk '{print \$2}'"),
        "spherecastBin": "$SPHERECAST_BIN",
        "git": sh("git rev-parse --short HEAD") + ("" if subprocess.run("git diff --quiet HEAD -- src origin media testkit web Cargo.toml Cargo.lock", shell=True).returncode == 0 else "+changes"),
        "nginx": sh("nginx -v 2>&1 | sed 's/^nginx version: //'"),
        "libnginx-mod-rtmp": sh("dpkg-query -W -f='\${Version}' libnginx-mod-rtmp"),
        "ffmpeg": sh("ffmpeg -version | head -1 | awk '{print \$3}'"),
        "chromium": sh("'${CHROMIUM:-/usr/bin/chromium}' --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1"),
        "hls.js": json.load(open("web/node_modules/hls.js/package.json"))["version"],
    },
    "variables": {
        "LATENCY_SECONDS": $SECONDS_PER_LEG, "LATENCY_WARMUP": $WARMUP, "LATENCY_LEAD": $LEAD,
        "LATENCY_SIZE": "$SIZE", "LATENCY_FPS": $FPS, "LATENCY_GOP": $GOP,
        "LATENCY_HLS_CONFIG": os.environ.get("LATENCY_HLS_CONFIG", ""),
        "LATENCY_SYNC_COUNT": $SYNC_COUNT,
        "LATENCY_LLHLS_CONFIG": os.environ.get("LATENCY_LLHLS_CONFIG", ""),
        "LATENCY_LLHLS_APP": "$LL_APP",
    },
    "servers": {
        "spherecast": "spherecast origin, defaults: [origin.hls] target_duration 2000 ms, window 6, recording on",
        "nginx-rtmp": "nginx + libnginx-mod-rtmp, worker_processes 1, hls_fragment 2s, hls_playlist_length 12s, record all",
    },
}))
EOF
)
echo
echo "== glass-to-glass latency ($STAMP): ${SECONDS_PER_LEG} s per leg after ${WARMUP} s warm-up, $SIZE $FPS fps, keyframe every $GOP frames"
echo "machine: $(nproc) cores, $BUSY_BEFORE % busy before the run (other work on the machine raises every figure)"
"${PY[@]}" report --meta "$META" --json "$OUT" "${LEG_FILES[@]}"
echo "results: ${OUT#"$ROOT"/}"
[ "$FAILED" = 0 ] || die "FAILED: a leg measured nothing or a server exited (see above)"
