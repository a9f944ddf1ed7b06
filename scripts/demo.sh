#!/usr/bin/env bash
# The README's run command: set up, then run the local pipeline demo on the AWS emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --quiet -p mailroom-cli -- demo "$@"
