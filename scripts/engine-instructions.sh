#!/usr/bin/env bash
# The engine's instructions against the 3-level parse floor, counted by callgrind (stable where
# wall time on a shared machine is not): 20 batches of N records each way, less the setup both
# include (building the batches and the runtime).
# Usage: scripts/engine-instructions.sh [--debug] [N ...]  (default N: 10 1000; --debug counts
# the test profile's build, as scripts/test.sh does to check this script, not the figure)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "engine-instructions: valgrind is not installed" >&2; exit 1; }
build=(cargo bench)
if [ "${1:-}" = --debug ]; then build=(cargo test); shift; fi
bench=$("${build[@]}" --bench engine --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine" and m.get("executable"):
        print(m["executable"])')
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bench" --only "$1" --records "$2" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 1000)
for n in "${sizes[@]}"; do
  setup=$(count setup "$n"); engine=$(count engine "$n"); parse=$(count parse "$n")
  python3 -c "
s, e, p, n = $setup, $engine, $parse, $n
print(f'{n:>5} records: engine {(e - s) / 20 / n:>8.0f} instructions/record, parse floor {(p - s) / 20 / n:>8.0f}: {(e - s) / (p - s):.3f}x')"
done
