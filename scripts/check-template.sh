#!/usr/bin/env bash
# Checks template.yaml offline: SAM's validator with cfn-lint, cfn-lint itself, and checkov
# (failed checks fail the run; suppressions live in the template, each with its reason).
# MAILROOM_SAM_BUILD=1 also runs `sam build` for arm64 with cargo-lambda and zig from the venv:
# a cold release build of every function, several minutes on two cores, so it is opt-in.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0 AWS_REGION="${AWS_REGION:-us-east-1}"

# The application and the reusable consumer definition its consumers are nested from.
for t in template.yaml templates/consumer.yaml; do
  echo "template: sam validate --lint $t"
  sam validate --lint --template "$t" --region "$AWS_REGION"
done
echo "template: cfn-lint"
cfn-lint template.yaml templates/consumer.yaml
echo "template: checkov"
.venv-checkov/bin/checkov --file template.yaml --file templates/consumer.yaml \
  --framework cloudformation --skip-download --quiet --compact --output cli
if [ "${MAILROOM_SAM_BUILD:-0}" = 1 ]; then
  echo "template: sam build (arm64, cargo-lambda + zig)"
  # Installed once here: cargo-lambda would install it itself, once per function, in parallel.
  rustup target add aarch64-unknown-linux-gnu
  sam build --beta-features --template template.yaml
fi
