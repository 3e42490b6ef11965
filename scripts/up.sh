#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (system packages, moto venv, npm assets), builds
# spherecast in release mode and runs `spherecast up` with any extra arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked --bin spherecast
exec target/release/spherecast up "$@"
