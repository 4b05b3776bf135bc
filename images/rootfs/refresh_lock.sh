#!/bin/bash
# refresh_lock.sh: re-resolve a kiln package lock against Debian's archive as it is today.
#
# Usage: images/rootfs/refresh_lock.sh [testroot|builder|builder-trixie|all]...   (default: all = testroot builder)
#
# For each named lock (images/rootfs/NAME.lock) it builds the root once with mmdebstrap,
# unpinned (names from @include only), and rewrites the lock's resolved "package version" lines
# with what was installed. The request lines (@suite, @variant, @include, @source,
# @source_date_epoch) and comments are kept. To add a package: add it to @include, run this,
# commit the lock. Needs root and the network (Debian's archive); ~1 min per root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Under `bazel run //images/rootfs:refresh_lock`, write the locks in the source tree.
[[ -n "${BUILD_WORKSPACE_DIRECTORY:-}" ]] && here=$BUILD_WORKSPACE_DIRECTORY/images/rootfs
names=("$@")
[[ ${#names[@]} -eq 0 || "${names[0]}" == all ]] && names=(testroot builder)

for name in "${names[@]}"; do
  lock=$here/$name.lock
  [[ -f "$lock" ]] || { echo "refresh_lock: no such lock: $lock" >&2; exit 2; }
  tmp=$(mktemp -d /tmp/kiln-refresh-lock.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  echo "refresh_lock: resolving $lock ..." >&2
  "$here/mmdebstrap_locked.sh" --unpinned "$lock" "$tmp"
  "$here/lockutil.sh" compare "$lock" "$tmp/manifest.txt" | sed 's/^/refresh_lock: /' >&2 || true
  {
    awk '/^[ \t]*#/ || /^@/ || /^[ \t]*$/ { print }' "$lock" | awk 'NF || !blank { print } { blank = !NF }'
    cat "$tmp/manifest.txt"
  } > "$tmp/new.lock"
  "$here/lockutil.sh" check "$tmp/new.lock"
  cp "$tmp/new.lock" "$lock"
  echo "refresh_lock: wrote $lock ($(wc -l < "$tmp/manifest.txt") packages)" >&2
  rm -rf "$tmp"
  trap - EXIT
done
