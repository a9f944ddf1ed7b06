#!/usr/bin/env bash
# The README's test command: set up, then run every test, emulator tests included, and check
# that the benchmarks still build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
