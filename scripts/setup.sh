#!/usr/bin/env bash
# Creates the project's Python venv (.venv) with the pinned AWS emulator, and checks the Rust
# toolchain. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${MAILROOM_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the Python venv in $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt; then
  echo "setup: pip could not install requirements-dev.txt into $venv" >&2
  exit 1
fi
if [ ! -x .venv-checkov/bin/checkov ]; then
  echo "setup: creating .venv-checkov (checkov pins boto3 apart from aws-sam-cli)"
  python3 -m venv .venv-checkov
fi
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
rustup component add clippy rustfmt >/dev/null 2>&1 || true
