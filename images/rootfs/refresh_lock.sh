#!/bin/bash
# refresh_lock.sh: re-resolve a kiln package lock against Debian's archive as it is today.
#
# Usage: images/rootfs/refresh_lock.sh [testroot|builder|builder-trixie|all]...   (default: all)
#
# For each named lock (images/rootfs/NAME.lock) it builds the root once with mmdebstrap,
# unpinned (names from @include only), and rewrites the lock's resolved lines with what was
# installed, as "package version sha256 url" (debindex.py annotate: the archive's Packages
# indexes). It prints every version it changes, "PKG: OLD -> NEW" ("-": added or removed). The request lines (@suite, @variant, @include, @source,
# @source_date_epoch) and comments are kept. To add a package: add it to @include, run this,
# commit the lock. Needs root and the network (Debian's archive); ~1 min per root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Under `bazel run //images/rootfs:refresh_lock`, write the locks in the source tree.
[[ -n "${BUILD_WORKSPACE_DIRECTORY:-}" ]] && here=$BUILD_WORKSPACE_DIRECTORY/images/rootfs
names=("$@")
[[ ${#names[@]} -eq 0 || "${names[0]}" == all ]] && names=(testroot builder builder-trixie)

for name in "${names[@]}"; do
  lock=$here/$name.lock
  [[ -f "$lock" ]] || { echo "refresh_lock: no such lock: $lock" >&2; exit 2; }
  tmp=$(mktemp -d /tmp/kiln-refresh-lock.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  echo "refresh_lock: resolving $lock ..." >&2
  "$here/mmdebstrap_locked.sh" --unpinned "$lock" "$tmp"
  echo "refresh_lock: $name.lock:"
  "$here/lockutil.sh" compare "$lock" "$tmp/manifest.txt" | awk '{ print "  " $2 ": " $3 " -> " $4; n++ } END { if (!n) print "  (no version changed)" }' 
  {
    awk '/^[ \t]*#/ || /^@/ || /^[ \t]*$/ { print }' "$lock" | awk 'NF || !blank { print } { blank = !NF }'
    cat "$tmp/manifest.txt"
  } > "$tmp/new.lock"
  python3 "$here/debindex.py" annotate "$tmp/new.lock" > /dev/null
  "$here/lockutil.sh" check "$tmp/new.lock"
  "$here/lockutil.sh" debs "$tmp/new.lock" > /dev/null
  cp "$tmp/new.lock" "$lock"
  echo "refresh_lock: wrote $lock ($(wc -l < "$tmp/manifest.txt") packages)" >&2
  rm -rf "$tmp"
  trap - EXIT
done
