#!/usr/bin/env bash
# A/B of two revisions of Tally on a noisy machine: builds both (Release), seeds one SQLite store of 1,000
# organizations, then compares the builds on copies of that store, ROUNDS times, each loaded by the harness's own
# Lua script after a short warm-up. Two ways:
#   alternating (default): one build at a time, a then b; prints requests a second, the server's CPU time per
#     request and the script's latency line for every run, so that a change is judged against its rounds' spread.
#   PAIRED=1: both builds served at once and loaded at once (wrk -t1 each), so that the host's noise falls on
#     both alike; prints both rates and b/a per round (count the first round as warm-up).
# Usage: bench/ab.sh <revision-a> <revision-b> [check-balance|consume]
#        (ROUNDS=3 DURATION=8 CONNECTIONS=64 THREADS=2 by default; CONNECTIONS=1 THREADS=1 for T5;
#         PAIRED=1 ROUNDS=5 CONNECTIONS=32 for the paired comparisons in bench/RESULTS.md)
set -euo pipefail
# The admin API's key of the benchmark's own throwaway servers (Tally refuses one shorter than 16 characters).
OPERATOR_KEY=bench-operator-key-not-a-secret
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: bench/ab.sh <revision-a> <revision-b> [check-balance|consume]"; exit 2; }
SCRIPT=${3:-check-balance}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PAIRED=${PAIRED:-0}
WORK=$(mktemp -d /tmp/tally-ab.XXXXXX)
declare -A PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for side in a b; do git -C "$ROOT" worktree remove --force "$WORK/source-$side" 2>/dev/null || true; done
}
trap cleanup EXIT

revision() { [ "$1" = a ] && echo "$REVISION_A" || echo "$REVISION_B"; }
REVISION_A=$1
REVISION_B=$2
for side in a b; do
  git -C "$ROOT" worktree add --detach --force "$WORK/source-$side" "$(revision "$side")" >/dev/null 2>&1
  dotnet publish "$WORK/source-$side/src/Tally" -c Release -o "$WORK/build-$side" --nologo -v quiet >/dev/null
done

port() { [ "$1" = a ] && echo 5193 || echo 5194; }
start() {
  (TALLY_OPERATOR_KEY="$OPERATOR_KEY" TALLY_RATE_LIMIT_PER_SECOND=1000000000 exec dotnet "$WORK/build-$1/tally.dll" serve \
     --urls "http://127.0.0.1:$(port "$1")" --data-dir "$2" > "$WORK/server-$1.log" 2>&1) & PIDS[$1]=$!
  until curl -sf "http://127.0.0.1:$(port "$1")/healthz" >/dev/null 2>&1; do sleep 0.1; done
}
stop() { kill "${PIDS[$1]}"; wait "${PIDS[$1]}" 2>/dev/null || true; unset "PIDS[$1]"; }
load() { wrk -t"$1" -c"$CONNECTIONS" -d"$2" -s "$ROOT/bench/load/$SCRIPT.lua" "http://127.0.0.1:$(port "$3")"; }

# One store, seeded by the first build; each run starts from a copy of it, so both builds see the same data.
start a "$WORK/seeded"
python3 "$ROOT/bench/load/seed.py" "http://127.0.0.1:$(port a)" "$OPERATOR_KEY" 1000 "$WORK/keys.txt" >/dev/null
stop a
export KEYS="$WORK/keys.txt"

if [ "$PAIRED" = 1 ]; then
  for side in a b; do cp -r "$WORK/seeded" "$WORK/run-$side"; start "$side" "$WORK/run-$side"; done
  for round in $(seq 1 "$ROUNDS"); do
    load 1 "${DURATION}s" a > "$WORK/a.txt" & load_a=$!
    load 1 "${DURATION}s" b > "$WORK/b.txt"
    wait "$load_a"
    a=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/a.txt"); b=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/b.txt")
    printf 'round %d: a (%s) %s b (%s) %s ratio b/a %s, %s %s\n' "$round" "$REVISION_A" "$a" "$REVISION_B" "$b" \
      "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')" "$(grep '^non2xx' "$WORK/a.txt")" "$(grep '^non2xx' "$WORK/b.txt")"
  done
  exit 0
fi

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for round in $(seq 1 "$ROUNDS"); do
  for side in a b; do
    rm -rf "$WORK/run" && cp -r "$WORK/seeded" "$WORK/run"
    start "$side" "$WORK/run"
    server=$(pgrep -f "build-$side/tally.dll serve" | head -1)
    load "$THREADS" 2s "$side" >/dev/null
    before=$(cpu_ticks "$server")
    out=$(load "$THREADS" "${DURATION}s" "$side")
    after=$(cpu_ticks "$server")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    printf 'round %d %s (%s): %s req/s, %s us of server CPU per request, %s, %s\n' "$round" "$side" "$(revision "$side")" \
      "$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")" \
      "$(awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1000000 / hz / n }')" \
      "$(grep '^non2xx' <<<"$out")" "$(grep '^p50_us' <<<"$out")"
    stop "$side"
  done
done
