#!/usr/bin/env bash
# Instructions per mail of the notification worker (its Consumer, Redis inbox and Notifier,
# bench.event_cost consumer), counted by valgrind (cachegrind, no cache simulation), not timed:
# a loaded machine does not move the figure, so two trees compare on one that is busy.
#   bash bench/mail_instructions.sh [SRC]   SRC: the src/ of the tree to count (default: ours)
# Starts a mail sink (this tree's shop.devtools.mailsink), then counts the consumer draining
# 200 and 1,200 order-paid events, published by a child process valgrind does not follow, and
# prints the difference per mail: start-up, imports and connecting cancel out. Needs the local
# RabbitMQ and Redis. Each count takes a minute or two under valgrind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${1:-$root/src}" && pwd)
python="$root/.venv/bin/python"
mail=$(mktemp -d)
port=$(cd "$root" && "$python" -c 'from shop.devtools.processes import free_port; print(free_port())')
(cd "$root" && exec "$python" -m shop.devtools.mailsink "$mail" --port "$port") > /dev/null &
sink=$!
trap 'kill $sink 2> /dev/null; rm -rf "$mail"' EXIT
for _ in $(seq 50); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  sleep 0.2
done
count() {
  local log
  log=$(mktemp)
  (cd "$root" && PYTHONPATH="$src:$root" valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file=/dev/null "$python" -m bench.event_cost consumer --messages "$1" \
    --smtp-port "$port" --redis redis://127.0.0.1:6379/0 --publish-apart > /dev/null 2> "$log")
  sed -n 's/.*I *refs: *//p' "$log" | tr -d ,
  rm -f "$log"
}
few=$(count 200)
many=$(count 1200)
echo "a mail, in the worker ($src): $(((many - few) / 1000)) instructions"
