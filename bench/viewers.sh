#!/usr/bin/env bash
# How many simulated HLS viewers (`spherecast loadtest`) one server holds with zero stalls and
# zero errors: the Spherecast origin vs nginx serving nginx-rtmp's HLS, side by side in one
# run, both fed the same 3.5 Mbit/s 1080p RTMP push. See bench/README.md.
#
# Usage: bench/viewers.sh            (after scripts/setup.sh)
# Environment:
#   BENCH_STEPS="500 1000 2000 3000 4000 5000"  viewer counts in order; a server stops
#                             stepping after its first step with a stall or an error
#   BENCH_RAMP=30             seconds over which a step's viewers join
#   BENCH_DURATION=180        seconds at full load per step
#   BENCH_QUICK=1             a quick check: steps "100 300", ramp 5 s, duration 20 s
#   BENCH_ONLY=nginx|ours     run one server only (default: both)
#   BENCH_KEEP=1              keep the run folder (logs, configs, per-step JSON and HTML reports)
#   BENCH_QUIET_WAIT=120      seconds to wait for other load on the machine to stop first
#   SPHERECAST_BIN=FILE       the binary to measure (default: build target/release/spherecast)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
CACHE=$BENCH/.cache
PY=(python3 "$BENCH/bench.py")
VPY=(python3 "$BENCH/viewers.py")
ONLY=${BENCH_ONLY:-both}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  STEPS=${BENCH_STEPS:-"100 300"} RAMP=${BENCH_RAMP:-5} DURATION=${BENCH_DURATION:-20}
else
  STEPS=${BENCH_STEPS:-"500 1000 2000 3000 4000 5000"} RAMP=${BENCH_RAMP:-30} DURATION=${BENCH_DURATION:-180}
fi

die() { echo "bench: $*" >&2; exit 1; }

case "$ONLY" in both|nginx|ours) ;; *) die "BENCH_ONLY must be nginx, ours or both" ;; esac
for tool in nginx ffmpeg python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
# shellcheck source=bench/lib/nginx_rtmp.sh
. "$BENCH/lib/nginx_rtmp.sh"
nginx_rtmp_module >/dev/null || die "ngx_rtmp_module.so not found: run scripts/setup.sh (libnginx-mod-rtmp)"

# Every viewer holds a connection on each side of loopback: the generator, the server and
# nginx's workers need file descriptors for all of them.
MAX_STEP=0
for n in $STEPS; do [ "$n" -gt "$MAX_STEP" ] && MAX_STEP=$n; done
NEEDED=$((MAX_STEP * 2 + 1024))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$NEEDED" ] \
  || die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) is below the $NEEDED that $MAX_STEP viewers need: raise the hard limit (limits.conf or systemd LimitNOFILE)"

RUN=$(mktemp -d /tmp/spherecast-viewers.XXXXXX)
chmod 755 "$RUN"
RESULTS=$RUN/results.jsonl
: >"$RESULTS"
HELPER_PID=""
LOADTEST_PID=""
declare -A PID=() RTMP=() HTTP=() LOG=() PUSH=() URL=()
declare -A LABEL=([nginx]=nginx-rtmp [ours]=spherecast)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$HELPER_PID" ] && stop_pid "$HELPER_PID" 10
  [ -n "$LOADTEST_PID" ] && stop_pid "$LOADTEST_PID" 10
  local pid
  for pid in "${PUSH[@]}"; do stop_pid "$pid" 5; done
  finish_run "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Process helpers and the two servers: see bench/servers.sh. nginx gets what an operator
# serving thousands of viewers would set: a worker per core, enough connections, sendfile.
NGINX_WORKERS=auto
NGINX_CONNECTIONS=$NEEDED
NGINX_HTTP_EXTRA="sendfile on; tcp_nopush on; keepalive_requests 1000000;"
# `origin`, not `up`: no VOD worker transcoding a finished recording in the middle of a step.
OURS_COMMAND=origin
. "$BENCH/servers.sh"

# ---------------------------------------------------------------------------------------------
# 1. Our binary (the server and the load generator), copied so that a rebuild by someone else
# during the run cannot swap it.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${SPHERECAST_BIN:-}" ]; then
  [ -x "$SPHERECAST_BIN" ] || die "SPHERECAST_BIN=$SPHERECAST_BIN is not an executable"
  BIN=$SPHERECAST_BIN
else
  BIN=$TARGET/release/spherecast
  # The whole workspace's binaries: the same features as any other release build, so the
  # other benchmarks reuse it (building one package alone would rebuild shared dependencies).
  echo "== building $BIN"
  cargo build --release --locked --workspace --bins || die "cargo build --release failed"
fi
LOADTEST=$RUN/spherecast-loadtest
cp "$BIN" "$LOADTEST"

# 2. The input: 60 s of 1920x1080@30 test pattern with temporal noise (so x264 reaches the
# bitrate), x264 ultrafast ~3.35 Mbit/s capped, a keyframe every 2 s, AAC 128k: ~3.5 Mbit/s
# in all. Made once, then pushed in a loop without re-encoding.
INPUT=$CACHE/input-1920x1080-3500k-g60-60s.flv
if [ ! -s "$INPUT" ]; then
  echo "== encoding the input once: $INPUT"
  mkdir -p "$CACHE"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60 \
    -vf noise=alls=8:allf=t -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
    -b:v 3350k -maxrate 3350k -bufsize 6700k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k -ar 48000 -ac 2 "$CACHE/input-1080.tmp.flv"
  mv "$CACHE/input-1080.tmp.flv" "$INPUT"
