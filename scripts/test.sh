#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs every test.
# Safe to run again: each install step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n== %s\n' "$*"; }

# Lint first: a warning fails the run, like a failed test.
step "cargo fmt --check"
cargo fmt --check
step "cargo clippy --all-targets"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --all-targets --quiet
