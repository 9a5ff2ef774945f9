#!/usr/bin/env bash
# A/B of two revisions of Tally on a noisy machine: builds both (Release), seeds one SQLite store of 1,000
# organizations, then alternates the two builds on copies of that store, ROUNDS times, each loaded by the
# harness's own Lua script after a short warm-up. Prints requests a second, the server's CPU time per request,
# and the script's latency line for every run, so that a change is judged against the spread of its own rounds.
# Usage: bench/ab.sh <revision-a> <revision-b> [check-balance|consume]
#        (ROUNDS=3 DURATION=8 CONNECTIONS=64 THREADS=2 DELAY_MS= by default; CONNECTIONS=1 THREADS=1 for T5)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: bench/ab.sh <revision-a> <revision-b> [check-balance|consume]"; exit 2; }
SCRIPT=${3:-check-balance}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORK=$(mktemp -d /tmp/tally-ab.XXXXXX)
PORT=5193
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
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
     --urls "http://127.0.0.1:$PORT" --data-dir "$2" > "$WORK/server-$1.log" 2>&1) & PID=$!
  until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.1; done
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

# One store, seeded by the first build; each run starts from a copy of it, so both builds see the same data.
start a "$WORK/seeded"
python3 "$ROOT/bench/load/seed.py" "http://127.0.0.1:$PORT" bench 1000 "$WORK/keys.txt" >/dev/null
stop
export KEYS="$WORK/keys.txt"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for round in $(seq 1 "$ROUNDS"); do
  for side in a b; do
    rm -rf "$WORK/run" && cp -r "$WORK/seeded" "$WORK/run"
    start "$side" "$WORK/run"
    server=$(pgrep -f "build-$side/tally.dll serve" | head -1)
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$ROOT/bench/load/$SCRIPT.lua" "http://127.0.0.1:$PORT" >/dev/null
    before=$(cpu_ticks "$server")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/bench/load/$SCRIPT.lua" "http://127.0.0.1:$PORT")
    after=$(cpu_ticks "$server")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    printf 'round %d %s (%s): %s req/s, %s us of server CPU per request, %s, %s\n' "$round" "$side" \
      "$([ "$side" = a ] && echo "$1" || echo "$2")" "$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")" \
      "$(awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1000000 / hz / n }')" \
      "$(grep '^non2xx' <<<"$out")" "$(grep '^p50_us' <<<"$out")"
    stop
  done
done
