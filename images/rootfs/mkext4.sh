#!/bin/bash
# mkext4.sh: the single action of kiln_ext4_disk (rootfs.bzl). Builds an ext4 disk image from a
# root filesystem tar plus extra entries, deterministically, without mounting anything.
#
# Usage: mkext4.sh OUT BASE_TAR ENTRIES MKE2FS_CONF EPOCH UUID HASH_SEED LABEL HEADROOM_PCT EXTRA_MIB
#   OUT          the image to write
#   BASE_TAR     root filesystem tar (owners, modes, xattrs and device nodes are kept), or a
#                directory: a root tree already unpacked (kiln-image image-to-disk unpacks an
#                OCI image's layers), used in place (entries and normalized times go into it)
#   ENTRIES      extra entries, one per line, fields separated by one TAB, applied in order:
#                  file<TAB>SRC<TAB>DEST<TAB>MODE     copy SRC to DEST (octal MODE, root:root)
#                  dir<TAB>DEST<TAB>MODE              mkdir -p DEST, then chmod
#                  symlink<TAB>TARGET<TAB>DEST        DEST -> TARGET
#                  hardlink<TAB>SRC<TAB>DEST          DEST is a hard link to SRC (both in the root)
#   MKE2FS_CONF  mke2fs.conf to use (feature set independent of the host)
#   EPOCH        SOURCE_DATE_EPOCH: the time of every inode (mtime of new entries; atime, ctime)
#   UUID, HASH_SEED, LABEL   fixed file system UUID, directory hash seed, volume label
#   HEADROOM_PCT, EXTRA_MIB  free space: size = used * (100 + HEADROOM_PCT) / 100 + EXTRA_MIB
#
# Determinism: mkfs.ext4 -d copies each file's atime and ctime from the staging tree, and the
# ctime there is the time of extraction; so after mkfs every used inode's atime and ctime are set
# to EPOCH with debugfs. Superblock times come from E2FSPROGS_FAKE_TIME=EPOCH.
# Needs root (owners, device nodes): the Bazel action is tagged no-sandbox.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C

