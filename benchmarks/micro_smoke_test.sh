#!/usr/bin/env bash
# micro_smoke_test: each micro benchmark binary runs one short repetition of every benchmark
# (Google Benchmark, JSON checked for errors) and its count mode (without valgrind) cleanly.
# Args: the binaries.
set -euo pipefail
fail=0
for bin in "$@"; do
  name=$(basename "$bin")
  out="$TEST_TMPDIR/$name.json"
  if ! "$bin" --benchmark_min_time=0.001 --benchmark_repetitions=1 \
       --benchmark_out_format=json --benchmark_out="$out" >"$TEST_TMPDIR/$name.log" 2>&1; then
    echo "FAIL $name: exit $?"; cat "$TEST_TMPDIR/$name.log"; fail=1; continue
  fi
  n=$(grep -c '"run_type": "iteration"' "$out" || true)
  if [[ "$n" -lt 1 ]]; then echo "FAIL $name: no benchmark ran"; fail=1; fi
  if grep -q '"error_occurred": true' "$out"; then
    echo "FAIL $name: a benchmark reported an error:"; grep -A1 error_message "$out"; fail=1
  fi
  if ! "$bin" --kiln_counts >"$TEST_TMPDIR/$name.counts" 2>&1; then
    echo "FAIL $name --kiln_counts:"; cat "$TEST_TMPDIR/$name.counts"; fail=1
  fi
  c=$(grep -c '"bytes_out"' "$TEST_TMPDIR/$name.counts" || true)
  if [[ "$c" -ne "$n" ]]; then echo "FAIL $name: $c count cases for $n benchmarks"; fail=1; fi
  if "$bin" --kiln_repetitions=0 >/dev/null 2>&1; then echo "FAIL $name: accepted --kiln_repetitions=0"; fail=1; fi
  echo "ok $name: $n benchmarks, $c count cases"
done
exit $fail
