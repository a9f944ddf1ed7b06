#!/usr/bin/env bash
# The README's test command: set up, check the SAM template, then run every test (emulator,
# runtime-API and end-to-end tests included; benchmarks run once each in test mode). The
# function binaries are built first: the end-to-end test runs them under the Runtime
# Interface Emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/check-template.sh
cargo build --workspace --bins
cargo test --workspace --all-targets
cargo test --workspace --doc
# The README's cargo-lambda lines, as written (they need the built binaries and port 9000).
scripts/test-readme-cargo-lambda.sh
# The README's instruction count works (on the test build here: the figure is the release
# build's, `scripts/engine-instructions.sh`, too slow to build for every run).
if command -v valgrind >/dev/null; then scripts/engine-instructions.sh --debug 10; fi
# The three library crates package and build on their own, as published.
scripts/check-packages.sh
