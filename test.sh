#!/usr/bin/env bash
# Runs the whole test suite and ends with one plain line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
log=$(mktemp)
dotnet test Tally.slnx 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Sums the runner's per-assembly summaries ("Failed: 0, Passed: 42, ...").
passed=$(grep -Eo 'Passed: +[0-9]+' "$log" | awk '{ sum += $2 } END { print sum + 0 }')
failed=$(grep -Eo 'Failed: +[0-9]+' "$log" | awk '{ sum += $2 } END { print sum + 0 }')
rm -f "$log"
echo "${passed:-0} passed, ${failed:-0} failed"
if [ "$status" -ne 0 ] || [ "${failed:-0}" -ne 0 ] || [ "${passed:-0}" -eq 0 ]; then exit 1; fi
