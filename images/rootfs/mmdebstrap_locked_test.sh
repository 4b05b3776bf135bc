#!/bin/bash
# mmdebstrap_locked_test: the drift policy of mmdebstrap_locked.sh, hermetically, with a fake
# mmdebstrap on PATH that "serves" the versions in a fake archive file:
#   - all pins served        -> pinned build, lock_status match, no WARNING
#   - one pin expired        -> WARNING naming it, retry without that pin, drift recorded
#   - expired + KILN_STRICT_LOCK=1 -> exit 1, no tar
#   - new @include, no pin   -> "added" drift; --unpinned (refresh) -> no warning
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
[[ -f "$dir/mmdebstrap_locked.sh" ]] || dir=$PWD/images/rootfs
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0
pass() { echo "PASS: $1"; }
failt() { echo "FAIL: $1"; failures=$((failures + 1)); }
expect_has() { grep -qF -- "$3" <<< "$2" && pass "$1" || { failt "$1"; echo "  missing: $3"; echo "$2" | sed 's/^/  | /'; }; }
expect_not() { grep -qF -- "$3" <<< "$2" && { failt "$1"; echo "  unexpected: $3"; } || pass "$1"; }

mkdir -p "$tmp/bin"
cat > "$tmp/bin/mmdebstrap" <<'FAKE'
#!/bin/bash
# fake mmdebstrap: installs --include packages at the versions in $FAKE_ARCHIVE.
[[ "$1" == --version ]] && { echo "mmdebstrap 0.0-fake"; exit 0; }
include= hook= pos=()
for a in "$@"; do
  case "$a" in
    --include=*) include=${a#--include=} ;;
    --customize-hook=*) hook=${a#--customize-hook=} ;;
    --*) ;;
    *) pos+=("$a") ;;
  esac
done
out=${pos[1]}
root=$(mktemp -d); mkdir -p "$root/var/lib/dpkg"; : > "$root/var/lib/dpkg/status"
IFS=, read -ra items <<< "$include"
for it in "${items[@]}"; do
  p=${it%%=*}; want=; [[ "$it" == *=* ]] && want=${it#*=}
  have=$(awk -v p="$p" '$1 == p { print $2 }' "$FAKE_ARCHIVE")
  [[ -n "$have" ]] || { echo "E: Unable to locate package $p"; exit 100; }
  [[ -z "$want" || "$want" == "$have" ]] || { echo "E: Version '$want' for '$p' was not found"; exit 100; }
  printf 'Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: %s\n\n' "$p" "$have" >> "$root/var/lib/dpkg/status"
done
sh -c "$hook" exec "$root" || exit 1
tar -C "$root" -cf "$out" .
rm -rf "$root"
FAKE
chmod +x "$tmp/bin/mmdebstrap"
export PATH=$tmp/bin:$PATH FAKE_ARCHIVE=$tmp/archive

cat > "$tmp/base.lock" <<'L'
@suite bookworm
@variant essential
@include runc
@source deb http://deb.debian.org/debian bookworm main
@source_date_epoch 1700000000
libc6 2.36-9+deb12u14
runc 1.1.5+ds1-1+deb12u1
L
run() {  # LOCK OUTDIR [ENV...] -> sets out (stderr) and rc
  local lock=$1 o=$2; shift 2
  out=$(env "$@" "$dir/mmdebstrap_locked.sh" "$lock" "$o" 2>&1); rc=$?
}

# 1. Everything served at the locked versions.
printf 'libc6 2.36-9+deb12u14\nrunc 1.1.5+ds1-1+deb12u1\n' > "$tmp/archive"
run "$tmp/base.lock" "$tmp/o1"
[[ $rc -eq 0 ]] && pass "match: exit 0" || failt "match: exit 0 (got $rc): $out"
expect_not "match: no WARNING" "$out" "WARNING"
expect_has "match: provenance status" "$(cat "$tmp/o1/provenance.txt")" "lock_status match"
expect_has "match: pinned attempt" "$(cat "$tmp/o1/provenance.txt")" "attempt pinned"
[[ -s "$tmp/o1/rootfs.tar" && ! -s "$tmp/o1/drift.txt" ]] && pass "match: tar, empty drift" || failt "match: tar, empty drift"

# 2. libc6 moved in the archive (security update): warn, retry without that pin, record.
printf 'libc6 2.36-9+deb12u15\nrunc 1.1.5+ds1-1+deb12u1\n' > "$tmp/archive"
run "$tmp/base.lock" "$tmp/o2"
[[ $rc -eq 0 ]] && pass "moved: still builds" || failt "moved: still builds (got $rc): $out"
expect_has "moved: WARNING names the pin" "$out" "WARNING: pinned build of base.lock failed; pins no longer served: libc6"
expect_has "moved: drift WARNING pinned vs used" "$out" "WARNING: package lock drift (base.lock): moved libc6 pinned=2.36-9+deb12u14 used=2.36-9+deb12u15"
prov=$(cat "$tmp/o2/provenance.txt")
expect_has "moved: provenance status" "$prov" "lock_status DRIFT 1"
expect_has "moved: provenance drift line" "$prov" "drift moved libc6 2.36-9+deb12u14 2.36-9+deb12u15"
expect_has "moved: retried with the other pins" "$prov" "attempt partially-pinned"
expect_has "moved: runc still pinned" "$(cat "$tmp/o2/mmdebstrap.log")" "runc=1.1.5+ds1-1+deb12u1"

# 3. Same, strict: fails, no tar.
run "$tmp/base.lock" "$tmp/o3" KILN_STRICT_LOCK=1
[[ $rc -ne 0 ]] && pass "strict: fails" || failt "strict: fails"
expect_has "strict: says why" "$out" "KILN_STRICT_LOCK=1 and the pinned build"
[[ ! -e "$tmp/o3/rootfs.tar" ]] && pass "strict: no tar" || failt "strict: no tar"

# 4. A package requested but not locked yet: builds, "added" drift; strict fails.
sed 's/^@include runc$/@include runc busybox-static/' "$tmp/base.lock" > "$tmp/added.lock"
printf 'libc6 2.36-9+deb12u14\nrunc 1.1.5+ds1-1+deb12u1\nbusybox-static 1:1.35.0-4\n' > "$tmp/archive"
run "$tmp/added.lock" "$tmp/o4"
[[ $rc -eq 0 ]] && pass "added: builds" || failt "added: builds (got $rc): $out"
expect_has "added: WARNING" "$out" "added busybox-static pinned=- used=1:1.35.0-4"
run "$tmp/added.lock" "$tmp/o5" KILN_STRICT_LOCK=1
[[ $rc -ne 0 && ! -e "$tmp/o5/rootfs.tar" ]] && pass "added+strict: fails, no tar" || failt "added+strict: fails, no tar"

# 5. A package gone from the archive entirely: the pinned retries fail, then unpinned fails too.
printf 'libc6 2.36-9+deb12u14\n' > "$tmp/archive"
run "$tmp/base.lock" "$tmp/o6"
[[ $rc -ne 0 ]] && pass "gone: fails" || failt "gone: fails"
expect_has "gone: apt's error shown" "$out" "Unable to locate package runc"

# 6. Bad lock: a clear error before mmdebstrap runs.
printf '@suite bookworm\n' > "$tmp/bad.lock"
run "$tmp/bad.lock" "$tmp/o7"
[[ $rc -ne 0 ]] && pass "bad lock: fails" || failt "bad lock: fails"
expect_has "bad lock: says what is missing" "$out" "missing @variant"

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
