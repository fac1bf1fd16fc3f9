#!/usr/bin/env bash
# Instructions per near-cache hit, counted by valgrind (cachegrind, no cache simulation), not
# timed: a loaded machine does not move the figure, so two variants compare on one that is
# busy (docs/observability.md, "Sampling and its cost"):
#   bash bench/instructions.sh [bench.inprocess options...]   e.g. --sample-ratio 0
# Runs bench.inprocess twice, with 1,000 and 5,000 measured requests (one round each), and
# prints the difference per request: start-up, imports and the warm-up cancel out. Under
# valgrind each run takes a minute or two.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count() {
  local log
  log=$(mktemp)
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$root/.venv/bin/python" -m bench.inprocess --requests "$1" --rounds 1 "${@:2}" \
    > /dev/null 2> "$log"
  sed -n 's/.*I *refs: *//p' "$log" | tr -d ,
  rm -f "$log"
}
few=$(cd "$root" && count 1000 "$@")
many=$(cd "$root" && count 5000 "$@")
echo "near-cache hit, in process ${*:-untraced}: $(((many - few) / 4000)) instructions per request"
