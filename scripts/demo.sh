#!/usr/bin/env bash
# The README's run command: set up, build the function binaries, then run the whole pipeline
# locally (template.yaml on the AWS emulator, each function its real binary under the Lambda
# Runtime Interface Emulator) and play the demo workload through it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --workspace --bins
exec target/debug/mailroom local demo "$@"
