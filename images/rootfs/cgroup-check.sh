#!/bin/sh
# cgroup-check: installed in the test root as /usr/lib/kiln/cgroup-check.
#
# Reports how cgroups look from inside the VM and whether runc can run a container, as
# KILN-CHECK lines (docs/interfaces.md; every key is listed in images/rootfs/README.md):
#
#   KILN-CHECK cgroup.mountinfo <the /proc/self/mountinfo line of /sys/fs/cgroup> | none
#   KILN-CHECK cgroup.fstype cgroup2|cgroup|<other>|none
#   KILN-CHECK cgroup.mode ro|rw|none
#   KILN-CHECK cgroup.subtree_control <the root cgroup's cgroup.subtree_control> | (empty) | none
#   KILN-CHECK delegate.dir <uid>:<gid> <octal mode> | none     /sys/fs/cgroup/kiln-builder
#   KILN-CHECK delegate.file <name> <uid>:<gid> | <name> missing   cgroup.procs, .subtree_control, .threads
#   KILN-CHECK delegate.probe <line>     what the delegatee did (below), one per line
#   KILN-CHECK delegate.probe.exit <n>   | delegate.probe skipped <why>
#   KILN-CHECK dev.tun <file type> <major:minor in hex> <octal mode> | none   (/dev/net/tun)
#   KILN-CHECK runc.version <first line of runc --version>
#   KILN-CHECK runc.exit <exit code of runc run; 124 = timed out>
#   KILN-CHECK runc.stdout <line>          one per line the container printed (its /proc/self/cgroup)
#   KILN-CHECK runc.stdout.lines <n>
#   KILN-CHECK runc.stderr <line>          one per line runc printed on stderr
#   KILN-CHECK runc.stderr.lines <n>
#   KILN-CHECK done status=0
#
# The delegation probe (only if kiln-builder exists and is not owned by root; init makes it
# with kiln.delegate, init/cgroup_delegation.h): root moves a shell into kiln-builder, which
# drops to the owner's uid/gid (setpriv) and, as the delegatee, makes kiln-builder/probe,
# moves itself there, enables +pids in kiln-builder/cgroup.subtree_control and tries to write
# kiln-builder/pids.max (a resource knob of the parent's, which must stay root's); it prints
# "uid=<n>", "cgroup=<its /proc/self/cgroup>", "subtree_control=<kiln-builder's>",
# "parent-knob=denied|writable". Root then removes the probe cgroup again.
#
# Usage: cgroup-check [CONTAINER_ID]      (default id: kiln-check)
# Exit status: 0 if the checks ran (whatever runc's result), 1 if they could not run
# (then the last line is "KILN-CHECK error <reason>").
# Environment (for tests; defaults are what the VM uses):
#   KILN_MOUNTINFO (/proc/self/mountinfo)  KILN_RUNC (runc)  KILN_BUNDLE (/opt/kiln/bundle)
#   KILN_CHECK_TIMEOUT (60, seconds for runc run)  KILN_CGROUP_MOUNTPOINT (/sys/fs/cgroup)
#   KILN_CGROUP_DIR (the mount point: where the cgroup files are read)
#   TMPDIR (/tmp)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# The delegatee's half of the probe (run by the script itself under setpriv).
if [ "${1:-}" = --delegate-probe ]; then
  d=$2
  mkdir "$d/probe" || exit 11
  echo $$ > "$d/probe/cgroup.procs" || exit 12
  echo +pids > "$d/cgroup.subtree_control" || exit 13
  echo "uid=$(id -u)"
  echo "cgroup=$(cat /proc/self/cgroup)"
  echo "subtree_control=$(cat "$d/cgroup.subtree_control")"
  if (echo max > "$d/pids.max") 2>/dev/null; then echo "parent-knob=writable"; else echo "parent-knob=denied"; fi
  exit 0
fi

mountinfo=${KILN_MOUNTINFO:-/proc/self/mountinfo}
runc=${KILN_RUNC:-runc}
bundle=${KILN_BUNDLE:-/opt/kiln/bundle}
timeout_s=${KILN_CHECK_TIMEOUT:-60}
mountpoint=${KILN_CGROUP_MOUNTPOINT:-/sys/fs/cgroup}
cgdir=${KILN_CGROUP_DIR:-$mountpoint}
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

# The root cgroup's enabled controllers and the delegated subtree (init's kiln.delegate).
if [ -r "$cgdir/cgroup.subtree_control" ]; then
  sc=$(cat "$cgdir/cgroup.subtree_control")
  check "cgroup.subtree_control ${sc:-(empty)}"
else
  check "cgroup.subtree_control none"
fi
d=$cgdir/kiln-builder
if [ -d "$d" ]; then
  check "delegate.dir $(stat -c '%u:%g %a' "$d")"
  for f in cgroup.procs cgroup.subtree_control cgroup.threads; do
    check "delegate.file $f $(stat -c '%u:%g' "$d/$f" 2>/dev/null || echo missing)"
  done
  owner=$(stat -c %u "$d")
  group=$(stat -c %g "$d")
  if [ "$owner" = 0 ]; then
    check "delegate.probe skipped owned-by-root"
  elif ! command -v setpriv >/dev/null 2>&1; then
    check "delegate.probe skipped no-setpriv"
  else
    probe=$(sh -c 'echo $$ > "$1/cgroup.procs" && exec setpriv --reuid="$2" --regid="$3" --clear-groups "$4" --delegate-probe "$1"' \
      sh "$d" "$owner" "$group" "$0" 2>&1)
    prc=$?
    printf '%s\n' "$probe" | while IFS= read -r l; do check "delegate.probe $l"; done
    check "delegate.probe.exit $prc"
    rmdir "$d/probe" 2>/dev/null || true
    echo -pids > "$d/cgroup.subtree_control" 2>/dev/null || true
  fi
else
  check "delegate.dir none"
fi
if [ -e /dev/net/tun ]; then
  check "dev.tun $(stat -c '%F %t:%T %a' /dev/net/tun)"
else
  check "dev.tun none"
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
