#!/usr/bin/env bash
# T6 of PERFORMANCE.md: Tally on a store of 1,000,000 organizations and 10,000,000 ledger entries.
# Seeds a store with `tally seed` into SCALE_DATA/seed (skipped when one is there), copies it to SCALE_DATA/run and
# serves the copy, so that every run measures the store the seed made, not one grown by earlier runs' consumptions
# (T2 adds about 150,000 entries a run, all to the 1,000 organizations the load uses). Then measures start-up
# (process start to the first /healthz answer), T1 and T2 with keys of 1,000 organizations, and the server's
# resident memory after the load. Compare with the small-data figures of bench/run.sh from the same session.
# Usage: bench/scale.sh   (SCALE_DATA=/tmp/tally-scale ORGANIZATIONS=1000000 ENTRIES=10 RUNS=3 DURATION=10)
set -euo pipefail
# The admin API's key of the benchmark's own throwaway servers (Tally refuses one shorter than 16 characters).
OPERATOR_KEY=bench-operator-key-not-a-secret
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${SCALE_DATA:-/tmp/tally-scale}
ORGANIZATIONS=${ORGANIZATIONS:-1000000}
ENTRIES=${ENTRIES:-10}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
BIN=$(mktemp -d /tmp/tally-scale-bin.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true' EXIT

dotnet publish "$ROOT/src/Tally" -c Release -o "$BIN" --nologo -v quiet >/dev/null
if [ ! -f "$DATA/seed/tally.db" ]; then
  echo "== seeding $ORGANIZATIONS organizations x $ENTRIES entries into $DATA/seed"
  mkdir -p "$DATA"
  dotnet "$BIN/tally.dll" seed --data-dir "$DATA/seed" --organizations "$ORGANIZATIONS" --entries-per-organization "$ENTRIES" \
    --keys-file "$DATA/keys.txt" --keys 1000
fi
echo "== copying the seeded store to $DATA/run"
rm -rf "$DATA/run"
cp -r "$DATA/seed" "$DATA/run"
# The copy's 8 GB are written back before anything is measured, not during the loads.
sync
ls -la "$DATA/run"

echo "== start-up"
START=$(date +%s%N)
(TALLY_OPERATOR_KEY="$OPERATOR_KEY" TALLY_RATE_LIMIT_PER_SECOND=1000000000 exec dotnet "$BIN/tally.dll" serve --urls http://127.0.0.1:5191 \
   --data-dir "$DATA/run" > "$DATA/serve.log" 2>&1) & PID=$!
until curl -sf http://127.0.0.1:5191/healthz >/dev/null 2>&1; do sleep 0.01; done
STARTUP_MS=$(( ($(date +%s%N) - START) / 1000000 ))
SERVER=$(pgrep -f "tally.dll serve --urls http://127.0.0.1:5191" | head -1)

export KEYS="$DATA/keys.txt"
# As in bench/run.sh: an unmeasured warm-up run first, then the median of RUNS.
WARMUP=${WARMUP:-10}
source "$ROOT/bench/lib.sh"
T1=$(wrk_median "$ROOT/bench/load/check-balance.lua" http://127.0.0.1:5191)
T1_CHAT=$(TALLY_PATH=/chat/Chatbot/GetMessageCreditsUsage wrk_median "$ROOT/bench/load/check-balance.lua" http://127.0.0.1:5191)
T2=$(wrk_median "$ROOT/bench/load/consume.lua" http://127.0.0.1:5191)
RSS_KIB=$(awk '/VmRSS/ { print $2 }' "/proc/$SERVER/status")
RSS_PEAK_KIB=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER/status")

echo
echo "== T6 ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ORGANIZATIONS organizations x $ENTRIES entries, runs=$RUNS x ${DURATION}s)"
printf '| figure | value | target |\n|---|---|---|\n'
printf '| start-up to first /healthz answer | %s ms | <= 2000 ms |\n' "$STARTUP_MS"
printf '| T1 check-balance req/s at scale | %.0f | within 15%% of the small-data figure |\n' "$T1"
printf '| T1 GetMessageCreditsUsage req/s at scale | %.0f | within 15%% of the small-data figure |\n' "$T1_CHAT"
printf '| T2 durable consumptions/s at scale | %.0f | within 15%% of the small-data figure |\n' "$T2"
printf '| server RSS after the load (peak) | %d MiB (%d MiB) | <= 1024 MiB |\n' $((RSS_KIB / 1024)) $((RSS_PEAK_KIB / 1024))
