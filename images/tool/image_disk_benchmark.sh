#!/usr/bin/env bash
# image_disk_benchmark: how long the builder image -> disk path takes against the plain tools,
# in the same run on the same machine. Needs root.
#   bazel run //images/tool:image_disk_benchmark [-- ROUNDS]
# Per round: (a) kiln-image image-to-disk on //images:builder (verify digests + unpack with
# whiteouts, then mkext4.sh: mkfs.ext4 -d, debugfs time normalization, e2fsck), and (b) the
# baseline: GNU tar -x of the same layers, then mkfs.ext4 -d on that unpacked tree alone.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
kiln_image=$1 layout=$2 mkext4=$3 conf=$4
rounds=${5:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-image-disk-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
manifest=$(jq -r '.manifests[0].digest' "$layout/index.json")
layers=$(jq -r '.layers[].digest' "$layout/blobs/sha256/${manifest#sha256:}")
uuid=6b696c6e-6275-4169-8c64-650000000013
echo "image $manifest ($(echo "$layers" | wc -l) layers)"
for r in $(seq "$rounds"); do
  t0=$(now)
  "$kiln_image" image-to-disk --layout "$layout" --out "$work/image.ext4" --mkext4 "$mkext4" \
    --mke2fs_conf "$conf" --uuid "$uuid" --label kiln-builder13 --device_dir dev 2> "$work/log" \
    || { cat "$work/log" >&2; exit 1; }
  t1=$(now)
  rm -rf "$work/tree" && mkdir "$work/tree"
  for d in $layers; do
    tar --numeric-owner --same-owner -xpf "$layout/blobs/sha256/${d#sha256:}" -C "$work/tree"
  done
  t2=$(now)
  size=$(( $(stat -c %s "$work/image.ext4") / 1048576 ))
  MKE2FS_CONFIG=$conf E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -t ext4 -T default -U "$uuid" \
    -E "hash_seed=$uuid,lazy_itable_init=0,nodiscard" -d "$work/tree" "$work/plain.ext4" "${size}M"
  t3=$(now)
  echo "round $r: image->disk $(ms "$t0" "$t1") ms ($(grep -o 'verify+unpack [0-9]* ms, mkext4 [0-9]* ms' "$work/log"));" \
       "baseline: tar -x $(ms "$t1" "$t2") ms + mkfs.ext4 -d $(ms "$t2" "$t3") ms = $(ms "$t1" "$t3") ms"
  rm -f "$work/image.ext4" "$work/plain.ext4"
done
