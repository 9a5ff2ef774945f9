# Shared by bench/run.sh and bench/scale.sh (sourced): the medians and wrk runs of the harness.
# Needs CONNECTIONS, RUNS, DURATION and WARMUP set by the caller.

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One wrk run of the given duration; prints requests per second, and fails if any response was not 2xx.
wrk_once() {
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"$1" -s "$2" "$3")
  grep -q '^non2xx=0$' <<<"$out" || { echo "non-2xx responses in $3:" >&2; echo "$out" >&2; exit 1; }
  awk '/^Requests\/sec/ { print $2 }' <<<"$out"
}

# Runs wrk RUNS times and prints the median. A first, unmeasured run of WARMUP seconds lets the JIT finish tiering
# up the code the load runs (anchors and Tally alike): with both cores busy, tier-up took longer than 3 s (perf
# still showed instrumented code in Tally's request path).
wrk_median() {
  wrk_once "${WARMUP}s" "$1" "$2" >/dev/null
  for _ in $(seq 1 "$RUNS"); do wrk_once "${DURATION}s" "$1" "$2"; done | median
}
