#!/usr/bin/env bash
# Back-to-back A/B of two commits' src/ under this checkout's bench (docs/performance.md):
#   bash bench/ab.sh BEFORE AFTER ROUNDS OUTDIR [bench options...]
# e.g. bash bench/ab.sh 15cf92a 33d6b55 2 /tmp/ab --duration 10 --scenarios order --no-baselines
# Each commit's src/ is exported (git archive) and put first on PYTHONPATH, so the bench and
# every process it starts run that commit's code; the variants alternate, round by round, and
# each run writes OUTDIR/<round>-<before|after>.json and its log.
set -euo pipefail
before=$1 after=$2 rounds=$3 out=$4
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out/src-before" "$out/src-after"
git -C "$root" archive "$before" src | tar -x -C "$out/src-before"
git -C "$root" archive "$after" src | tar -x -C "$out/src-after"
for round in $(seq 1 "$rounds"); do
  for variant in before after; do
    echo "== $round $variant $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    PYTHONPATH="$out/src-$variant/src" "$root/.venv/bin/python" -m bench "$@" \
      --output "$out/$round-$variant.json" > "$out/$round-$variant.log" 2>&1
    grep -A16 "CPU per request by process" "$out/$round-$variant.log" || true
    grep -E "relay <=|notification worker <=|platform process|orders/s" "$out/$round-$variant.log" || true
  done
done
