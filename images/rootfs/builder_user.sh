#!/bin/bash
# builder_user.sh: add the unprivileged build user to a root filesystem's account files.
#
# Usage: builder_user.sh ROOTFS_TAR OUTDIR NAME UID SUBID_START SUBID_COUNT
#   ROOTFS_TAR   an mmdebstrap tar (reads ./etc/passwd, group, shadow, gshadow from it)
#   OUTDIR       gets passwd, group, shadow, gshadow (the tar's files plus one line each for
#                NAME) and subuid, subgid ("NAME:SUBID_START:SUBID_COUNT", newuidmap's format)
#   NAME, UID    the user; its primary group has the same name and gid = UID; home /home/NAME,
#                shell /usr/sbin/nologin, password locked ("!" in shadow)
#   SUBID_START, SUBID_COUNT   the subordinate uid/gid range for rootlesskit's user namespace
#
# Fails (exit 1) if NAME, the uid or the gid already exists in the tar, if the subordinate range
# overlaps the user's own uid, or if an account file is missing. Deterministic (no dates:
# shadow's "last change" field is left empty).
set -euo pipefail
export LC_ALL=C
die() { echo "builder_user: $*" >&2; exit 1; }
[[ $# -eq 6 ]] || { echo "usage: builder_user.sh ROOTFS_TAR OUTDIR NAME UID SUBID_START SUBID_COUNT" >&2; exit 2; }
tar=$1 out=$2 name=$3 uid=$4 start=$5 count=$6
[[ "$name" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "bad user name: $name"
for n in "$uid" "$start" "$count"; do [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"; done
(( start > uid || start + count <= uid )) || die "subordinate range $start+$count contains the user's uid $uid"
(( start + count <= 4294967295 )) || die "subordinate range $start+$count exceeds the uid space"

mkdir -p "$out"
for f in passwd group shadow gshadow; do
  tar -xOf "$tar" "./etc/$f" > "$out/$f" 2>/dev/null || die "$tar has no ./etc/$f"
  [[ -s "$out/$f" ]] || die "$tar: ./etc/$f is empty"
done
awk -F: -v n="$name" -v u="$uid" '$1 == n || $3 == u { print FILENAME ": " $0; bad = 1 } END { exit bad }' \
  "$out/passwd" "$out/group" >&2 || die "user/group $name or id $uid already exists in $tar"

echo "$name:x:$uid:$uid:kiln build user:/home/$name:/usr/sbin/nologin" >> "$out/passwd"
echo "$name:x:$uid:" >> "$out/group"
echo "$name:!::0:99999:7:::" >> "$out/shadow"
echo "$name:!::" >> "$out/gshadow"
echo "$name:$start:$count" > "$out/subuid"
echo "$name:$start:$count" > "$out/subgid"
