#!/bin/bash
# testroot_disk_test: inspects //images/rootfs:testroot_disk with debugfs (no mount): runc, the
# busybox OCI bundle, the check program, the provenance file, owners and modes, the file system
# UUID/label/features, and e2fsck.
set -uo pipefail
export PATH=/usr/sbin:/sbin:$PATH
disk=${1:?usage: testroot_disk_test.sh DISK}
failures=0
pass() { echo "PASS: $1"; }
failt() { echo "FAIL: $1"; failures=$((failures + 1)); }
dbg() { debugfs -R "$1" "$disk" 2>/dev/null; }
# stat_of PATH: "TYPE MODE UID GID" of PATH (does not follow symlinks).
stat_of() { dbg "stat $1" | awk '/^Inode:/ { t = $4; for (i = 5; i < NF; i++) if ($i == "Mode:") m = $(i + 1) } /^User:/ { u = $2; g = $4 } END { print t, m, u, g }'; }
expect_stat() {  # PATH "TYPE MODE UID GID"
  local got; got=$(stat_of "$1")
  [[ "$got" == "$2" ]] && pass "stat $1 = $2" || failt "stat $1: want '$2', got '$got'"
}
expect_contains() {  # NAME HAYSTACK NEEDLE
  [[ "$2" == *"$3"* ]] && pass "$1" || { failt "$1"; echo "  missing: $3"; }
}

[[ -s "$disk" ]] || { echo "FAIL: no disk at $disk"; exit 1; }
if e2fsck -fn "$disk" >/dev/null 2>&1; then pass "e2fsck -fn clean"; else failt "e2fsck -fn clean"; fi

sb=$(dumpe2fs -h "$disk" 2>/dev/null)
expect_contains "fs uuid" "$sb" "Filesystem UUID:          6b696c6e-7465-4374-8f6f-740000000001"
expect_contains "volume label" "$sb" "Filesystem volume name:   kiln-testroot"
expect_contains "ext4 extents" "$sb" "extent"
expect_contains "fixed hash seed" "$sb" "Directory Hash Seed:      6b696c6e-7465-4374-8f6f-740000000001"

expect_stat /usr/sbin/runc "regular 0755 0 0"
expect_stat /usr/bin/busybox "regular 0755 0 0"
expect_stat /opt/kiln/bundle "directory 0755 0 0"
expect_stat /opt/kiln/bundle/config.json "regular 0644 0 0"
expect_stat /opt/kiln/bundle/rootfs/bin/busybox "regular 0755 0 0"
expect_stat /opt/kiln/bundle/rootfs/bin/cat "symlink 0777 0 0"
expect_stat /opt/kiln/bundle/rootfs/bin/sh "symlink 0777 0 0"
expect_stat /opt/kiln/bundle/rootfs/proc "directory 0755 0 0"
expect_stat /opt/kiln/bundle/rootfs/dev "directory 0755 0 0"
expect_stat /opt/kiln/bundle/rootfs/sys "directory 0755 0 0"
expect_stat /opt/kiln/bundle/rootfs/tmp "directory 01777 0 0"
expect_stat /usr/lib/kiln/cgroup-check "regular 0755 0 0"
expect_stat /usr/share/kiln/provenance.txt "regular 0644 0 0"
expect_stat /dev/null "character 0666 0 0"
# A setgid file owned by group shadow (42), as dpkg made it: owners and modes survive the build.
expect_stat /usr/sbin/unix_chkpwd "regular 02755 0 42"

# The bundle's busybox is the root's busybox (one inode, hard link) and is static.
i1=$(dbg "stat /usr/bin/busybox" | awk '/^Inode:/ { print $2 }')
i2=$(dbg "stat /opt/kiln/bundle/rootfs/bin/busybox" | awk '/^Inode:/ { print $2 }')
[[ -n "$i1" && "$i1" == "$i2" ]] && pass "bundle busybox is a hard link ($i1)" || failt "bundle busybox hard link ($i1 vs $i2)"
tmp=${TEST_TMPDIR:-$(mktemp -d)}
dbg "dump /usr/bin/busybox $tmp/busybox" >/dev/null
if file -b "$tmp/busybox" 2>/dev/null | grep -q 'statically linked' || ! readelf -l "$tmp/busybox" 2>/dev/null | grep -q INTERP; then
  pass "busybox is static (no ELF interpreter)"
else
  failt "busybox is static"
fi
[[ "$(dbg 'stat /opt/kiln/bundle/rootfs/bin/cat' | sed -n 's/^Fast link dest: "\(.*\)"/\1/p')" == busybox ]] \
  && pass "cat -> busybox" || failt "cat -> busybox"

cfg=$(dbg "cat /opt/kiln/bundle/config.json")
expect_contains "config.json: terminal false" "$cfg" '"terminal": false'
expect_contains "config.json: /proc/self/cgroup" "$cfg" '"/proc/self/cgroup"'
expect_contains "config.json: readonly root" "$cfg" '"readonly": true'

chk=$(dbg "cat /usr/lib/kiln/cgroup-check")
expect_contains "cgroup-check is a sh script" "$chk" "#!/bin/sh"
expect_contains "cgroup-check runs the bundle" "$chk" 'run --bundle "$bundle"'

prov=$(dbg "cat /usr/share/kiln/provenance.txt")
expect_contains "provenance: lock named" "$prov" "lock testroot.lock sha256="
expect_contains "provenance: lock status" "$prov" "lock_status "
expect_contains "provenance: runc package" "$prov" "package runc "
expect_contains "provenance: busybox-static package" "$prov" "package busybox-static "

# The dash shell the check program needs, and the tools it calls.
for p in /usr/bin/dash /usr/bin/awk /usr/bin/mktemp /usr/bin/timeout /usr/bin/head; do
  [[ -n "$(dbg "stat $p" | awk '/^Inode:/')" ]] && pass "present: $p" || failt "present: $p"
done
# /bin is usrmerge's symlink, so /bin/sh resolves.
[[ "$(dbg 'stat /bin' | sed -n 's/^Fast link dest: "\(.*\)"/\1/p')" == usr/bin ]] && pass "/bin -> usr/bin" || failt "/bin -> usr/bin"

# Every inode carries the fixed time (reproducibility).
times=$(dbg "stat /usr/lib/kiln/cgroup-check" | grep -E '^ *(c|a|m)time:')
if [[ "$(grep -c '0x6553f100' <<< "$times")" == 3 ]]; then pass "a/c/mtime = SOURCE_DATE_EPOCH"; else failt "a/c/mtime = SOURCE_DATE_EPOCH"; echo "$times"; fi

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
