#!/bin/bash
# fill_package_cache_test: tools/fill-package-cache on a fake workspace (a kernel lock and a root
# lock whose urls are file:// paths to real files): fills DIR by sha256, --check reports missing
# and corrupt files, a wrong download is refused, Bazel's repository cache is used first.
set -uo pipefail
tool=${1:-tools/fill-package-cache}
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0
pass() { echo "PASS: $1"; }
failt() { echo "FAIL: $1"; failures=$((failures + 1)); }
expect_has() { grep -qF -- "$3" <<< "$2" && pass "$1" || { failt "$1"; echo "  missing: $3"; echo "$2" | sed 's/^/  | /'; }; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }

ws=$tmp/ws src=$tmp/archive
mkdir -p "$ws/images/kernel" "$ws/images/rootfs" "$src"
for n in linux-image_1_amd64 libc6_2.36_amd64 runc_1.1.5_amd64; do head -c 3000 /dev/urandom > "$src/$n.deb"; done
cat > "$ws/images/kernel/kernel.lock.json" <<J
{"metapackage": "m", "package": "linux-image", "version": "1", "architecture": "amd64",
 "sha256": "$(sha "$src/linux-image_1_amd64.deb")", "url": "file://$src/linux-image_1_amd64.deb"}
J
cat > "$ws/images/rootfs/a.lock" <<L
@suite bookworm
libc6 2.36 $(sha "$src/libc6_2.36_amd64.deb") file://$src/libc6_2.36_amd64.deb
runc 1.1.5 $(sha "$src/runc_1.1.5_amd64.deb") file://$src/runc_1.1.5_amd64.deb
L
# The same .deb in a second lock is one file.
grep runc "$ws/images/rootfs/a.lock" > "$ws/images/rootfs/b.lock"
export KILN_REPOSITORY_CACHE=$tmp/no-repo-cache

out=$("$tool" --root "$ws" "$tmp/cache" 2>&1); rc=$?
[[ $rc -eq 0 ]] && pass "fill: exit 0" || failt "fill: exit 0 (rc $rc): $out"
expect_has "fill: counts" "$out" "3 locked .debs (0 MiB): 0 present, 0 from the repository cache, 3 downloaded, 0 failed"
cmp -s "$src/runc_1.1.5_amd64.deb" "$tmp/cache/runc_1.1.5_amd64.deb" && pass "fill: distdir layout (url basename)" || failt "fill: distdir layout (url basename)"
[[ -z "$(ls -A "$tmp/cache" | grep -v '\.deb$')" ]] && pass "fill: no partial files left" || failt "fill: no partial files left"

out=$("$tool" --check --root "$ws" "$tmp/cache" 2>&1); rc=$?
[[ $rc -eq 0 ]] && pass "check complete: exit 0" || failt "check complete: exit 0 (rc $rc): $out"

echo garbage > "$tmp/cache/libc6_2.36_amd64.deb"
rm "$tmp/cache/linux-image_1_amd64.deb"
out=$("$tool" --check --root "$ws" "$tmp/cache" 2>&1); rc=$?
[[ $rc -eq 1 ]] && pass "check: exit 1" || failt "check: exit 1 (rc $rc)"
expect_has "check: corrupt named" "$out" "corrupt libc6_2.36_amd64.deb sha256=$(echo garbage | sha256sum | cut -d' ' -f1) want=$(sha "$src/libc6_2.36_amd64.deb") (a.lock)"
expect_has "check: missing named" "$out" "missing linux-image_1_amd64.deb (kernel.lock.json)"
[[ ! -e "$tmp/cache/linux-image_1_amd64.deb" ]] && pass "check: changes nothing" || failt "check: changes nothing"

# Refill from Bazel's repository cache (content_addressable/sha256/SHA/file), not the url.
k=$(sha "$src/linux-image_1_amd64.deb")
mkdir -p "$tmp/repo-cache/content_addressable/sha256/$k"
cp "$src/linux-image_1_amd64.deb" "$tmp/repo-cache/content_addressable/sha256/$k/file"
mv "$src/linux-image_1_amd64.deb" "$tmp/away.deb"
out=$(KILN_REPOSITORY_CACHE=$tmp/repo-cache "$tool" --root "$ws" "$tmp/cache" 2>&1); rc=$?
[[ $rc -eq 0 ]] && pass "repair: exit 0" || failt "repair: exit 0 (rc $rc): $out"
expect_has "repair: one from the repository cache, one downloaded" "$out" "1 present, 1 from the repository cache, 1 downloaded, 0 failed"

# The archive serves different bytes for a pin: refused, nothing written.
rm "$tmp/cache/runc_1.1.5_amd64.deb"; echo other > "$src/runc_1.1.5_amd64.deb"
out=$("$tool" --root "$ws" "$tmp/cache" 2>&1); rc=$?
[[ $rc -eq 1 ]] && pass "wrong bytes: exit 1" || failt "wrong bytes: exit 1 (rc $rc)"
expect_has "wrong bytes: says which" "$out" "cannot get runc_1.1.5_amd64.deb (b.lock): runc_1.1.5_amd64.deb (downloaded) has sha256"
[[ ! -e "$tmp/cache/runc_1.1.5_amd64.deb" ]] && pass "wrong bytes: not written" || failt "wrong bytes: not written"

# A pin without sha256/url, and bad usage.
echo "tar 1.34" >> "$ws/images/rootfs/b.lock"
out=$("$tool" --root "$ws" "$tmp/cache" 2>&1); rc=$?
[[ $rc -ne 0 ]] && pass "unhashed pin: fails" || failt "unhashed pin: fails"
expect_has "unhashed pin: says where" "$out" "b.lock:2: pin without sha256 and url: tar 1.34"
out=$("$tool" 2>&1); rc=$?
[[ $rc -eq 2 ]] && pass "no DIR: exit 2" || failt "no DIR: exit 2 (rc $rc)"

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
