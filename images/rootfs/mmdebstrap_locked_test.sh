#!/bin/bash
# mmdebstrap_locked_test: the drift policy of mmdebstrap_locked.sh, hermetically, with a fake
# mmdebstrap on PATH that "serves" the versions in a fake archive file:
#   - all pins served        -> pinned build, lock_status match, no WARNING
#   - one pin expired        -> WARNING naming it, retry without that pin, drift recorded
#   - expired + KILN_STRICT_LOCK=1 -> exit 1, no tar
#   - new @include, no pin   -> "added" drift; --unpinned (refresh) -> no warning
# and, with --debs DIR and "package version sha256 url" pins (real .debs made by dpkg-deb):
#   - every .deb in DIR      -> built from a local repository (dpkg-scanpackages) alone, pinned
#   - DIR empty              -> each .deb fetched from its url (file://, KILN_DEBIAN_MIRROR), sha256 checked
#   - a .deb gone everywhere -> WARNING "pin moved" with the archive's version, provenance
#                               pin_moved, partially pinned from the archive; strict: exit 1
#   - wrong bytes at the url -> exit 1
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
include= hooks=() pos=()
for a in "$@"; do
  case "$a" in
    --include=*) include=${a#--include=} ;;
    --customize-hook=*) hooks+=("${a#--customize-hook=}") ;;
    --*) ;;
    *) pos+=("$a") ;;
  esac
