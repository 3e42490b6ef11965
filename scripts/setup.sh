#!/usr/bin/env bash
# Installs everything Spherecast needs on a Debian 12 machine: system packages (GStreamer 1.22
# with its dev files and plugins, ffmpeg and nginx as test peers, tools for benchmarks), the
# project-local Python venv with moto server, and the npm packages the player pages serve.
# Quick when everything is already there: each step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  pkg-config build-essential ca-certificates curl
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  ffmpeg nginx libnginx-mod-rtmp wrk chromium
  python3 python3-venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  # A package counts as present only when dpkg reports it fully installed.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts nginx on install; the tests and benchmarks start their own instances.
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
fi

# Node.js and npm: any recent install will do (the machine may carry its own build of Node).
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs and npm"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi

# moto server in a project-local venv (.venv is git-ignored).
MOTO_VERSION="5.1.4"
if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "setup: installing moto[server]==$MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# cfn-lint in the same venv: tests/infra.rs lints infra/spherecast.yaml with it and loads the
# template with its decoder (moto[server] pulls in some cfn-lint; this pins the one we test with).
CFN_LINT_VERSION="1.58.0"
if [ ! -x .venv/bin/cfn-lint ] || ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('cfn-lint') != '$CFN_LINT_VERSION')" 2>/dev/null; then
  echo "setup: installing cfn-lint==$CFN_LINT_VERSION into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi

# Front-end assets the origin serves (hls.js; no CDN at run time) and playwright-core, which
# drives Debian's Chromium in the browser tests (no browser download).
if [ ! -f web/node_modules/hls.js/dist/hls.min.js ] || [ ! -d web/node_modules/playwright-core ]; then
  echo "setup: installing npm packages for web/"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi

# Rust: the edition-2024 workspace needs a current toolchain (Debian's rustc is too old).
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

echo "setup: ok"