fi
INPUT_KBPS=$(( $(stat -c %s "$INPUT") * 8 / 60 / 1000 ))
echo "== input: $(basename "$INPUT"), $INPUT_KBPS kbit/s"

# ---------------------------------------------------------------------------------------------
# 3. Servers side by side, each with its own looping push for the whole run.
KINDS=()
[ "$ONLY" = ours ] || KINDS+=(nginx)
[ "$ONLY" = nginx ] || KINDS+=(ours)

BUSY_BEFORE=$(helper quiet --max-wait "${BENCH_QUIET_WAIT:-120}")
echo "== machine $BUSY_BEFORE % busy before the run"
for kind in "${KINDS[@]}"; do
  start_server "$kind" || die "${LABEL[$kind]} did not start"
  nice -n 5 ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$INPUT" \
    -c copy -f flv "rtmp://127.0.0.1:${RTMP[$kind]}/live/bench" >"$RUN/push-$kind.log" 2>&1 &
  PUSH[$kind]=$!
  # nginx-rtmp has no master playlist without hls_variant: its viewers start at the media
  # playlist. Ours start at the master, as players do.
  URL[$kind]=http://127.0.0.1:${HTTP[$kind]}/hls/bench.m3u8
done
for kind in "${KINDS[@]}"; do
  helper_out=$("${VPY[@]}" wait-playlist "${URL[$kind]}" --timeout 60 2>&1) \
    || die "${LABEL[$kind]}: $helper_out"
done

# ---------------------------------------------------------------------------------------------
# 4. Steps: at each viewer count the servers take turns, in alternating order, so that a drift
# in background load hits both alike. A server that fails a step is not stepped further.
declare -A STOPPED=()
ORDER=("${KINDS[@]}")
for step in $STEPS; do
  echo "== $step viewers: ramp $RAMP s, $DURATION s at full load"
  for kind in "${ORDER[@]}"; do
    [ -z "${STOPPED[$kind]:-}" ] || continue
    kill -0 "${PUSH[$kind]}" 2>/dev/null || die "the push to ${LABEL[$kind]} stopped: $(tail -5 "$RUN/push-$kind.log")"
    kill -0 "${PID[$kind]}" 2>/dev/null || die "${LABEL[$kind]} exited: $(tail -20 "${LOG[$kind]}")"
    sleep 5 # the previous step's connections close
    out=$RUN/$kind-$step
    before=$("${VPY[@]}" ticks "${PID[$kind]}")
    "$LOADTEST" loadtest --url "${URL[$kind]}" --viewers "$step" --ramp "$RAMP" --duration "$DURATION" \
      --progress 30 --json "$out.json" --report "$out.html" >"$out.txt" 2>"$out.log" &
    LOADTEST_PID=$!
    rc=0
    wait "$LOADTEST_PID" || rc=$?
    LOADTEST_PID=""
    after=$("${VPY[@]}" ticks "${PID[$kind]}")
    [ "$rc" = 0 ] || die "spherecast loadtest failed against ${LABEL[$kind]}: $(tail -5 "$out.log")"
    "${VPY[@]}" step --kind "$kind" --viewers "$step" --json "$out.json" \
      --ticks-before "$before" --ticks-after "$after" --out "$RESULTS" || STOPPED[$kind]=1
  done
  [ ${#ORDER[@]} -eq 2 ] && ORDER=("${ORDER[1]}" "${ORDER[0]}")
  all_stopped=1
  for kind in "${KINDS[@]}"; do [ -n "${STOPPED[$kind]:-}" ] || all_stopped=""; done
  [ -z "$all_stopped" ] || break
done

# ---------------------------------------------------------------------------------------------
# 5. Report.
mkdir -p "$BENCH/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, Linux $(uname -r); spherecast git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nginx -v 2>&1 | sed 's/^nginx version: //') + libnginx-mod-rtmp $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?')"
{
  echo
  echo "== viewers held: Spherecast origin vs nginx + nginx-rtmp HLS ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo "machine: $MACHINE"
  echo "machine busy before the run: $BUSY_BEFORE % (other work on the machine skews the figures)"
  echo "input: $(basename "$INPUT") ($INPUT_KBPS kbit/s), ffmpeg -re -stream_loop -1 -c copy; steps: $STEPS; ramp $RAMP s + $DURATION s each"
  echo
  "${VPY[@]}" summary --results "$RESULTS" --out "$BENCH/results/viewers-$STAMP.json" \
    --machine "$MACHINE" --busy "$BUSY_BEFORE" --ramp "$RAMP" --duration "$DURATION" \
    --input "$(basename "$INPUT") $INPUT_KBPS kbit/s"
  echo
  echo "Caveat: the load generator and the server share the same $(nproc) cores (its own CPU is"
  echo "in the table); the figures are for both together on this machine."
} | tee "$CACHE/last-viewers.txt"
