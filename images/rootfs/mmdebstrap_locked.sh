#!/bin/bash
# mmdebstrap_locked.sh: build a Debian root filesystem tar from a kiln lock file with mmdebstrap,
# requesting the locked versions, and report (or refuse) any drift from the lock.
#
# Usage: mmdebstrap_locked.sh [--strict] [--unpinned] LOCK OUTDIR
#   LOCK      a lock file (format: lockutil.sh); its @request lines say what to build
#   OUTDIR    gets: rootfs.tar       the root (mmdebstrap tar, SOURCE_DATE_EPOCH from the lock)
#                   manifest.txt     installed "package version" lines, sorted
#                   drift.txt        lockutil.sh compare output (empty: the root matches the lock)
#                   provenance.txt   what was asked for, what was used, and every difference
#                   mmdebstrap.log   the output of every mmdebstrap attempt
#   --strict    fail (exit 1) if any package differs from the lock (also: env KILN_STRICT_LOCK=1)
#   --unpinned  request names only (refresh_lock.sh uses this to resolve current versions)
#
# Pins expire: Debian's archive serves only the current version of each package. The build
# first asks for every locked version (pkg=version). If apt cannot find some of them, it drops
# exactly those pins (parsed from apt's "Version 'V' for 'P' was not found") and tries once more;
# if that fails too, it builds unpinned. Whatever was installed is then compared with the lock,
# and each difference is printed as a WARNING line and recorded in provenance.txt.
#
# Needs: root, network access to the @source mirrors, mmdebstrap. Exit status 0 on success.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lockutil=${LOCKUTIL:-$here/lockutil.sh}
strict=0
unpinned=0
[[ "${KILN_STRICT_LOCK:-}" == 1 ]] && strict=1
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --strict) strict=1 ;;
    --unpinned) unpinned=1 ;;
    *) echo "mmdebstrap_locked: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $# -eq 2 ]] || { echo "usage: mmdebstrap_locked.sh [--strict] [--unpinned] LOCK OUTDIR" >&2; exit 2; }
lock=$1
out=$2
mkdir -p "$out"
out=$(cd "$out" && pwd)

"$lockutil" check "$lock"
suite=$("$lockutil" request "$lock" suite | head -n1)
variant=$("$lockutil" request "$lock" variant | head -n1)
epoch=$("$lockutil" request "$lock" source_date_epoch | head -n1)
mapfile -t sources < <("$lockutil" request "$lock" source)
names=$("$lockutil" request "$lock" include | tr -s ' \t' ',,' | sed 's/^,//; s/,$//')
pinned_arg=$("$lockutil" include-arg "$lock")

log=$out/mmdebstrap.log
: > "$log"
rm -f "$out/rootfs.tar" "$out/manifest.txt"

# run_mmdebstrap INCLUDE: one attempt; 0 on success.
run_mmdebstrap() {
  local include=$1
  echo "=== mmdebstrap --variant=$variant --include=$include $suite" >> "$log"
  SOURCE_DATE_EPOCH=$epoch LC_ALL=C.UTF-8 mmdebstrap \
    --variant="$variant" \
    --mode=root \
    --format=tar \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    ${include:+--include="$include"} \
    --customize-hook='dpkg-query --admindir="$1/var/lib/dpkg" -W -f "\${Package} \${Version}\n" | LC_ALL=C sort > "'"$out"'/manifest.txt"' \
    "$suite" "$out/rootfs.tar" "${sources[@]}" >> "$log" 2>&1
}

attempt=pinned
if [[ $unpinned == 1 ]]; then
  attempt=unpinned
  run_mmdebstrap "$names" || { tail -n 30 "$log" >&2; exit 1; }
elif ! run_mmdebstrap "$pinned_arg"; then
  # Which pins does the archive no longer serve?
  gone=$(sed -n "s/^E: Version '\([^']*\)' for '\([^']*\)' was not found.*/\2/p" "$log" | sort -u)
  if [[ $strict == 1 ]]; then
    echo "mmdebstrap_locked: ERROR: KILN_STRICT_LOCK=1 and the pinned build of $lock failed." >&2
    [[ -n "$gone" ]] && echo "mmdebstrap_locked: pins the archive no longer serves: $(echo $gone)" >&2
    echo "mmdebstrap_locked: refresh the lock with images/rootfs/refresh_lock.sh. Last log lines:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  gone=$(echo $gone)
  echo "WARNING: pinned build of $(basename "$lock") failed; pins no longer served: ${gone:-<unknown>}" >&2
  retried=0
  if [[ -n "$gone" ]]; then
    keep=$(echo "$pinned_arg" | tr ',' '\n' | awk -v gone="$(echo $gone)" '
      BEGIN { n = split(gone, g, " "); for (i = 1; i <= n; i++) drop[g[i]] = 1 }
      { split($0, kv, "="); if (kv[1] in drop) print kv[1]; else print $0 }' | paste -sd, -)
    attempt=partially-pinned
    if run_mmdebstrap "$keep"; then retried=1; fi
  fi
  if [[ $retried == 0 ]]; then
    echo "WARNING: building $lock unpinned (current archive versions)" >&2
    attempt=unpinned
    run_mmdebstrap "$names" || { tail -n 30 "$log" >&2; exit 1; }
  fi
fi

[[ -s "$out/manifest.txt" ]] || { echo "mmdebstrap_locked: no manifest written (customize hook failed?)" >&2; exit 1; }
"$lockutil" compare "$lock" "$out/manifest.txt" > "$out/drift.txt"

ndrift=$(wc -l < "$out/drift.txt")
if [[ $ndrift -gt 0 && $unpinned == 0 ]]; then
  while read -r kind pkg pinned used; do
    echo "WARNING: package lock drift ($(basename "$lock")): $kind $pkg pinned=$pinned used=$used" >&2
  done < "$out/drift.txt"
  if [[ $strict == 1 ]]; then
    echo "mmdebstrap_locked: ERROR: KILN_STRICT_LOCK=1 and $ndrift package(s) differ from $lock; run images/rootfs/refresh_lock.sh" >&2
    rm -f "$out/rootfs.tar"
    exit 1
  fi
fi

{
  echo "# kiln root filesystem provenance"
  echo "lock $(basename "$lock") sha256=$(sha256sum < "$lock" | cut -d' ' -f1)"
  echo "suite $suite"
  echo "variant $variant"
  echo "include $names"
  for s in "${sources[@]}"; do echo "source $s"; done
  echo "source_date_epoch $epoch"
  echo "mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
  echo "attempt $attempt"
  echo "rootfs.tar sha256=$(sha256sum < "$out/rootfs.tar" | cut -d' ' -f1)"
  if [[ $ndrift -eq 0 ]]; then
    echo "lock_status match"
  else
    echo "lock_status DRIFT $ndrift"
    sed 's/^/drift /' "$out/drift.txt"
  fi
  sed 's/^/package /' "$out/manifest.txt"
} > "$out/provenance.txt"
echo "mmdebstrap_locked: built $out/rootfs.tar ($attempt, $ndrift package(s) differ from the lock)" >&2
