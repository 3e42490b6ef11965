#!/usr/bin/env bash
# Benchmarks the live ABR ladder (crate live/) against ffmpeg doing the same ladder, side by
# side in one run: one 1080p30 H.264 source (~3.5 Mbit/s, 2 s GOP) in FLV, decoded once,
# scaled and encoded into _480 (500k), _960 (2300k) and _1920 (5800k) with x264 ultrafast
# zerolatency, as fast as possible (not paced at real time); all three rungs, then each rung
# alone. Reports x realtime and CPU seconds per media second for both and the ratios; writes
# bench/results/live_ladder-STAMP.json. See bench/README.md.
#
# Usage: bench/live_ladder.sh            (after scripts/setup.sh: ffmpeg, python3, cargo)
# Environment:
#   BENCH_SECONDS=30          media seconds in the source
#   BENCH_REPEAT=1            rounds per case, alternating who goes first; medians reported
#   BENCH_QUIET_WAIT=60       seconds to wait, before each case, for other load to stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
SECONDS_=${BENCH_SECONDS:-30}
REPEAT=${BENCH_REPEAT:-1}

die() { echo "bench: $*" >&2; exit 1; }
[[ "$SECONDS_" =~ ^[0-9]+$ ]] && [ "$SECONDS_" -ge 2 ] || die "BENCH_SECONDS must be a whole number, 2 or more"
[[ "$REPEAT" =~ ^[0-9]+$ ]] && [ "$REPEAT" -ge 1 ] || die "BENCH_REPEAT must be 1 or more"
export PATH="$HOME/.cargo/bin:$PATH"
for tool in ffmpeg python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done

# 1. The ladder, optimised.
echo "== cargo build --release -p live --example live_ladder"
cargo build --release -p live --example live_ladder
OURS=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/live_ladder
[ -x "$OURS" ] || die "$OURS was not built"

# 2. The source, made once: testsrc2 (moving, detailed) 1920x1080@30, x264 veryfast at
# 3.5 Mbit/s capped, a keyframe every 2 s and no scene cuts, no audio.
mkdir -p "$BENCH/.cache" "$BENCH/results"
INPUT=$BENCH/.cache/live-ladder-v1-1080p30-${SECONDS_}s.flv
if [ ! -s "$INPUT" ]; then
  echo "== making the source once: $INPUT"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30" -t "$SECONDS_" \
    -c:v libx264 -preset veryfast -b:v 3500k -maxrate 3500k -bufsize 7000k \
    -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p -an -f flv "$INPUT.tmp"
  mv "$INPUT.tmp" "$INPUT"
fi

# 3. Measure and report.
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
MACHINE="{\"cores\": $(nproc), \"cpu\": $(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"), \"kernel\": $(json_str "$(uname -r)")}"
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- live 2>/dev/null || echo '+changes')"
VERSIONS="{\"git\": $(json_str "$GIT"), \"ffmpeg\": $(json_str "$(ffmpeg -version | head -1 | awk '{print $3}')"), \"gstreamer\": $(json_str "$(gst-inspect-1.0 --version | sed -n 2p | awk '{print $2}')")}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULT=$BENCH/results/live_ladder-$STAMP.json
COMMAND="BENCH_SECONDS=$SECONDS_ BENCH_REPEAT=$REPEAT bench/live_ladder.sh"
python3 "$BENCH/live_ladder_bench.py" run --ours "$OURS" --input "$INPUT" --media-s "$SECONDS_" \
  --repeat "$REPEAT" --quiet-wait "${BENCH_QUIET_WAIT:-60}" --json "$RESULT" \
  --machine "$MACHINE" --versions "$VERSIONS" --command "$COMMAND"
echo "== saved $RESULT"
