#!/usr/bin/env bash
# Sets up the machine and runs the whole test suite: formatting, lints, unit tests, the port
# contract suites against moto server, and the end-to-end tests against real ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Tests start real peers (ffmpeg, moto server) and spherecast itself; two at a time suits
# two cores without starving the live pushes.
cargo test --workspace --all-targets --locked -- --test-threads=2