[[ $# -eq 10 ]] || { echo "usage: mkext4.sh OUT BASE_TAR ENTRIES MKE2FS_CONF EPOCH UUID HASH_SEED LABEL HEADROOM_PCT EXTRA_MIB" >&2; exit 2; }
out=$1 base=$2 entries=$3 conf=$4 epoch=$5 uuid=$6 seed=$7 label=$8 headroom=$9 extra=${10}
die() { echo "mkext4: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (file owners and device nodes in the root filesystem)"
[[ "$epoch" =~ ^[0-9]+$ ]] || die "bad EPOCH: $epoch"
[[ "$headroom" =~ ^[0-9]+$ && "$extra" =~ ^[0-9]+$ ]] || die "bad HEADROOM_PCT/EXTRA_MIB: $headroom/$extra"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-mkext4.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [[ -d "$base" ]]; then
  tree=$base
else
  tree=$work/root
  mkdir "$tree"
  tar --numeric-owner --same-owner --same-permissions --xattrs --xattrs-include='*' -xf "$base" -C "$tree"
fi

# safe_dest DEST: the path inside the tree; refuses .. and relative paths.
safe_dest() {
  case "$1" in
    /*) ;;
    *) die "entry path must be absolute: $1" ;;
  esac
  case "/$1/" in
    */../*|*/./*) die "entry path must not contain . or ..: $1" ;;
  esac
  printf '%s%s' "$tree" "$1"
}

lineno=0
while IFS=$'\t' read -r kind a b c; do
  lineno=$((lineno + 1))
  case "$kind" in
    file)
      d=$(safe_dest "$b")
      mkdir -p "$(dirname "$d")"
      rm -rf "$d"
      cp "$a" "$d"
      chown 0:0 "$d"
      chmod "$c" "$d" ;;
    dir)
      d=$(safe_dest "$a")
      mkdir -p "$d"
      chown 0:0 "$d"
      chmod "$b" "$d" ;;
    symlink)
      d=$(safe_dest "$b")
      mkdir -p "$(dirname "$d")"
      rm -rf "$d"
      ln -s "$a" "$d" ;;
    hardlink)
      s=$(safe_dest "$a")
      d=$(safe_dest "$b")
      [[ -f "$s" && ! -L "$s" ]] || die "$entries:$lineno: hardlink source is not a regular file in the root: $a"
      mkdir -p "$(dirname "$d")"
      rm -rf "$d"
      ln "$s" "$d" ;;
    '') ;;
    *) die "$entries:$lineno: unknown entry kind: $kind" ;;
  esac
done < "$entries"

# New entries (and the directories they changed) get the fixed time too.
find "$tree" -newermt "@$epoch" -print0 | xargs -0r touch -h -d "@$epoch"

# Size from the tree, independent of the staging file system: 4 KiB blocks of data, directories
# and long symlinks, 256-byte inodes, plus headroom, plus fixed metadata slack.
read -r inodes blocks < <(find "$tree" -printf '%y %s\n' | awk '
  { n++
    if ($1 == "f" || $1 == "d") b += int(($2 + 4095) / 4096) + ($1 == "d" ? 1 : 0)
    else if ($1 == "l" && $2 > 59) b += 1 }
  END { printf "%d %d\n", n, b }')
inode_count=$((inodes + inodes / 4 + 1024))
used_kib=$((blocks * 4 + inode_count / 4))
size_mib=$(( (used_kib * (100 + headroom) / 100 + 1023) / 1024 + extra + 8 ))

rm -f "$out"
MKE2FS_CONFIG=$conf E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -t ext4 -T default \
  -N "$inode_count" -U "$uuid" -L "$label" \
  -E "hash_seed=$seed,lazy_itable_init=0,nodiscard" \
  -d "$tree" "$out" "${size_mib}M" > "$work/mkfs.log" || { cat "$work/mkfs.log" >&2; die "mkfs.ext4 failed"; }

# Normalize atime/ctime of every used inode (root dir 2 and everything from 11 up).
dumpe2fs "$out" 2>/dev/null | awk -v t="$epoch" '
  /^Inodes per group:/ { ipg = $4 }
  /^Group [0-9]+:/ { g = $2 + 0 }
  /^  Free inodes:/ {
    delete free
    sub(/^  Free inodes: */, "")
    n = split($0, r, /, */)
    for (i = 1; i <= n; i++) {
      if (r[i] == "") continue
      m = split(r[i], ab, "-"); lo = ab[1] + 0; hi = (m == 2 ? ab[2] : ab[1]) + 0
      for (j = lo; j <= hi; j++) free[j] = 1
    }
    for (j = g * ipg + 1; j <= (g + 1) * ipg; j++)
      if (!(j in free) && (j == 2 || j >= 11)) {
        printf "sif <%d> atime @%s\nsif <%d> ctime @%s\n", j, t, j, t
      }
  }' > "$work/debugfs.cmds"
[[ -s "$work/debugfs.cmds" ]] || die "dumpe2fs found no used inodes in $out"
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/debugfs.cmds" "$out" > "$work/debugfs.log" 2>&1 \
  || { cat "$work/debugfs.log" >&2; die "debugfs failed"; }
if grep -qi 'error\|invalid\|not found' "$work/debugfs.log"; then
  grep -i 'error\|invalid\|not found' "$work/debugfs.log" | head >&2
  die "debugfs reported errors while normalizing inode times"
fi

e2fsck -fn "$out" > "$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; die "e2fsck found errors in $out"; }
echo "mkext4: $out: ${size_mib} MiB, $inodes inodes used of $inode_count, sha256 $(sha256sum < "$out" | cut -d' ' -f1)" >&2
