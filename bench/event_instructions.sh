#!/usr/bin/env bash
# Instructions per unit of the event side's work, counted by valgrind (cachegrind, no cache
# simulation), not timed: a loaded machine does not move the figure, so two trees compare on
# one that is busy (docs/events.md, "Issue 31, fifth round"):
#   bash bench/event_instructions.sh mail [SRC]    per mail: the notification worker's
#       Consumer, Redis inbox and Notifier (bench.event_cost consumer) mailing a sink (this
#       tree's shop.devtools.mailsink), 200 and 1,200 order-paid events published by a child
#       process valgrind does not follow;
#   bash bench/event_instructions.sh relay [SRC]   per event: the relay's rounds of 50, claim
#       to commit (bench.event_cost relay-round), over 2,000 and 12,000 outbox rows;
#   bash bench/event_instructions.sh sink [SRC]    per mail: the SMTP sink (SRC's
#       shop.devtools.mailsink, under valgrind), sent 200 and 1,200 mails over one connection
#       by bench.mailsink_cost's client (a process valgrind does not follow).
# SRC is the src/ of the tree to count (default: ours). Each prints the difference of its two
# runs per unit, so start-up, imports and connecting cancel out. Needs the local RabbitMQ,
# and Redis (mail) or PostgreSQL (relay); the sink needs neither. Each run takes a minute or two
# under valgrind.
set -euo pipefail
what=${1:?mail or relay}
root=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${2:-$root/src}" && pwd)
python="$root/.venv/bin/python"
count() {
  local log
  log=$(mktemp)
  (cd "$root" && PYTHONPATH="$src:$root" valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file=/dev/null "$python" -m bench.event_cost "$@" > /dev/null 2> "$log")
  sed -n 's/.*I *refs: *//p' "$log" | tr -d ,
  rm -f "$log"
}
case $what in
  mail)
    mail=$(mktemp -d)
    port=$(cd "$root" && "$python" -c 'from shop.devtools.processes import free_port; print(free_port())')
    (cd "$root" && exec "$python" -m shop.devtools.mailsink "$mail" --port "$port") > /dev/null &
    sink=$!
    trap 'kill $sink 2> /dev/null; rm -rf "$mail"' EXIT
    for _ in $(seq 50); do
      (echo > "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
      sleep 0.2
    done
    options=(--smtp-port "$port" --redis redis://127.0.0.1:6379/0 --publish-apart)
    few=$(count consumer --messages 200 "${options[@]}")
    many=$(count consumer --messages 1200 "${options[@]}")
    echo "a mail, in the worker ($src): $(((many - few) / 1000)) instructions"
    ;;
  sink)
    sink_count() {
      local log mail port sink
      log=$(mktemp)
      mail=$(mktemp -d)
      port=$(cd "$root" && "$python" -c 'from shop.devtools.processes import free_port; print(free_port())')
      (cd "$root" && PYTHONPATH="$src:$root" exec valgrind --tool=cachegrind --cache-sim=no \
        --cachegrind-out-file=/dev/null "$python" -m shop.devtools.mailsink "$mail" \
        --port "$port" > /dev/null 2> "$log") &
      sink=$!
      for _ in $(seq 300); do
        (echo > "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
        sleep 0.2
      done
      (cd "$root" && "$python" -m bench.mailsink_cost --send-to "$port" --mails "$1")
      kill -INT $sink
      wait $sink || true
      sed -n 's/.*I *refs: *//p' "$log" | tr -d ,
      rm -rf "$log" "$mail"
    }
    few=$(sink_count 200)
    many=$(sink_count 1200)
    echo "a mail, in the sink ($src): $(((many - few) / 1000)) instructions"
    ;;
  relay)
    few=$(count relay-round --events 2000 --batch 50)
    many=$(count relay-round --events 12000 --batch 50)
    echo "an event, in the relay's rounds of 50 ($src): $(((many - few) / 10000)) instructions"
    ;;
  *)
    echo "usage: $0 mail|relay|sink [SRC]" >&2
    exit 2
    ;;
esac
