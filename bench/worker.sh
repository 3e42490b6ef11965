#!/usr/bin/env bash
# Benchmarks the VOD worker's transcode against two ffmpeg baselines, one after the other in
# one run, on the same 1080p30 H.264 + AAC input and the same 4-rung HLS ladder: wall time,
# CPU time, peak RSS, x realtime and per-rendition SSIM. See bench/README.md.
#
# Usage: bench/worker.sh            (after scripts/setup.sh: ffmpeg, python3)
# Environment:
#   BENCH_SECONDS=60          length of the input (made once per length into bench/.cache/)
#   BENCH_ONLY=ours,ffmpeg,reference   the methods to run (comma list)
#   BENCH_KEEP=1              keep the run folder (configs, logs, every HLS output)
#   BENCH_QUIET_WAIT=120      seconds to wait, before each method, for other load to stop
#   SPHERECAST_BIN=...        the binary (default target/release/spherecast, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
CACHE=$BENCH/.cache
SECS=${BENCH_SECONDS:-60}
ONLY=${BENCH_ONLY:-ours,ffmpeg,reference}
BIN=${SPHERECAST_BIN:-$ROOT/target/release/spherecast}

die() { echo "bench: $*" >&2; exit 1; }

[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -ge 2 ] || die "BENCH_SECONDS must be a whole number of seconds, 2 or more"
IFS=, read -r -a METHODS <<<"$ONLY"
[ ${#METHODS[@]} -gt 0 ] || die "BENCH_ONLY is empty"
for m in "${METHODS[@]}"; do
  case "$m" in ours|ffmpeg|reference) ;; *) die "BENCH_ONLY: unknown method '$m' (use ours, ffmpeg, reference)" ;; esac
done
for tool in ffmpeg ffprobe python3 taskset; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
has() { local m; for m in "${METHODS[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }

RUN=$(mktemp -d /tmp/spherecast-bench-worker.XXXXXX)
HELPER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$HELPER_PID" ]; then
    kill -TERM "$HELPER_PID" 2>/dev/null || true
    wait "$HELPER_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: run folder kept: $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Our binary. A method that cannot run is reported as skipped, with the reason; a missing
# `transcode` subcommand (the worker is not there yet) is not a failure of the benchmark.
SKIP=()
FAILED=0
OURS_VERSION=-
if has ours; then
  if [ ! -x "$BIN" ] && [ -z "${SPHERECAST_BIN:-}" ]; then
    echo "== $BIN is missing: cargo build --release --bin spherecast"
    if ! cargo build --release --bin spherecast; then
      SKIP+=(--skip "ours=cargo build --release failed")
      FAILED=1
    fi
  fi
  if [ ${#SKIP[@]} -eq 0 ]; then
    if [ ! -x "$BIN" ]; then
      SKIP+=(--skip "ours=$BIN does not exist or is not executable")
      FAILED=1
    elif ! "$BIN" transcode --help >/dev/null 2>&1; then
      echo "bench: $BIN has no 'transcode' subcommand yet (built $(date -u -r "$BIN" +%Y-%m-%dT%H:%MZ)): skipping ours" >&2
      echo "bench: rebuild it once the worker is merged (cargo build --release), or point SPHERECAST_BIN at a binary that has it" >&2
      SKIP+=(--skip "ours=$BIN has no 'transcode' subcommand yet")
    else
      # A copy, so that a rebuild by someone else during the run cannot swap the binary.
      cp "$BIN" "$RUN/spherecast"
      OURS_VERSION=$("$RUN/spherecast" --version 2>/dev/null | awk '{print $2}' || echo '?')
    fi
  fi
fi

# 2. The input: 1080p30 H.264 + AAC, made once per length. A slow Mandelbrot zoom (smooth
# gradients, fine detail that grows, global motion) with a testsrc2 picture-in-picture (sharp
# edges, text, local motion) and light temporal grain on luma: neither trivially compressible
# nor noise. Encoded like an OBS recording: x264 veryfast 6 Mbit/s capped, a keyframe every
# 2 s, AAC 160k 48 kHz stereo, in FLV as the origin records it. Every source filter is
# deterministic, so a shorter input shows the same pictures as the start of a longer one.
INPUT=$CACHE/worker-input-v1-1080p30-${SECS}s.flv
if [ ! -s "$INPUT" ]; then
  echo "== encoding the input once: $INPUT"
  mkdir -p "$CACHE"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
    -filter_complex "mandelbrot=size=1920x1080:rate=30:maxiter=512:end_pts=1800:end_scale=0.1[bg];testsrc2=size=480x270:rate=30[pip];[bg][pip]overlay=x=W-w-64:y=H-h-64,noise=c0s=5:c0f=t+u,format=yuv420p[v]" \
    -map '[v]' -map 0:a -t "$SECS" \
    -c:v libx264 -preset veryfast -profile:v high -b:v 6000k -maxrate 6000k -bufsize 12000k \
    -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 160k -ar 48000 -ac 2 "$CACHE/worker-input.tmp.flv"
  mv "$CACHE/worker-input.tmp.flv" "$INPUT"
fi

# ---------------------------------------------------------------------------------------------
# 3. Run and report.
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
MACHINE="{\"cores\": $(nproc), \"cpu\": $(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"), \"ram_gib\": $(free -g | awk '/^Mem:/{print $2}'), \"kernel\": $(json_str "$(uname -r)")}"
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src origin media cloud worker Cargo.toml Cargo.lock 2>/dev/null || echo '+changes')"
VERSIONS="{\"spherecast\": $(json_str "$OURS_VERSION"), \"git\": $(json_str "$GIT"), \"ffmpeg\": $(json_str "$(ffmpeg -version | head -1 | awk '{print $3}')"), \"libx264\": $(json_str "$(dpkg-query -W -f='${Version}\n' 'libx264-*' 2>/dev/null | head -1 || echo '?')"), \"gstreamer\": $(json_str "$(dpkg-query -W -f='${Version}' libgstreamer1.0-0 2>/dev/null || echo '?')")}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULT=$BENCH/results/worker-$STAMP.json

echo "== transcoding $(basename "$INPUT") with: ${METHODS[*]} (one after the other, pinned to $(nproc) cores)"
RC=0
python3 "$BENCH/worker_bench.py" run --input "$INPUT" --run-dir "$RUN" --json "$RESULT" \
  --report "$CACHE/last-worker-run.txt" --methods "$ONLY" --bin "$RUN/spherecast" \
  --quiet-wait "${BENCH_QUIET_WAIT:-120}" --machine "$MACHINE" --versions "$VERSIONS" "${SKIP[@]}" &
HELPER_PID=$!
wait "$HELPER_PID" || RC=$?
HELPER_PID=""
for m in "${METHODS[@]}"; do
  if [ -f "$RUN/$m.log" ]; then cp "$RUN/$m.log" "$CACHE/last-worker-$m.log"; fi
done
if [ -s "$RESULT" ]; then
  echo "results: ${RESULT#"$ROOT"/} (table again: python3 bench/worker_bench.py table --json ${RESULT#"$ROOT"/})"
fi

if [ "$RC" != 0 ] || [ "$FAILED" != 0 ]; then
  echo "bench: FAILED: a method failed, produced an incomplete ladder, or nothing was measured (see above)" >&2
  exit 1
fi
