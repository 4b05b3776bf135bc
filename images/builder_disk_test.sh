#!/usr/bin/env bash
# builder_disk_test: the builder disk every builder VM boots (//images:builder_disk) is made
# from the builder OCI image (//images:builder): its sha256 equals the disk made from the
# independently built layout (:builder_twin) by an independent action (:builder_disk_twin),
# and it holds what the builder VM needs (read with debugfs, nothing mounted).
# Usage: builder_disk_test.sh DISK TWIN_DISK LAYOUT
set -euo pipefail
export PATH=/usr/sbin:/sbin:/usr/bin:/bin
disk=$1 twin=$2 layout=$3
fail() { echo "FAIL: $*" >&2; exit 1; }

sum=$(sha256sum < "$disk" | cut -d' ' -f1)
twin_sum=$(sha256sum < "$twin" | cut -d' ' -f1)
manifest=$(jq -r '.manifests[0].digest' "$layout/index.json")
echo "image $manifest -> disk sha256:$sum ($(stat -L -c %s "$disk") bytes)"
[[ "$sum" == "$twin_sum" ]] || fail "the disk from the image ($sum) differs from the disk made independently from the twin layout ($twin_sum)"

# stat_field PATH: "Mode User Group Type" of PATH in the disk.
stat_of() { debugfs -R "stat $1" "$disk" 2>/dev/null | head -3 | tr -s ' '; }
expect_mode() {  # PATH MODE TYPE
  local s
  s=$(stat_of "$1")
  [[ "$s" == *"Type: $3 Mode: $2 "* ]] || fail "$1: want $3 mode $2, got: $s"
}
expect_mode /usr/local/bin/kiln-agent 0755 regular
expect_mode /usr/local/bin/kiln-vsock-check 0755 regular
expect_mode /usr/lib/kiln/init 0755 regular
expect_mode /etc/shadow 0640 regular
expect_mode /etc/gshadow 0640 regular
expect_mode /var/lib/docker 0710 directory
expect_mode /var/lib/containerd 0711 directory
expect_mode /run/containerd 0711 directory
expect_mode /etc/docker 0755 directory
expect_mode /home/builder 0755 directory
for bin in /usr/sbin/dockerd /usr/sbin/runc /usr/bin/rootlesskit /usr/bin/newuidmap /usr/bin/slirp4netns; do
  [[ "$(stat_of "$bin")" == *"Type: regular"* ]] || fail "$bin missing from the disk"
done
debugfs -R "cat /etc/passwd" "$disk" 2>/dev/null | grep -q '^builder:x:1000:1000:' || fail "/etc/passwd has no builder (uid 1000)"
debugfs -R "cat /etc/subuid" "$disk" 2>/dev/null | grep -qx 'builder:100000:65536' || fail "/etc/subuid has no builder:100000:65536"
[[ "$(stat_of /dev/null)" == *"Type: character special"* ]] || fail "/dev/null is not a character device"
e2fsck -fn "$disk" > /dev/null 2>&1 || fail "e2fsck found errors"
echo "PASS: builder disk = image $manifest, byte-identical to the independent twin"
