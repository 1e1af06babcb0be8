#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every libFuzzer harness of a fuzz build (make fuzz-build) and records how many inputs each executed.
#   tests/fuzz/run_fuzzers.sh BUILD_DIR [harness ...]
# Environment: FUZZ_SECONDS (per harness, default 60), FUZZ_RUNS (stop after this many inputs; -1: time only),
# FUZZ_JOBS (harnesses run at once, default 1), FUZZ_MAX_LEN (default 8192), FUZZ_WORKERS (processes per
# harness, default 1; FUZZ_WORKERS_<name> overrides it for one harness: slow harnesses get more cores).
# Per harness the corpus grows in BUILD_DIR/corpus/<name> (seeded from the committed corpus, BUILD_DIR/seeds
# and the kept reproducers); crashes land in BUILD_DIR/findings/; BUILD_DIR/results.tsv gets one line per run:
# date, harness, executions, seconds, exec/s, corpus size, status.
set -euo pipefail
build=${1:?usage: run_fuzzers.sh BUILD_DIR [harness ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:--1}
jobs=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-8192}
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for bin in "$build"/tests/fuzz/fuzz_*; do harnesses+=("$(basename "$bin" | sed 's/^fuzz_//')"); done
fi
mkdir -p "$build/findings" "$build/logs"
results="$build/results.tsv"
[ -f "$results" ] || printf 'date\tharness\texecutions\tseconds\texec_per_s\tcorpus\tstatus\n' >"$results"
# The readers write time-index sidecars: keep them out of the user's cache.
export EVLOADER_CACHE_DIR="$build/cache"
# Harnesses that parse paths write their input to a temporary file: keep those in memory when possible.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=${FUZZ_TMPDIR:-/dev/shm}; fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
  local name=$1 bin="$build/tests/fuzz/fuzz_$1"
  local corpus="$build/corpus/$name" log="$build/logs/$name.log"
  mkdir -p "$corpus"
  local dict=()
  [ -f "$here/dict/$name.dict" ] && dict=(-dict="$here/dict/$name.dict")
  local extra=()
  for d in "$here/corpus/$name" "$build/seeds/$name" "$here/regressions/$name"; do [ -d "$d" ] && extra+=("$d"); done
  local workers_var="FUZZ_WORKERS_$name"
  local workers=${!workers_var:-${FUZZ_WORKERS:-1}}
  local start status=ok
  start=$(date +%s)
  # Several processes on one harness share its corpus folder; each counts its own executions.
  local w pids=()
  for ((w = 0; w < workers; w++)); do
    "$bin" "${dict[@]}" -max_len="$max_len" -max_total_time="$seconds" -runs="$runs" -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 -seed=$((w + 1)) \
      -artifact_prefix="$build/findings/$name-" "$corpus" "${extra[@]}" >"$log.$w" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=finding; done
  cat "$log".* >"$log" && rm -f "$log".*
  local took=$(( $(date +%s) - start ))
  local execs
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | awk '{s += $1} END {print s + 0}')
  execs=${execs:-0}
  local files
  files=$(find "$corpus" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$execs" "$took" \
    "$(( execs / (took > 0 ? took : 1) ))" "$files" "$status" >>"$results"
  echo "fuzz_$name: $execs inputs in ${took}s, corpus $files files, $status (log: $log)"
}

failed=0
pids=()
for name in "${harnesses[@]}"; do
  run_one "$name" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}" || failed=1; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if grep -q 'finding$' <(tail -n ${#harnesses[@]} "$results"); then
  echo "findings: see $build/findings/ and $build/logs/"; exit 1
fi
exit $failed
