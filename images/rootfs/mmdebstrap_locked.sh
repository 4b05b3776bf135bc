#!/bin/bash
# mmdebstrap_locked.sh: build a Debian root filesystem tar from a kiln lock file with mmdebstrap,
# requesting the locked versions, and report (or refuse) any drift from the lock.
#
# Usage: mmdebstrap_locked.sh [--strict] [--unpinned] [--debs DIR] LOCK OUTDIR
#   LOCK      a lock file (format: lockutil.sh); its @request lines say what to build
#   OUTDIR    gets: rootfs.tar       the root (mmdebstrap tar, SOURCE_DATE_EPOCH from the lock)
#                   manifest.txt     installed "package version" lines, sorted
#                   drift.txt        lockutil.sh compare output (empty: the root matches the lock)
#                   provenance.txt   what was asked for, what was used, and every difference
#                   mmdebstrap.log   the output of every mmdebstrap attempt
#   --strict    fail (exit 1) if any package differs from the lock (also: env KILN_STRICT_LOCK=1)
#   --unpinned  request names only (refresh_lock.sh uses this to resolve current versions)
#   --debs DIR  build from the lock's own .debs ("package version sha256 url" pins): DIR holds
#               the locked .debs, each named as the last part of its url (debian_rootfs.bzl fills
#               it from Bazel's repository cache / --distdir). A missing one is fetched from its
#               url (KILN_DEBIAN_MIRROR=BASE replaces http://deb.debian.org) with curl; every file
#               must have the lock's sha256 (else exit 1). With all present, DIR becomes a local
#               apt repository (dpkg-scanpackages) and mmdebstrap installs from it alone, never
#               from what the archive serves that day; /etc/apt/sources.list gets the @source
#               lines. Pins that are in DIR and no longer served ("gone") are each named in a
#               WARNING with the version the archive serves now, recorded as "pin_moved" in
#               provenance.txt, and the build degrades to the archive (below) without those pins;
#               KILN_STRICT_LOCK=1 fails instead.
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
debs=
[[ "${KILN_STRICT_LOCK:-}" == 1 ]] && strict=1
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --strict) strict=1 ;;
    --unpinned) unpinned=1 ;;
    --debs) debs=${2:?--debs needs a directory}; shift ;;
    *) echo "mmdebstrap_locked: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $# -eq 2 ]] || { echo "usage: mmdebstrap_locked.sh [--strict] [--unpinned] [--debs DIR] LOCK OUTDIR" >&2; exit 2; }
lock=$1
out=$2
mkdir -p "$out"
out=$(cd "$out" && pwd)

"$lockutil" check "$lock"
suite=$("$lockutil" request "$lock" suite | head -n1)
variant=$("$lockutil" request "$lock" variant | head -n1)
epoch=$("$lockutil" request "$lock" source_date_epoch | head -n1)
mapfile -t sources < <("$lockutil" request "$lock" source)
lock_sources=("${sources[@]}")
debindex=${DEBINDEX:-$here/debindex.py}

# mirrored URL: the URL with http://deb.debian.org replaced by $KILN_DEBIAN_MIRROR (if set).
mirrored() {
  local m=${KILN_DEBIAN_MIRROR:-}
  m=${m%/}
  if [[ -n "$m" ]]; then echo "${1//http:\/\/deb.debian.org/$m}"; else echo "$1"; fi
}
for i in "${!sources[@]}"; do sources[$i]=$(mirrored "${sources[$i]}"); done
names=$("$lockutil" request "$lock" include | tr -s ' \t' ',,' | sed 's/^,//; s/,$//')
pinned_arg=$("$lockutil" include-arg "$lock")

log=$out/mmdebstrap.log
: > "$log"
rm -f "$out/rootfs.tar" "$out/manifest.txt"

# From the local repository, the root's sources.list names the lock's sources, not copy://
# (the same text mmdebstrap writes for them).
local_hook=

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
    ${local_hook:+--customize-hook="$local_hook"} \
    --customize-hook='dpkg-query --admindir="$1/var/lib/dpkg" -W -f "\${Package} \${Version}\n" | LC_ALL=C sort > "'"$out"'/manifest.txt"' \
    "$suite" "$out/rootfs.tar" "${sources[@]}" >> "$log" 2>&1
}

# drop_pins "PKG...": the pinned --include value with those packages asked for by name only.
drop_pins() {
  echo "$pinned_arg" | tr ',' '\n' | awk -v gone="$1" '
    BEGIN { n = split(gone, g, " "); for (i = 1; i <= n; i++) drop[g[i]] = 1 }
    { split($0, kv, "="); if (kv[1] in drop) print kv[1]; else print $0 }' | paste -sd, -
}

sha_of() { sha256sum < "$1" | cut -d' ' -f1; }

