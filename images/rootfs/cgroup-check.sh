#!/bin/sh
# cgroup-check: installed in the test root as /usr/lib/kiln/cgroup-check.
#
# Reports how cgroups look from inside the VM and whether runc can run a container, as
# KILN-CHECK lines (docs/interfaces.md; every key is listed in images/rootfs/README.md):
#
#   KILN-CHECK cgroup.mountinfo <the /proc/self/mountinfo line of /sys/fs/cgroup> | none
#   KILN-CHECK cgroup.fstype cgroup2|cgroup|<other>|none
#   KILN-CHECK cgroup.mode ro|rw|none
#   KILN-CHECK runc.version <first line of runc --version>
#   KILN-CHECK runc.exit <exit code of runc run; 124 = timed out>
#   KILN-CHECK runc.stdout <line>          one per line the container printed (its /proc/self/cgroup)
#   KILN-CHECK runc.stdout.lines <n>
#   KILN-CHECK runc.stderr <line>          one per line runc printed on stderr
#   KILN-CHECK runc.stderr.lines <n>
#   KILN-CHECK done status=0
#
# Usage: cgroup-check [CONTAINER_ID]      (default id: kiln-check)
# Exit status: 0 if the checks ran (whatever runc's result), 1 if they could not run
# (then the last line is "KILN-CHECK error <reason>").
# Environment (for tests; defaults are what the VM uses):
#   KILN_MOUNTINFO (/proc/self/mountinfo)  KILN_RUNC (runc)  KILN_BUNDLE (/opt/kiln/bundle)
#   KILN_CHECK_TIMEOUT (60, seconds for runc run)  KILN_CGROUP_MOUNTPOINT (/sys/fs/cgroup)
#   TMPDIR (/tmp)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mountinfo=${KILN_MOUNTINFO:-/proc/self/mountinfo}
runc=${KILN_RUNC:-runc}
bundle=${KILN_BUNDLE:-/opt/kiln/bundle}
timeout_s=${KILN_CHECK_TIMEOUT:-60}
mountpoint=${KILN_CGROUP_MOUNTPOINT:-/sys/fs/cgroup}
id=${1:-kiln-check}

check() { printf 'KILN-CHECK %s\n' "$*"; }
fail() { check "error $*"; exit 1; }

[ $# -le 1 ] || fail "usage: cgroup-check [CONTAINER_ID]"
case "$id" in
  ''|*[!A-Za-z0-9_.-]*) fail "bad container id: $id" ;;
esac
case "$timeout_s" in
  ''|*[!0-9]*) fail "bad KILN_CHECK_TIMEOUT: $timeout_s" ;;
esac
[ -r "$mountinfo" ] || fail "cannot read $mountinfo"

# mountinfo(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
# The last line for the mount point is the mount on top (the one a lookup sees).
line=$(awk -v mp="$mountpoint" '$5 == mp { l = $0 } END { print l }' "$mountinfo")
if [ -z "$line" ]; then
  check "cgroup.mountinfo none"
  check "cgroup.fstype none"
  check "cgroup.mode none"
else
  check "cgroup.mountinfo $line"
  fstype=$(printf '%s\n' "$line" | awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }')
  mode=$(printf '%s\n' "$line" | awk '{ n = split($6, o, ","); m = "rw"; for (i = 1; i <= n; i++) if (o[i] == "ro") m = "ro"; print m }')
  check "cgroup.fstype ${fstype:-unknown}"
  check "cgroup.mode $mode"
fi

command -v "$runc" >/dev/null 2>&1 || fail "runc not found: $runc"
[ -r "$bundle/config.json" ] || fail "no OCI bundle at $bundle (config.json missing)"
check "runc.version $("$runc" --version 2>&1 | head -n 1)"

work=$(mktemp -d "${TMPDIR:-/tmp}/cgroup-check.XXXXXX") || fail "mktemp failed in ${TMPDIR:-/tmp}"
trap 'rm -rf "$work"' EXIT
if command -v timeout >/dev/null 2>&1 && [ "$timeout_s" -gt 0 ]; then
  timeout -k 5 "$timeout_s" "$runc" run --bundle "$bundle" "$id" </dev/null >"$work/out" 2>"$work/err"
else
  "$runc" run --bundle "$bundle" "$id" </dev/null >"$work/out" 2>"$work/err"
fi
rc=$?
# A failed run can leave state behind; best effort, silent.
"$runc" delete --force "$id" >/dev/null 2>&1 || true

check "runc.exit $rc"
for stream in stdout stderr; do
  f=$work/out
  [ "$stream" = stderr ] && f=$work/err
  n=0
  while IFS= read -r l || [ -n "$l" ]; do
    check "runc.$stream $l"
    n=$((n + 1))
  done < "$f"
  check "runc.$stream.lines $n"
done
check "done status=0"
exit 0
