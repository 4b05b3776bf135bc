#!/bin/bash
# builder_disk_test: inspects //images/rootfs:builder_disk with debugfs (no mount): dockerd,
# containerd, runc, the docker CLI, iproute2, CA certificates, the mount points the read-only
# root needs, the provenance file, and e2fsck.
set -uo pipefail
export PATH=/usr/sbin:/sbin:$PATH
disk=${1:?usage: builder_disk_test.sh DISK}
failures=0
pass() { echo "PASS: $1"; }
failt() { echo "FAIL: $1"; failures=$((failures + 1)); }
dbg() { debugfs -R "$1" "$disk" 2>/dev/null; }
stat_of() { dbg "stat $1" | awk '/^Inode:/ { t = $4; for (i = 5; i < NF; i++) if ($i == "Mode:") m = $(i + 1) } /^User:/ { u = $2; g = $4 } END { print t, m, u, g }'; }
expect_stat() {
  local got; got=$(stat_of "$1")
  [[ "$got" == "$2" ]] && pass "stat $1 = $2" || failt "stat $1: want '$2', got '$got'"
}

[[ -s "$disk" ]] || { echo "FAIL: no disk at $disk"; exit 1; }
if e2fsck -fn "$disk" >/dev/null 2>&1; then pass "e2fsck -fn clean"; else failt "e2fsck -fn clean"; fi
dumpe2fs -h "$disk" 2>/dev/null | grep -q 'Filesystem volume name:   kiln-builder' && pass "volume label" || failt "volume label"

for p in /usr/sbin/dockerd /usr/bin/docker /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 \
         /usr/sbin/runc /usr/bin/ip /usr/bin/tini; do
  expect_stat "$p" "regular 0755 0 0"
done
[[ -n "$(dbg 'stat /etc/ssl/certs/ca-certificates.crt' | awk '/^Inode:/')" ]] && pass "CA bundle" || failt "CA bundle"
expect_stat /var/lib/docker "directory 0710 0 0"
expect_stat /etc/docker "directory 0755 0 0"
expect_stat /var/lib/containerd "directory 0711 0 0"
expect_stat /usr/local/bin "directory 0755 0 0"
expect_stat /usr/share/kiln/provenance.txt "regular 0644 0 0"
prov=$(dbg "cat /usr/share/kiln/provenance.txt")
for pkg in docker.io containerd runc ca-certificates iproute2; do
  grep -q "^package $pkg " <<< "$prov" && pass "provenance lists $pkg" || failt "provenance lists $pkg"
done

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
