#!/usr/bin/env bash
# Runs the README's "Without Docker" lines as written: `cargo lambda watch` from the
# repository root, then the first `cargo lambda invoke` line, whose answer must be the empty
# partial-batch response (issue 12, point 1: on 6b129e9 watch failed from the root, and every
# invoke line hung). The function binaries must be built (scripts/test.sh does it first).
set -euo pipefail
cd "$(dirname "$0")/.."
block=$(awk '/^Without Docker, cargo-lambda serves the Runtime API:/{found=1; next}
             found && /^```sh/{inside=1; next}
             inside && /^```/{exit}
             inside{print}' README.md)
export_line=$(grep -m1 '^export PATH=' <<<"$block")
watch_line=$(grep -m1 'cargo lambda watch' <<<"$block")
invoke_line=$(grep -m1 'cargo lambda invoke example-consumer' <<<"$block")
[[ -n $export_line && -n $watch_line && -n $invoke_line ]] || {
  echo "readme-cargo-lambda: the README's cargo-lambda block is not where this test looks" >&2
  exit 1
}
if (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; then
  echo "readme-cargo-lambda: port 9000 is taken; the README's lines use it" >&2
  exit 1
fi
eval "$export_line"
log=$(mktemp)
set -m # the watch runs in its own process group, so it can be stopped whole
eval "${watch_line%&}" >"$log" 2>&1 &
watch=$!
set +m
trap 'kill -- -"$watch" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 120); do
  (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break
  sleep 0.5
done
answer=$(timeout 180 bash -c "$invoke_line")
if [[ $answer != '{"batchItemFailures":[]}' ]]; then
  echo "readme-cargo-lambda: \`$invoke_line\` answered: $answer" >&2
  tail -20 "$log" >&2
  exit 1
fi
grep -q '"order accepted"' "$log" || {
  echo "readme-cargo-lambda: the function's log does not show the orders accepted" >&2
  tail -20 "$log" >&2
  exit 1
}
echo "readme-cargo-lambda: \`cargo lambda watch\` and \`$invoke_line\` work as written"
