#!/usr/bin/env bash
# Paired A/B of two revisions of Tally on a noisy machine: both builds are served at once, on copies of one
# seeded SQLite store of 1,000 organizations, and loaded at once by two wrk processes, so that the host's noise
# falls on both alike. Prints both rates and their ratio b/a per round; count the first round as warm-up.
# Usage: bench/pair.sh <revision-a> <revision-b> [check-balance|consume]   (ROUNDS=5 DURATION=8 CONNECTIONS=32)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: bench/pair.sh <revision-a> <revision-b> [check-balance|consume]"; exit 2; }
SCRIPT=${3:-check-balance}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
WORK=$(mktemp -d /tmp/tally-pair.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for side in a b; do git -C "$ROOT" worktree remove --force "$WORK/source-$side" 2>/dev/null || true; done
}
trap cleanup EXIT

for side in a b; do
  revision=$([ "$side" = a ] && echo "$1" || echo "$2")
  git -C "$ROOT" worktree add --detach --force "$WORK/source-$side" "$revision" >/dev/null 2>&1
  dotnet publish "$WORK/source-$side/src/Tally" -c Release -o "$WORK/build-$side" --nologo -v quiet >/dev/null
done

start() {
  (TALLY_OPERATOR_KEY=bench TALLY_RATE_LIMIT_PER_SECOND=1000000000 exec dotnet "$WORK/build-$1/tally.dll" serve \
     --urls "http://127.0.0.1:$2" --data-dir "$3" > "$WORK/server-$1.log" 2>&1) & PIDS+=($!)
  until curl -sf "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; do sleep 0.1; done
}

start a 5301 "$WORK/seeded"
python3 "$ROOT/bench/load/seed.py" http://127.0.0.1:5301 bench 1000 "$WORK/keys.txt" >/dev/null
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true; PIDS=()
cp -r "$WORK/seeded" "$WORK/data-a"; cp -r "$WORK/seeded" "$WORK/data-b"
start a 5301 "$WORK/data-a"
start b 5302 "$WORK/data-b"
export KEYS="$WORK/keys.txt"

for round in $(seq 1 "$ROUNDS"); do
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/bench/load/$SCRIPT.lua" http://127.0.0.1:5301 > "$WORK/a.txt" & load_a=$!
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/bench/load/$SCRIPT.lua" http://127.0.0.1:5302 > "$WORK/b.txt"
  wait "$load_a"
  a=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/a.txt"); b=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/b.txt")
  printf 'round %d: a %s b %s ratio %s, %s %s\n' "$round" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')" \
    "$(grep '^non2xx' "$WORK/a.txt")" "$(grep '^non2xx' "$WORK/b.txt")"
done
