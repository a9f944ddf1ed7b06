#!/usr/bin/env bash
# The README's test command: set up, check the SAM template, then run every test (emulator and
# runtime-API tests included; benchmarks run once each in test mode).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/check-template.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