# --debs: every locked .deb by sha256, from DIR or fetched; the names of pins that are gone.
gone_pins=()
moved_lines=()
local_repo=0
if [[ -n "$debs" && $unpinned == 0 ]]; then
  mkdir -p "$debs"
  debs=$(cd "$debs" && pwd)
  mapfile -t locked < <("$lockutil" debs "$lock")
  cached=0 fetched=0
  for row in "${locked[@]}"; do
    read -r pkg ver sha url <<< "$row"
    f=$debs/${url##*/}
    if [[ -f "$f" && $(sha_of "$f") == "$sha" ]]; then cached=$((cached + 1)); continue; fi
    rm -f "$f"
    if curl -fsSL --retry 2 -o "$f.part" "$(mirrored "$url")" 2>> "$log"; then
      got=$(sha_of "$f.part")
      if [[ "$got" != "$sha" ]]; then
        rm -f "$f.part"
        echo "mmdebstrap_locked: ERROR: $(mirrored "$url") ($pkg $ver) has sha256 $got, the lock says $sha; refusing different bytes" >&2
        exit 1
      fi
      mv "$f.part" "$f"
      fetched=$((fetched + 1))
    else
      rm -f "$f.part"
      gone_pins+=("$pkg")
    fi
  done
  echo "mmdebstrap_locked: $(basename "$lock"): ${#locked[@]} locked .debs: $cached from the cache, $fetched fetched, ${#gone_pins[@]} gone" | tee -a "$log" >&2
  if [[ ${#gone_pins[@]} -eq 0 ]]; then
    local_repo=1
    (cd "$debs" && dpkg-scanpackages --multiversion . > Packages 2>> "$log") ||
      { echo "mmdebstrap_locked: dpkg-scanpackages failed; see $log" >&2; exit 1; }
    # A Release naming the suite: mmdebstrap selects the essential set by ?archive/?codename.
    printf 'Origin: kiln\nLabel: kiln locked packages\nSuite: %s\nCodename: %s\nArchitectures: amd64 all\nSHA256:\n %s %s Packages\n' \
      "$suite" "$suite" "$(sha_of "$debs/Packages")" "$(stat -c %s "$debs/Packages")" > "$debs/Release"
    sources=("deb [trusted=yes] copy://$debs ./")
    printf -v srclist '%s\n\n' "${lock_sources[@]}"
    printf '%s' "${srclist%$'\n'}" > "$debs/sources.list"
    local_hook="cp '$debs/sources.list' \"\$1/etc/apt/sources.list\""
  else
    # Name every gone pin with the version the archive serves now.
    declare -A avail=()
    while read -r kind pkg pinned now _; do
      [[ $kind == moved ]] && avail[$pkg]=$now
    done < <(python3 "$debindex" resolve "$lock" 2>> "$log" || true)
    echo "WARNING: ${#gone_pins[@]} pinned package(s) of $(basename "$lock") are in no cache and no longer served (mirror: ${KILN_DEBIAN_MIRROR:-http://deb.debian.org}); fill a cache with tools/fill-package-cache while they are served" >&2
    for pkg in "${gone_pins[@]}"; do
      pinned=$(awk -v p="$pkg" '$1 == p { print $2 }' <<< "$(printf '%s\n' "${locked[@]}")")
      now=${avail[$pkg]:--}
      if [[ "$now" == "$pinned" ]]; then
        echo "WARNING: pin unreachable ($(basename "$lock")): $pkg pinned=$pinned is listed by the archive but its .deb could not be fetched (see mmdebstrap.log)" >&2
      else
        echo "WARNING: pin moved ($(basename "$lock")): $pkg pinned=$pinned available=$now" >&2
      fi
      moved_lines+=("pin_moved $pkg $pinned -> $now")
    done
    if [[ $strict == 1 ]]; then
      echo "mmdebstrap_locked: ERROR: KILN_STRICT_LOCK=1 and ${#gone_pins[@]} pin(s) of $lock are gone: ${gone_pins[*]}" >&2
      exit 1
    fi
  fi
fi

attempt=pinned
if [[ ${#gone_pins[@]} -gt 0 ]]; then
  # Degrade: the archive, without the gone pins (then unpinned if that fails too).
  keep=$(drop_pins "${gone_pins[*]}")
  echo "WARNING: building $(basename "$lock") partially pinned from the archive, without those ${#gone_pins[@]} pin(s)" >&2
  attempt=partially-pinned
  if ! run_mmdebstrap "$keep"; then
    echo "WARNING: building $lock unpinned (current archive versions)" >&2
    attempt=unpinned
    run_mmdebstrap "$names" || { tail -n 30 "$log" >&2; exit 1; }
  fi
elif [[ $local_repo == 1 ]]; then
  run_mmdebstrap "$pinned_arg" || { echo "mmdebstrap_locked: the build from the local repository failed:" >&2; tail -n 30 "$log" >&2; exit 1; }
elif [[ $unpinned == 1 ]]; then
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
    keep=$(drop_pins "$gone")
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
  for s in "${lock_sources[@]}"; do echo "source $s"; done
  [[ $local_repo == 0 && -n "${KILN_DEBIAN_MIRROR:-}" ]] && echo "mirror $KILN_DEBIAN_MIRROR"
  echo "source_date_epoch $epoch"
  echo "mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
  echo "attempt $attempt"
  [[ $local_repo == 1 ]] && echo "packages local repository of the ${#locked[@]} locked .debs (sha256 from the lock)"
  for m in "${moved_lines[@]}"; do echo "$m"; done
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
