#!/usr/bin/env bash
# The benchmark harness of PERFORMANCE.md: builds Release, starts every anchor and Tally on loopback,
# loads each with the same generator and settings, stops everything, and prints one table of figures,
# anchors, ratios and targets. Usage: bench/run.sh   (RUNS=3 DURATION=10 CONNECTIONS=64 by default)
set -euo pipefail
# The admin API's key of the benchmark's own throwaway servers (Tally refuses one shorter than 16 characters).
OPERATOR_KEY=bench-operator-key-not-a-secret
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
ORGANIZATIONS=${ORGANIZATIONS:-1000}
WORK=$(mktemp -d /tmp/tally-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PG_DATA=""
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
for tool in wrk redis-server redis-benchmark python3; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install wrk redis-server python3)"; exit 1; }; done
[ -n "$PG_BIN" ] || { echo "needs PostgreSQL (apt-get install postgresql)"; exit 1; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "$PG_DATA" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Fails if a node answered any consumption as a replay: every request of the loads carries a new idempotency key,
# so a replay would be a request counted without a durable write (it happened: see bench/RESULTS.md, 10:11Z).
no_replays() {
  local replayed; replayed=$(curl -sf "$1/metrics" | awk -F' ' '/^tally_consumptions_total\{outcome="replayed"\}/ { print $2 }')
  [ "${replayed:-0}" = 0 ] || { echo "$1 answered $replayed consumptions as replays" >&2; exit 1; }
}
wait_http() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1"; exit 1; }
WARMUP=${WARMUP:-10}
# median, wrk_once, wrk_median
source "$ROOT/bench/lib.sh"

echo "== building Release into $WORK"
dotnet publish "$ROOT/src/Tally" -c Release -o "$WORK/tally" --nologo -v quiet >/dev/null
dotnet publish "$ROOT/bench/Tally.Hello" -c Release -o "$WORK/hello" --nologo -v quiet >/dev/null
dotnet publish "$ROOT/bench/Tally.Bench" -c Release -o "$WORK/bench" --nologo -v quiet >/dev/null

echo "== starting the hello anchor, Tally on SQLite, Redis and PostgreSQL"
(cd "$WORK" && exec dotnet hello/tally-hello.dll --urls http://127.0.0.1:5180) & PIDS+=($!)
(cd "$WORK" && TALLY_OPERATOR_KEY="$OPERATOR_KEY" TALLY_RATE_LIMIT_PER_SECOND=1000000000 exec dotnet tally/tally.dll serve \
   --urls http://127.0.0.1:5181 --data-dir "$WORK/sqlite" > "$WORK/tally-sqlite.log" 2>&1) & PIDS+=($!)
mkdir -p "$WORK/redis"
redis-server --port 5182 --dir "$WORK/redis" --appendonly yes --appendfsync always --save '' --daemonize no > "$WORK/redis.log" 2>&1 & PIDS+=($!)
PG_DATA="$WORK/pg"
mkdir -p "$PG_DATA" && chown postgres "$PG_DATA"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w \
  -o "-p 5183 -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
wait_http http://127.0.0.1:5180/hello
wait_http http://127.0.0.1:5181/healthz

echo "== seeding $ORGANIZATIONS organizations"
python3 "$ROOT/bench/load/seed.py" http://127.0.0.1:5181 "$OPERATOR_KEY" "$ORGANIZATIONS" "$WORK/keys.txt"

echo "== anchors"
FSYNC_OUT=$("$PG_BIN/pg_test_fsync" -s 2 -f "$WORK/fsync.tmp")
# The first "fdatasync" row: one 8 kB write and its sync.
FSYNC_LINE=$(awk '$1 == "fdatasync" && $3 == "ops/sec" { print; exit }' <<<"$FSYNC_OUT")
FSYNC_OPS=$(awk '{ print $(NF-3) }' <<<"$FSYNC_LINE")
FSYNC_US=$(awk '{ print $(NF-1) }' <<<"$FSYNC_LINE")
SHA=$(redis-cli -p 5182 SCRIPT LOAD "$(cat "$ROOT/bench/load/debit.lua")")
redis-cli -p 5182 SET balance 1000000000000000 >/dev/null
REDIS=$(for _ in $(seq 1 "$RUNS"); do
  redis-benchmark -p 5182 -c 50 -n 200000 -q evalsha "$SHA" 1 balance 1 | tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($i == "requests") print $(i-1) }' | tail -1
done | median)
runuser -u postgres -- "$PG_BIN/pgbench" -h 127.0.0.1 -p 5183 -U postgres -i -s 10 -q postgres >/dev/null 2>&1
PGBENCH=$(for _ in $(seq 1 "$RUNS"); do
  runuser -u postgres -- "$PG_BIN/pgbench" -h 127.0.0.1 -p 5183 -U postgres -N -c "$CONNECTIONS" -j 2 -T "$DURATION" postgres 2>/dev/null \
    | awk '/^tps/ { print $3 }'
done | median)

echo "== Tally on SQLite"
export KEYS="$WORK/keys.txt"
# T1 and its anchor are measured in turns (hello, check-balance, GetMessageCreditsUsage, RUNS times) after a
# warm-up of each, so that the host's drift over minutes falls on both sides of the ratio alike.
wrk_once "${WARMUP}s" "$ROOT/bench/load/hello.lua" http://127.0.0.1:5180/hello >/dev/null
wrk_once "${WARMUP}s" "$ROOT/bench/load/check-balance.lua" http://127.0.0.1:5181 >/dev/null
TALLY_PATH=/chat/Chatbot/GetMessageCreditsUsage wrk_once "${WARMUP}s" "$ROOT/bench/load/check-balance.lua" http://127.0.0.1:5181 >/dev/null
: > "$WORK/t1-hello.txt"; : > "$WORK/t1-agents.txt"; : > "$WORK/t1-chat.txt"
for _ in $(seq 1 "$RUNS"); do
  wrk_once "${DURATION}s" "$ROOT/bench/load/hello.lua" http://127.0.0.1:5180/hello >> "$WORK/t1-hello.txt"
  wrk_once "${DURATION}s" "$ROOT/bench/load/check-balance.lua" http://127.0.0.1:5181 >> "$WORK/t1-agents.txt"
  TALLY_PATH=/chat/Chatbot/GetMessageCreditsUsage wrk_once "${DURATION}s" "$ROOT/bench/load/check-balance.lua" http://127.0.0.1:5181 >> "$WORK/t1-chat.txt"
done
HELLO=$(median < "$WORK/t1-hello.txt")
T1_AGENTS=$(median < "$WORK/t1-agents.txt")
T1_CHAT=$(median < "$WORK/t1-chat.txt")
echo "T1 runs: hello $(paste -sd' ' "$WORK/t1-hello.txt"); check-balance $(paste -sd' ' "$WORK/t1-agents.txt"); GetMessageCreditsUsage $(paste -sd' ' "$WORK/t1-chat.txt")"
T2=$(wrk_median "$ROOT/bench/load/consume.lua" http://127.0.0.1:5181)
# T5, like every figure, is the median of RUNS runs.
LATENCY_ONE=$(for _ in $(seq 1 "$RUNS"); do
  wrk -t1 -c1 -d"${DURATION}s" -s "$ROOT/bench/load/consume.lua" http://127.0.0.1:5181 | awk -F'[ =]' '/^p50_us/ { print $2 }'
done | median)
HALF_DELAY_MS=$(awk -v peak="$T2" -v c="$CONNECTIONS" 'BEGIN { printf "%d", c * 1000 / (peak / 2) }')
P99_HALF=$(for _ in $(seq 1 "$RUNS"); do
  DELAY_MS=$HALF_DELAY_MS wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/bench/load/consume.lua" http://127.0.0.1:5181 | awk -F'[ =]' '/^p50_us/ { print $4 }'
done | median)
no_replays http://127.0.0.1:5181
curl -sf http://127.0.0.1:5181/v1/admin/verify -H "Authorization: Bearer $OPERATOR_KEY" | grep -q '"clean":true' || { echo "verify found differences after the load"; exit 1; }

echo "== Tally on PostgreSQL: one node (T3), then three nodes (T7)"
runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p 5183 -U postgres tally
PG_CONNECTION="Host=127.0.0.1;Port=5183;Username=postgres;Database=tally;Maximum Pool Size=20"
start_pg_node() {
  (cd "$WORK" && TALLY_OPERATOR_KEY="$OPERATOR_KEY" TALLY_RATE_LIMIT_PER_SECOND=1000000000 exec dotnet tally/tally.dll serve \
     --urls "http://127.0.0.1:$1" --store postgres --connection "$PG_CONNECTION" > "$WORK/tally-pg-$1.log" 2>&1) & PIDS+=($!)
  wait_http "http://127.0.0.1:$1/healthz"
}
start_pg_node 5184
python3 "$ROOT/bench/load/seed.py" http://127.0.0.1:5184 "$OPERATOR_KEY" "$ORGANIZATIONS" "$WORK/keys-pg.txt"
export KEYS="$WORK/keys-pg.txt"
T3=$(wrk_median "$ROOT/bench/load/consume.lua" http://127.0.0.1:5184)
start_pg_node 5185
start_pg_node 5186
# One round of T7: three generators at once, one per node, splitting the same connection count; prints their sum.
t7_round() {
  local generators=()
  for port in 5184 5185 5186; do
    wrk -t1 -c$((CONNECTIONS / 3)) -d"$1s" -s "$ROOT/bench/load/consume.lua" "http://127.0.0.1:$port" > "$WORK/wrk-$port.txt" &
    generators+=($!)
  done
  # Only the generators: a bare wait in the script's own shell would also wait for the servers started above.
  wait "${generators[@]}"
  for port in 5184 5185 5186; do grep -q '^non2xx=0$' "$WORK/wrk-$port.txt" || { echo "non-2xx on node $port" >&2; cat "$WORK/wrk-$port.txt" >&2; exit 1; }; done
  cat "$WORK"/wrk-518[456].txt | awk '/^Requests\/sec/ { sum += $2 } END { print sum }'
}
# The two new nodes warm up as node 5184 did before T3: each alone, then all three together, unmeasured. Without
# this T7 measured two cold processes tiering up their code while sharing two cores with the third and PostgreSQL:
# 1,200-2,300/s over the first 20 s, 3,000-3,600/s once warm (bench/RESULTS.md, 00:08Z).
for port in 5185 5186; do wrk_once "${WARMUP}s" "$ROOT/bench/load/consume.lua" "http://127.0.0.1:$port" >/dev/null; done
t7_round "$WARMUP" >/dev/null
T7=$(for _ in $(seq 1 "$RUNS"); do t7_round "$DURATION"; done | median)
for port in 5184 5185 5186; do no_replays "http://127.0.0.1:$port"; done
curl -sf http://127.0.0.1:5184/v1/admin/verify -H "Authorization: Bearer $OPERATOR_KEY" | grep -q '"clean":true' || { echo "verify found differences on PostgreSQL"; exit 1; }

echo "== the engine alone (T4)"
T4=$(for _ in $(seq 1 "$RUNS"); do
  (cd "$WORK" && dotnet bench/Tally.Bench.dll throughput "$DURATION" 1024 "$ORGANIZATIONS") | awk -F'[ =]' '/^consumptions_per_second/ { print $2 }'
done | median)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, runs=$RUNS x ${DURATION}s, $CONNECTIONS connections, $ORGANIZATIONS organizations)"
printf '| id | figure | value | anchor | anchor value | ratio | target |\n|---|---|---|---|---|---|---|\n'
printf '| T1 | check-balance req/s | %.0f | hello JSON req/s | %.0f | %s | >= 0.8 |\n' "$T1_AGENTS" "$HELLO" "$(ratio "$T1_AGENTS" "$HELLO")"
printf '| T1 | GetMessageCreditsUsage req/s | %.0f | hello JSON req/s | %.0f | %s | >= 0.8 |\n' "$T1_CHAT" "$HELLO" "$(ratio "$T1_CHAT" "$HELLO")"
printf '| T2 | durable consumptions/s (SQLite) | %.0f | Redis Lua debit, appendfsync always, ops/s | %.0f | %s | >= 1.0 |\n' "$T2" "$REDIS" "$(ratio "$T2" "$REDIS")"
printf '| T4 | engine alone, durable SQLite, consumptions/s | %.0f | target | 200000 | %s | >= 1.0 |\n' "$T4" "$(ratio "$T4" 200000)"
printf '| T5 | p50 latency, one client, us | %s | fdatasync latency + 500 us | %.0f | %s | <= 1.0 |\n' "$LATENCY_ONE" "$(awk -v f="$FSYNC_US" 'BEGIN { print f + 500 }')" "$(ratio "$LATENCY_ONE" "$(awk -v f="$FSYNC_US" 'BEGIN { print f + 500 }')")"
printf '| T5 | p99 latency at half of peak, us | %s | 5 ms | 5000 | %s | <= 1.0 |\n' "$P99_HALF" "$(ratio "$P99_HALF" 5000)"
printf '| T3 | durable consumptions/s (PostgreSQL, one node) | %.0f | pgbench -N tps, same clients | %.0f | %s | >= 3.0 |\n' "$T3" "$PGBENCH" "$(ratio "$T3" "$PGBENCH")"
printf '| T7 | durable consumptions/s, three nodes on one PostgreSQL | %.0f | one node (T3) | %.0f | %s | >= 1.5 |\n' "$T7" "$T3" "$(ratio "$T7" "$T3")"
printf '| anchor | pgbench -N tps, %s clients | %.0f | | | | |\n' "$CONNECTIONS" "$PGBENCH"
printf '| anchor | fdatasync ops/s (pg_test_fsync) | %s | | | | |\n' "$FSYNC_OPS"