done
# A local repository source ("deb [trusted=yes] copy:///DIR ./") serves what its Packages lists.
for src in "${pos[@]:2}"; do
  if [[ "$src" == *copy://* ]]; then
    d=${src#*copy://}; d=${d%% *}
    awk '/^Package:/ { p = $2 } /^Version:/ { print p, $2 }' "$d/Packages" > "$FAKE_ARCHIVE.local"
    FAKE_ARCHIVE=$FAKE_ARCHIVE.local
    echo "fake: local repository $d" >&2
  fi
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
mkdir -p "$root/etc/apt"
for hook in "${hooks[@]}"; do sh -c "$hook" exec "$root" || exit 1; done
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

# 7-11. --debs: pins with sha256 and url; real .debs (dpkg-deb), a real local repository.
mkdeb() {  # NAME VERSION DIR -> DIR/NAME_VERSION_all.deb
  local d=$tmp/src-$1-$2
  mkdir -p "$d/DEBIAN"
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: kiln <kiln@example.org>\nDescription: test\n' "$1" "$2" > "$d/DEBIAN/control"
  mkdir -p "$3"
  dpkg-deb -Zgzip --build "$d" "$3/${1}_${2}_all.deb" > /dev/null
}
mirror=$tmp/mirror
mkdeb libc6 2.36 "$mirror/debian/pool/main"
mkdeb runc 1.1.5 "$mirror/debian/pool/main"
mkdeb runc 1.1.6 "$mirror/debian/pool/main"
sha() { sha256sum < "$1" | cut -d' ' -f1; }
{
  sed '/^[a-z]/d' "$tmp/base.lock"
  echo "libc6 2.36 $(sha "$mirror/debian/pool/main/libc6_2.36_all.deb") http://deb.debian.org/debian/pool/main/libc6_2.36_all.deb"
  echo "runc 1.1.5 $(sha "$mirror/debian/pool/main/runc_1.1.5_all.deb") http://deb.debian.org/debian/pool/main/runc_1.1.5_all.deb"
} > "$tmp/hashed.lock"
rund() {  # LOCK OUTDIR DEBSDIR [ENV...]
  local lock=$1 o=$2 d=$3; shift 3
  out=$(env "$@" "$dir/mmdebstrap_locked.sh" --debs "$d" "$lock" "$o" 2>&1); rc=$?
}

# 7. Every .deb already in DIR (Bazel's cache): the archive is never asked.
mkdir -p "$tmp/d7" && cp "$mirror"/debian/pool/main/{libc6_2.36,runc_1.1.5}_all.deb "$tmp/d7/"
printf 'libc6 9.9\nrunc 9.9\n' > "$tmp/archive"   # what "the archive" would serve: ignored
rund "$tmp/hashed.lock" "$tmp/o8" "$tmp/d7" KILN_DEBIAN_MIRROR=file:///nonexistent
[[ $rc -eq 0 ]] && pass "cached debs: exit 0" || failt "cached debs: exit 0 (got $rc): $out"
expect_has "cached debs: from the cache" "$out" "2 locked .debs: 2 from the cache, 0 fetched, 0 gone"
expect_has "cached debs: local repository" "$(cat "$tmp/o8/mmdebstrap.log")" "fake: local repository $tmp/d7"
expect_not "cached debs: no WARNING" "$out" "WARNING"
prov=$(cat "$tmp/o8/provenance.txt" 2>/dev/null)
expect_has "cached debs: provenance pinned" "$prov" "attempt pinned"
expect_has "cached debs: provenance local repository" "$prov" "packages local repository of the 2 locked .debs"
expect_has "cached debs: provenance names the lock's source, not the path" "$prov" "source deb http://deb.debian.org/debian bookworm main"
expect_not "cached debs: no local path in provenance" "$prov" "$tmp/d7"
expect_has "cached debs: lock_status match" "$prov" "lock_status match"
expect_has "cached debs: Packages index" "$(cat "$tmp/d7/Packages")" "Filename: ./runc_1.1.5_all.deb"
expect_has "cached debs: sources.list of the root" "$(tar xOf "$tmp/o8/rootfs.tar" ./etc/apt/sources.list 2>&1)" "deb http://deb.debian.org/debian bookworm main"

# 8. DIR empty: fetched from the url through KILN_DEBIAN_MIRROR, sha256 checked.
rund "$tmp/hashed.lock" "$tmp/o9" "$tmp/d9" KILN_DEBIAN_MIRROR=file://$mirror
[[ $rc -eq 0 ]] && pass "fetched debs: exit 0" || failt "fetched debs: exit 0 (got $rc): $out"
expect_has "fetched debs: counted" "$out" "2 locked .debs: 0 from the cache, 2 fetched, 0 gone"
[[ -f "$tmp/d9/runc_1.1.5_all.deb" ]] && pass "fetched debs: in DIR" || failt "fetched debs: in DIR"
cmp -s "$tmp/o8/manifest.txt" "$tmp/o9/manifest.txt" && pass "fetched debs: same packages as cached" || failt "fetched debs: same packages as cached"
expect_has "fetched debs: provenance pinned" "$(cat "$tmp/o9/provenance.txt")" "attempt pinned"

# 9. runc 1.1.5 gone (archive moved to 1.1.6), no cache: WARNING with both versions, provenance,
#    partially pinned from the archive.
mkdir -p "$mirror/debian/dists/bookworm/main/binary-amd64"
(cd "$mirror/debian" && dpkg-scanpackages --multiversion pool 2>/dev/null | awk '/^Package: runc/ { skip = 0 } { print }' |
  awk 'BEGIN { RS = ""; ORS = "\n\n" } !/Version: 1.1.5\n/' | xz > dists/bookworm/main/binary-amd64/Packages.xz)
mv "$mirror/debian/pool/main/runc_1.1.5_all.deb" "$tmp/runc_1.1.5_all.deb.away"
printf 'libc6 2.36\nrunc 1.1.6\n' > "$tmp/archive"
rund "$tmp/hashed.lock" "$tmp/o10" "$tmp/d10" KILN_DEBIAN_MIRROR=file://$mirror
[[ $rc -eq 0 ]] && pass "gone pin: still builds" || failt "gone pin: still builds (got $rc): $out"
expect_has "gone pin: WARNING names it with pinned and available" "$out" "WARNING: pin moved (hashed.lock): runc pinned=1.1.5 available=1.1.6"
expect_not "gone pin: libc6 not named" "$out" "pin moved (hashed.lock): libc6"
prov=$(cat "$tmp/o10/provenance.txt" 2>/dev/null)
expect_has "gone pin: provenance pin_moved" "$prov" "pin_moved runc 1.1.5 -> 1.1.6"
expect_has "gone pin: provenance partially-pinned" "$prov" "attempt partially-pinned"
expect_has "gone pin: provenance drift" "$prov" "drift moved runc 1.1.5 1.1.6"
expect_has "gone pin: libc6 still pinned" "$(cat "$tmp/o10/mmdebstrap.log")" "libc6=2.36,runc "

# 10. The same with KILN_STRICT_LOCK=1: fails, naming the pin, no tar.
rund "$tmp/hashed.lock" "$tmp/o11" "$tmp/d11" KILN_DEBIAN_MIRROR=file://$mirror KILN_STRICT_LOCK=1
[[ $rc -ne 0 && ! -e "$tmp/o11/rootfs.tar" ]] && pass "gone pin, strict: fails, no tar" || failt "gone pin, strict: fails, no tar (rc $rc)"
expect_has "gone pin, strict: names it" "$out" "KILN_STRICT_LOCK=1 and 1 pin(s) of $tmp/hashed.lock are gone: runc"

# 11. Different bytes at the url than the lock's sha256: refused.
cp "$mirror/debian/pool/main/runc_1.1.6_all.deb" "$mirror/debian/pool/main/runc_1.1.5_all.deb"
rund "$tmp/hashed.lock" "$tmp/o12" "$tmp/d12" KILN_DEBIAN_MIRROR=file://$mirror
[[ $rc -ne 0 && ! -e "$tmp/o12/rootfs.tar" ]] && pass "wrong bytes: fails" || failt "wrong bytes: fails (rc $rc)"
expect_has "wrong bytes: says so" "$out" "refusing different bytes"

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
