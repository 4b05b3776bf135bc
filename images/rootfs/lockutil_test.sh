#!/bin/bash
# lockutil_test: the lock parser and the drift comparison of lockutil.sh, on fixtures in testdata/.
set -uo pipefail
dir=$(dirname "$0")
[[ -f "$dir/lockutil.sh" ]] || dir=images/rootfs
lu=$dir/lockutil.sh
td=$dir/testdata
failures=0
pass() { echo "PASS: $1"; }
failt() { echo "FAIL: $1"; failures=$((failures + 1)); }
expect_eq() {  # NAME WANT GOT
  if [[ "$2" == "$3" ]]; then pass "$1"; else failt "$1"; echo "  want: $(printf '%q' "$2")"; echo "  got:  $(printf '%q' "$3")"; fi
}
expect_fail() {  # NAME PATTERN CMD...
  local name=$1 pat=$2; shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [[ $rc -ne 0 && "$err" == *"$pat"* ]]; then pass "$name"; else failt "$name"; echo "  rc=$rc stderr: $err"; fi
}

expect_eq "request suite" "bookworm" "$("$lu" request "$td/good.lock" suite)"
expect_eq "request include" "runc busybox-static" "$("$lu" request "$td/good.lock" include)"
expect_eq "request source (two lines)" $'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian-security bookworm-security main' "$("$lu" request "$td/good.lock" source)"
expect_eq "pins sorted" $'busybox-static 1:1.35.0-4+deb12u1+b1\ngone-pkg 1.0\nlibc6 2.36-9+deb12u14\nrunc 1.1.5+ds1-1+deb12u1' "$("$lu" pins "$td/good.lock")"
expect_eq "include-arg pins every locked package" "busybox-static=1:1.35.0-4+deb12u1+b1,gone-pkg=1.0,libc6=2.36-9+deb12u14,runc=1.1.5+ds1-1+deb12u1" "$("$lu" include-arg "$td/good.lock")"

# A lock with no pins yet requests the names only.
sed '/^[a-z]/d' "$td/good.lock" > "$TEST_TMPDIR/empty.lock"
expect_eq "include-arg without pins" "runc,busybox-static" "$("$lu" include-arg "$TEST_TMPDIR/empty.lock")"

expect_eq "compare: match gives no drift" "" "$("$lu" compare "$td/good.lock" "$td/matching.manifest")"
expect_eq "compare: moved/added/removed" $'removed gone-pkg 1.0 -\nmoved libc6 2.36-9+deb12u14 2.36-9+deb12u15\nadded new-pkg - 2.0' "$("$lu" compare "$td/good.lock" "$td/drifted.manifest")"

expect_eq "compare: empty lock, all added" $'added busybox-static - 1:1.35.0-4+deb12u1+b1\nadded gone-pkg - 1.0\nadded libc6 - 2.36-9+deb12u14\nadded runc - 1.1.5+ds1-1+deb12u1' "$("$lu" compare "$TEST_TMPDIR/empty.lock" "$td/matching.manifest")"

expect_fail "unknown request key" "unknown request key @flavour" "$lu" check "$td/bad_key.lock"
expect_fail "three fields on a pin line" 'expected "package version sha256 url"' "$lu" check "$td/bad_line.lock"
expect_fail "missing @suite" "missing @suite" "$lu" check "$td/missing_suite.lock"
expect_fail "package pinned twice" "pinned twice" "$lu" check "$td/dup_pin.lock"
expect_fail "non-integer epoch" "must be an integer" "$lu" check "$td/bad_epoch.lock"
expect_fail "missing lock file" "cannot read lock file" "$lu" check "$td/no-such.lock"
printf 'runc\n' > "$TEST_TMPDIR/bad.manifest"
expect_fail "malformed manifest" "malformed manifest" "$lu" compare "$td/good.lock" "$TEST_TMPDIR/bad.manifest"
expect_fail "bad usage" "usage:" "$lu" frobnicate

# "package version sha256 url" pins (the checked-in format).
sha=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
{ sed '/^[a-z]/d' "$td/good.lock"; echo "runc 1.1.5 $sha http://deb.debian.org/debian/pool/main/r/runc/runc_1.1.5_amd64.deb"; echo "libc6 2.36 $sha file:///srv/libc6_2.36_amd64.deb"; } > "$TEST_TMPDIR/hashed.lock"
expect_eq "debs: package version sha256 url, sorted" "libc6 2.36 $sha file:///srv/libc6_2.36_amd64.deb"$'\n'"runc 1.1.5 $sha http://deb.debian.org/debian/pool/main/r/runc/runc_1.1.5_amd64.deb" "$("$lu" debs "$TEST_TMPDIR/hashed.lock")"
expect_eq "pins of a hashed lock: package version" $'libc6 2.36\nrunc 1.1.5' "$("$lu" pins "$TEST_TMPDIR/hashed.lock")"
expect_fail "debs: a pin without sha256" "gone-pkg 1.0 has no sha256 and url" "$lu" debs "$td/good.lock"
{ sed '/^[a-z]/d' "$td/good.lock"; echo "runc 1.1.5 abc123 http://x/runc.deb"; } > "$TEST_TMPDIR/shortsha.lock"
expect_fail "short sha256" "sha256 must be 64 hex digits" "$lu" check "$TEST_TMPDIR/shortsha.lock"
{ sed '/^[a-z]/d' "$td/good.lock"; echo "runc 1.1.5 $sha ftp://x/runc.deb"; } > "$TEST_TMPDIR/badurl.lock"
expect_fail "url scheme" "url must be http(s):// or file://" "$lu" check "$TEST_TMPDIR/badurl.lock"

# The checked-in locks themselves must parse, and every pin has its sha256 and url.
for lock in "$dir"/*.lock; do
  if "$lu" check "$lock"; then pass "checked-in $(basename "$lock") parses"; else failt "checked-in $(basename "$lock") parses"; fi
  if "$lu" debs "$lock" > /dev/null; then pass "checked-in $(basename "$lock") has sha256+url pins"; else failt "checked-in $(basename "$lock") has sha256+url pins"; fi
done

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
