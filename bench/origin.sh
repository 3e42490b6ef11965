#!/usr/bin/env bash
# Benchmarks the Spherecast origin against nginx + nginx-rtmp-module, side by side in one run:
# server CPU with 1 and with N concurrent publishers, time from publish to the first playable
# playlist, and HTTP requests/s on a live segment and a live playlist. See bench/README.md.
#
# Usage: bench/origin.sh            (after scripts/setup.sh)
# Environment:
#   BENCH_ONLY=nginx|ours     run one server only (default: both)
#   BENCH_PUBLISHERS=50       publishers in the many-publisher round
#   BENCH_KEEP=1              keep the run folder (logs, configs, nginx/origin data)
#   BENCH_QUIET_WAIT=120      seconds to wait for other load on the machine to stop first
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
CACHE=$BENCH/.cache
PY=(python3 "$BENCH/bench.py")
ONLY=${BENCH_ONLY:-both}
PUBLISHERS=${BENCH_PUBLISHERS:-50}
# shellcheck source=bench/lib/nginx_rtmp.sh
. "$BENCH/lib/nginx_rtmp.sh"

die() { echo "bench: $*" >&2; exit 1; }

case "$ONLY" in both|nginx|ours) ;; *) die "BENCH_ONLY must be nginx, ours or both" ;; esac
for tool in nginx ffmpeg wrk python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
nginx_rtmp_module >/dev/null || die "ngx_rtmp_module.so not found: run scripts/setup.sh (libnginx-mod-rtmp)"

RUN=$(mktemp -d /tmp/spherecast-bench.XXXXXX)
chmod 755 "$RUN"
RESULTS=$RUN/results.jsonl
: >"$RESULTS"
HELPER_PID=""
FAILED=0
declare -A PID=() RTMP=() HTTP=() LOG=() FAILED_KIND=()
declare -A LABEL=([nginx]=nginx-rtmp [ours]=spherecast)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$HELPER_PID" ] && stop_pid "$HELPER_PID" 10
  finish_run "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Process helpers and the two servers: see bench/servers.sh.
. "$BENCH/servers.sh"

# ---------------------------------------------------------------------------------------------
# 1. Our binary.
BIN=$ROOT/target/release/spherecast
if [ "$ONLY" != nginx ]; then
  echo "== building target/release/spherecast"
  if ! cargo build --release --bin spherecast; then
    die "cargo build --release --bin spherecast failed"
  fi
fi

# 2. The input: ~500 kbit/s H.264 + AAC, 640x360@30, a keyframe every 2 s, 60 s. Made once.
# A little temporal noise keeps x264 at its 450k cap: plain testsrc compresses to ~290k.
INPUT=$CACHE/input-640x360-500k-g60-60s.flv
if [ ! -s "$INPUT" ]; then
  echo "== encoding the input once: $INPUT"
  mkdir -p "$CACHE"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc=size=640x360:rate=30 -f lavfi -i sine -t 60 \
    -vf noise=alls=6:allf=t -c:v libx264 -pix_fmt yuv420p -b:v 450k -maxrate 450k -bufsize 900k -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 64k "$CACHE/input.tmp.flv"
  mv "$CACHE/input.tmp.flv" "$INPUT"
fi

# ---------------------------------------------------------------------------------------------
# 3. Measurements (the servers start below, from bench/servers.sh).

measure() { # nginx|ours, subcommand and its arguments
  local kind=$1 sub=$2
  shift 2
  [ -n "${PID[$kind]:-}" ] || return 0
  # --settle: every server's processes must be quiet first (the other one may still be
  # finishing the recordings of its previous round).
  if ! helper "$sub" --kind "$kind" --pid "${PID[$kind]}" --settle "${PID[@]}" \
      --rtmp "${RTMP[$kind]}" --http "${HTTP[$kind]}" \
      --input "$INPUT" --out "$RESULTS" --logdir "$RUN" "$@"; then
    FAILED_KIND[$kind]=1
  fi
}

KINDS=()
[ "$ONLY" = ours ] || KINDS+=(nginx)
[ "$ONLY" = nginx ] || KINDS+=(ours)

BUSY_BEFORE=$(helper quiet --max-wait "${BENCH_QUIET_WAIT:-120}")
echo "== machine $BUSY_BEFORE % busy before the run"
for kind in "${KINDS[@]}"; do
  start_server "$kind" || FAILED=1
done

# 4. Both servers run side by side (an idle one costs nothing) and take turns, in an
# alternating order, so that a drift in background load affects both alike.
REV=("${KINDS[@]}")
[ ${#KINDS[@]} -eq 2 ] && REV=("${KINDS[1]}" "${KINDS[0]}")
for kind in "${KINDS[@]}"; do measure "$kind" cpu --publishers 1; done
for kind in "${REV[@]}"; do measure "$kind" cpu --publishers "$PUBLISHERS"; done
for kind in "${KINDS[@]}"; do measure "$kind" first --repeats 3; done
for kind in "${REV[@]}"; do measure "$kind" http; done

for kind in "${KINDS[@]}"; do
  [ -n "${PID[$kind]:-}" ] || continue
  if ! kill -0 "${PID[$kind]}" 2>/dev/null; then
    echo "bench: ${LABEL[$kind]} exited during the benchmark; last log lines:" >&2
    tail -30 "${LOG[$kind]}" >&2 || true
    FAILED_KIND[$kind]=1
  fi
  if [ -n "${FAILED_KIND[$kind]:-}" ]; then
    FAILED=1
    echo "bench: ${LABEL[$kind]}: some measurements failed; warnings and errors it logged:" >&2
    grep -aiE 'error|warn|panic|crit|alert|emerg' "${LOG[$kind]}" 2>/dev/null \
      | grep -v 'No such file or directory' | tail -20 >&2 || true
  fi
  stop_pid "${PID[$kind]}" 30
  cp "${LOG[$kind]}" "$CACHE/last-$kind.log" 2>/dev/null || true
  unset 'PID[$kind]'
done

# ---------------------------------------------------------------------------------------------
# 5. Report.
{
  echo
  echo "== Spherecast origin vs nginx-rtmp ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
  echo "versions: spherecast $( [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | awk '{print $2}' || echo '-') (git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src origin media cloud Cargo.toml Cargo.lock 2>/dev/null || echo '+changes')), $(nginx -v 2>&1 | sed 's/^nginx version: //') + libnginx-mod-rtmp $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?'), $(ffmpeg -version | head -1 | awk '{print "ffmpeg " $3}'), wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?')"
  echo "machine busy before the run: $BUSY_BEFORE % (other work on the machine skews the figures)"
  echo "input: $(basename "$INPUT") ($(( $(stat -c %s "$INPUT") * 8 / 60 / 1000 )) kbit/s); pushes: ffmpeg -re -c copy, nice 5; CPU window t=5-15 s of 20 s pushes; wrk -t2 -c100 -d10s"
  echo
  "${PY[@]}" table --results "$RESULTS" --publishers "$PUBLISHERS"
  echo
  echo "Caveat: load generators (ffmpeg, wrk) and the server share the same $(nproc) cores, so req/s"
  echo "figures measure client and server together. Other work on the machine (see \"other"
  echo "processes\") moves req/s figures by up to 2x between runs: compare ratios within one run."
} | tee "$CACHE/last-run.txt"

if [ "$FAILED" != 0 ]; then
  echo "bench: FAILED: a server did not start or a measurement failed (see above)" >&2
  exit 1
fi
