#!/usr/bin/env bash
# Benchmarks the projection kernel (crate projection/) against ffmpeg's v360, side by side in
# one run: the same raw 3840x1920 yuv420p input in RAM, equirect to c3x2 (2880x1920) and to EAC
# (ffmpeg's default size, 3840x2160), bilinear, both limited to 2 threads, raw in and nothing
# out. Reports frames/s without and with table set-up, the set-up time, the ratio ours/ffmpeg
# and the PSNR of our output against ffmpeg's; writes bench/results/projection-STAMP.json.
# See bench/README.md.
#
# Usage: bench/projection.sh            (after scripts/setup.sh: ffmpeg, python3, cargo)
# Environment:
#   BENCH_FRAMES=90           frames in the input (3 s at 30 frames/s; 11 MB each, in /dev/shm)
#   BENCH_THREADS=2           threads for both (ffmpeg -threads N -filter_threads N)
#   BENCH_REPEAT=5            rounds per layout, alternating who goes first; medians reported
#   BENCH_LAYOUTS=c3x2,eac    layouts to measure
#   BENCH_QUIET_WAIT=120      seconds to wait, before each layout, for other load to stop
#   BENCH_KEEP=1              keep the input in /dev/shm for the next run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
FRAMES=${BENCH_FRAMES:-90}
THREADS=${BENCH_THREADS:-2}
REPEAT=${BENCH_REPEAT:-5}
LAYOUTS=${BENCH_LAYOUTS:-c3x2,eac}
SIZE=3840x1920

die() { echo "bench: $*" >&2; exit 1; }
[[ "$FRAMES" =~ ^[0-9]+$ ]] && [ "$FRAMES" -ge 10 ] || die "BENCH_FRAMES must be a whole number, 10 or more"
[[ "$THREADS" =~ ^[0-9]+$ ]] && [ "$THREADS" -ge 1 ] || die "BENCH_THREADS must be 1 or more"
[[ "$REPEAT" =~ ^[0-9]+$ ]] && [ "$REPEAT" -ge 1 ] || die "BENCH_REPEAT must be 1 or more"
export PATH="$HOME/.cargo/bin:$PATH"
for tool in ffmpeg python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done

SHM=/dev/shm/spherecast-bench-projection
RUN=$(mktemp -d /tmp/spherecast-bench-projection.XXXXXX)
HELPER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$HELPER_PID" ]; then
    kill -TERM "$HELPER_PID" 2>/dev/null || true
    wait "$HELPER_PID" 2>/dev/null || true
  fi
  rm -rf "$RUN"
  if [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$SHM"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Our side: the example binary, built in release mode here, copied so that a rebuild during
# the run cannot swap it.
echo "== cargo build --release -p projection --example project"
cargo build --release -p projection --example project
cp "$ROOT/target/release/examples/project" "$RUN/project"

# 2. The input, made once per frame count into RAM: ffmpeg's testsrc2 (bars, gradients, text,
# moving shapes) with light uniform noise on every plane, so the source has detail down to the
# pixel and changes from frame to frame. Deterministic (fixed noise seed).
INPUT=$SHM/input-v1-$SIZE-$FRAMES.yuv
if [ ! -s "$INPUT" ]; then
  echo "== making the input once: $INPUT ($FRAMES frames, $((FRAMES * 3840 * 1920 * 3 / 2 / 1000000)) MB)"
  mkdir -p "$SHM"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=$SIZE:rate=30,noise=alls=12:allf=t+u:all_seed=4242,format=yuv420p" \
    -frames:v "$FRAMES" -f rawvideo "$SHM/input.tmp.yuv"
  mv "$SHM/input.tmp.yuv" "$INPUT"
fi

# 3. Measure and report.
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
MACHINE="{\"cores\": $(nproc), \"cpu\": $(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"), \"ram_gib\": $(free -g | awk '/^Mem:/{print $2}'), \"kernel\": $(json_str "$(uname -r)")}"
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- projection 2>/dev/null || echo '+changes')"
VERSIONS="{\"git\": $(json_str "$GIT"), \"ffmpeg\": $(json_str "$(ffmpeg -version | head -1 | awk '{print $3}')"), \"rustc\": $(json_str "$(rustc --version)")}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULT=$BENCH/results/projection-$STAMP.json
COMMAND="BENCH_FRAMES=$FRAMES BENCH_THREADS=$THREADS BENCH_REPEAT=$REPEAT bench/projection.sh"

echo "== measuring $LAYOUTS: ffmpeg v360 and ours, $THREADS threads each, $REPEAT rounds"
RC=0
python3 "$BENCH/projection_bench.py" run --input "$INPUT" --size "$SIZE" --frames "$FRAMES" \
  --threads "$THREADS" --repeat "$REPEAT" --bin "$RUN/project" --run-dir "$RUN" \
  --json "$RESULT" --quiet-wait "${BENCH_QUIET_WAIT:-120}" --layouts "$LAYOUTS" \
  --machine "$MACHINE" --versions "$VERSIONS" --command "$COMMAND" &
HELPER_PID=$!
wait "$HELPER_PID" || RC=$?
HELPER_PID=""
if [ "$RC" != 0 ]; then
  die "FAILED (see above)"
fi
echo "results: ${RESULT#"$ROOT"/} (table again: python3 bench/projection_bench.py table --json ${RESULT#"$ROOT"/})"
