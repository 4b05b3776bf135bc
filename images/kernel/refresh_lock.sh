#!/usr/bin/env bash
# images/kernel/refresh_lock.sh: rewrite kernel.lock.json to the current Debian candidate.
#
# Follows the lock's metapackage (linux-image-cloud-amd64) to the kernel package it depends on
# today, takes that package's candidate version, SHA256 and download url from apt's lists (after
# `apt-get update`, unless --no-update), downloads the .deb to check the SHA256, rewrites the
# lock and prints what moved. Commit the new lock; the next build re-fetches @kiln_kernel.
#
# Usage: images/kernel/refresh_lock.sh [--no-update] [--lock PATH]
#   (`bazel run //images/kernel:refresh_lock` works too: it edits the lock in the workspace.)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock="${BUILD_WORKSPACE_DIRECTORY:+$BUILD_WORKSPACE_DIRECTORY/images/kernel/kernel.lock.json}"
lock="${lock:-$here/kernel.lock.json}"
update=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-update) update=0 ;;
    --lock) lock="$2"; shift ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "refresh_lock.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -f "$lock" ]] || { echo "refresh_lock.sh: no lock file at $lock" >&2; exit 1; }

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$lock" "$1"; }
meta="$(field metapackage)"; arch="$(field architecture)"
old_pkg="$(field package)"; old_ver="$(field version)"; old_sha="$(field sha256)"

export DEBIAN_FRONTEND=noninteractive LC_ALL=C
if [[ $update -eq 1 ]]; then
  echo "refresh_lock.sh: apt-get update" >&2
  apt-get update -qq
fi
pkg="$(apt-cache depends --no-recommends --no-suggests --important "$meta:$arch" |
       sed -n 's/^ *Depends: \(linux-image-[^: ]*\).*/\1/p' | head -1)"
[[ -n "$pkg" ]] || { echo "refresh_lock.sh: $meta has no linux-image-* dependency in apt's lists" >&2; exit 1; }
show="$(apt-cache show --no-all-versions "$pkg:$arch")"
ver="$(sed -n 's/^Version: //p' <<<"$show" | head -1)"
sha="$(sed -n 's/^SHA256: //p' <<<"$show" | head -1)"
[[ -n "$ver" && -n "$sha" ]] || { echo "refresh_lock.sh: no Version/SHA256 for $pkg" >&2; exit 1; }

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg:$arch=$ver" >/dev/null 2>&1) ||
  { echo "refresh_lock.sh: apt-get download $pkg=$ver failed" >&2; exit 1; }
got="$(sha256sum "$tmp"/*.deb | cut -d' ' -f1)"
url="$(apt-get download --print-uris -q "$pkg:$arch=$ver" | sed -n "s/^'\([^']*\)'.*/\1/p" | head -1)"
[[ "$url" == http*.deb ]] || { echo "refresh_lock.sh: no download url for $pkg=$ver" >&2; exit 1; }
[[ "$got" == "$sha" ]] || { echo "refresh_lock.sh: downloaded sha256 $got != apt's $sha" >&2; exit 1; }

python3 - "$lock" "$meta" "$pkg" "$ver" "$arch" "$sha" "$url" <<'PY'
import json, sys
path, meta, pkg, ver, arch, sha, url = sys.argv[1:]
with open(path, "w") as f:
    json.dump({"metapackage": meta, "package": pkg, "version": ver, "architecture": arch,
               "sha256": sha, "url": url}, f, indent=2)
    f.write("\n")
PY

if [[ "$old_pkg $old_ver $old_sha" == "$pkg $ver $sha" ]]; then
  echo "refresh_lock.sh: unchanged: $pkg $ver ($sha)"
else
  echo "refresh_lock.sh: kernel lock moved:"
  echo "  package: $old_pkg -> $pkg"
  echo "  version: $old_ver -> $ver"
  echo "  sha256:  $old_sha -> $sha"
fi
