#!/usr/bin/env bash
# gate_test: the regression gate end to end on real measurements (micro suite, callgrind
# counts). Two runs of the same build must pass `compare`; a deliberately slowed run (the
# runner's --slowdown test flag: the cpio writer runs twice per operation) must fail it and
# name the figure; so must the archive writer built with -O0 (compilation_mode dbg).
# Also: compare's usage errors.
# Args: runner compare o0_archive_benchmark
set -euo pipefail
runner=$1 compare=$2 o0=$3
t=$TEST_TMPDIR
common=(--filter='^archive/(cpio_newc|plan)/' --repetitions=2 --min_time=0.01 --baseline=)

command -v valgrind >/dev/null || { echo "valgrind missing (tools/setup installs it)"; exit 1; }
"$runner" "${common[@]}" --out="$t/a.json" >"$t/a.log" 2>&1 || { cat "$t/a.log"; exit 1; }
"$runner" "${common[@]}" --out="$t/b.json" >"$t/b.log" 2>&1 || { cat "$t/b.log"; exit 1; }
"$runner" "${common[@]}" --slowdown='cpio_newc/' --out="$t/c.json" >"$t/c.log" 2>&1 || { cat "$t/c.log"; exit 1; }
"$runner" "${common[@]}" --micro="archive=$o0" --out="$t/d.json" >"$t/d.log" 2>&1 || { cat "$t/d.log"; exit 1; }
grep -q '"archive/cpio_newc/files:512/instructions"' "$t/a.json" || { echo "no instruction count figure"; cat "$t/a.log"; exit 1; }

echo "== same build twice: must pass"
"$compare" "$t/a.json" "$t/b.json" | tee "$t/ab.txt"
grep -q "no regression" "$t/ab.txt"

echo "== slowed cpio writer: must fail naming the figure"
set +e
"$compare" "$t/a.json" "$t/c.json" | tee "$t/ac.txt"
rc=${PIPESTATUS[0]}
set -e
[[ $rc -eq 1 ]] || { echo "compare exit $rc, want 1"; exit 1; }
grep -E '^archive/cpio_newc/files:512/instructions .*WORSE' "$t/ac.txt"
grep -q "regression(s): .*archive/cpio_newc/files:512/instructions" "$t/ac.txt"
# The unslowed operation is not blamed (its count may move slightly: the flag changes the
# process's heap layout).
grep -E '^archive/plan/files:512/instructions ' "$t/ac.txt" | grep -vq WORSE

echo "== -O0 build of the archive writer: must fail naming the figures"
set +e
"$compare" "$t/a.json" "$t/d.json" | tee "$t/ad.txt"
rc=${PIPESTATUS[0]}
set -e
[[ $rc -eq 1 ]] || { echo "compare exit $rc, want 1"; exit 1; }
grep -E '^archive/cpio_newc/files:512/instructions .*WORSE' "$t/ad.txt"
grep -E '^archive/plan/files:512/instructions .*WORSE' "$t/ad.txt"

echo "== usage errors: exit 2"
set +e
"$compare" "$t/a.json"; [[ $? -eq 2 ]] || { echo "one argument accepted"; exit 1; }
"$compare" "$t/a.json" /nonexistent.json; [[ $? -eq 2 ]] || { echo "missing file accepted"; exit 1; }
echo '{"figures": [{"name": 1}]}' >"$t/bad.json"
"$compare" "$t/a.json" "$t/bad.json"; [[ $? -eq 2 ]] || { echo "malformed figure accepted"; exit 1; }
"$runner" --repetitions=0; [[ $? -eq 2 ]] || { echo "runner accepted --repetitions=0"; exit 1; }
"$compare" --no_such_flag "$t/a.json" "$t/b.json" 2>"$t/flag.err"; [[ $? -ne 0 ]] && grep -q no_such_flag "$t/flag.err" ||
  { echo "compare accepted or did not name an unknown flag"; exit 1; }
[[ "$("$compare" --help 2>&1)" == *--plot* ]] || { echo "compare --help does not list --plot"; exit 1; }
set -e
echo PASS
