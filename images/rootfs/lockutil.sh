#!/bin/sh
# lockutil.sh: read kiln package lock files and compare them with what was installed.
#
# A lock file (images/rootfs/*.lock) is the whole request for one Debian root plus the
# versions it resolved to:
#
#   # comment
#   @suite bookworm                                   request: Debian suite
#   @variant essential                                request: mmdebstrap --variant
#   @include runc busybox-static                      request: packages asked for (names only)
#   @source deb http://deb.debian.org/debian bookworm main    request: one apt source line each
#   @source_date_epoch 1700000000                     request: SOURCE_DATE_EPOCH of the build
#   base-files 12.4+deb12u15 SHA256 URL               resolved: "package version sha256 url", one
#                                                     per line: the .deb's sha256 and where Debian
#                                                     serves it (a lock written before sha256s may
#                                                     have "package version" lines only)
#
# A manifest is "package version" lines, as written by
#   dpkg-query --admindir=ROOT/var/lib/dpkg -W -f '${Package} ${Version}\n'
#
# Usage:
#   lockutil.sh request LOCK KEY        print the value(s) of "@KEY" (one line per occurrence)
#   lockutil.sh pins LOCK               print the resolved "package version" lines, sorted
#   lockutil.sh debs LOCK               print "package version sha256 url" for every pin, sorted;
#                                       exit 1 if a pin has no sha256/url
#   lockutil.sh include-arg LOCK        print mmdebstrap's --include value: pkg=version for
#                                       every pin, then every requested name without a pin
#   lockutil.sh compare LOCK MANIFEST   print the drift, one line per package, sorted:
#                                         moved PKG PINNED USED
#                                         added PKG - USED       (installed, not in the lock)
#                                         removed PKG PINNED -   (in the lock, not installed)
#                                       nothing when the root matches the lock exactly
#   lockutil.sh check LOCK              validate the syntax; prints each error, exit 1 on any
#
# Exit status: 0 on success, 1 on a malformed lock/manifest, 2 on bad usage.
set -eu

die() { echo "lockutil: $*" >&2; exit 1; }
usage() { echo "usage: lockutil.sh request LOCK KEY | pins LOCK | debs LOCK | include-arg LOCK | compare LOCK MANIFEST | check LOCK" >&2; exit 2; }

# check_lock LOCK: every line is blank, a comment, a known @key with a value, or "pkg version".
check_lock() {
  [ -r "$1" ] || die "cannot read lock file: $1"
  awk -v f="$1" '
    /^[ \t]*(#|$)/ { next }
    /^@/ {
      k = substr($1, 2)
      if (k != "suite" && k != "variant" && k != "include" && k != "source" && k != "source_date_epoch") {
        printf "%s:%d: unknown request key @%s\n", f, NR, k; bad = 1; next
      }
      if (NF < 2) { printf "%s:%d: @%s has no value\n", f, NR, k; bad = 1; next }
      if (k == "source_date_epoch" && $2 !~ /^[0-9]+$/) {
        printf "%s:%d: @source_date_epoch must be an integer (seconds), got %s\n", f, NR, $2; bad = 1
      }
      seen[k]++
      next
    }
    (NF != 2 && NF != 4) || $1 !~ /^[a-z0-9][a-z0-9+.-]+$/ {
      printf "%s:%d: expected \"package version sha256 url\", got: %s\n", f, NR, $0; bad = 1; next
    }
    NF == 4 && ($3 !~ /^[0-9a-f]+$/ || length($3) != 64) {
      printf "%s:%d: %s: sha256 must be 64 hex digits, got %s\n", f, NR, $1, $3; bad = 1; next
    }
    NF == 4 && $4 !~ /^(https?|file):\/\/[^ ]+\.deb$/ {
      printf "%s:%d: %s: url must be http(s):// or file:// and end in .deb, got %s\n", f, NR, $1, $4; bad = 1; next
    }
    ($1 in pin) { printf "%s:%d: package %s pinned twice\n", f, NR, $1; bad = 1 }
    { pin[$1] = $2 }
    END {
      if (!seen["suite"]) { printf "%s: missing @suite\n", f; bad = 1 }
      if (!seen["variant"]) { printf "%s: missing @variant\n", f; bad = 1 }
      if (!seen["source"]) { printf "%s: missing @source\n", f; bad = 1 }
      if (!seen["source_date_epoch"]) { printf "%s: missing @source_date_epoch\n", f; bad = 1 }
      exit bad
    }' "$1" >&2 || die "malformed lock file: $1"
}

# pins LOCK: sorted "package version" lines.
pins() { awk '/^[ \t]*(#|$)/ || /^@/ { next } { print $1, $2 }' "$1" | LC_ALL=C sort; }

request() {
  awk -v k="@$2" '$1 == k { sub(/^[^ \t]+[ \t]+/, ""); print }' "$1"
}

cmd=${1:-}
case "$cmd" in
  check)
    [ $# -eq 2 ] || usage
    check_lock "$2" ;;
  request)
    [ $# -eq 3 ] || usage
    check_lock "$2"
    request "$2" "$3" ;;
  pins)
    [ $# -eq 2 ] || usage
    check_lock "$2"
    pins "$2" ;;
  debs)
    [ $# -eq 2 ] || usage
    check_lock "$2"
    awk '/^[ \t]*(#|$)/ || /^@/ { next }
         NF != 4 { printf "lockutil: %s: %s %s has no sha256 and url (run refresh_lock.sh)\n", FILENAME, $1, $2 > "/dev/stderr"; bad = 1 }
         END { exit bad }' "$2" || exit 1
    awk '/^[ \t]*(#|$)/ || /^@/ { next } { print $1, $2, $3, $4 }' "$2" | LC_ALL=C sort ;;
  include-arg)
    [ $# -eq 2 ] || usage
    check_lock "$2"
    {
      pins "$2" | awk '{ printf "%s=%s\n", $1, $2; pinned[$1] = 1 }
        END { for (p in pinned) print "#pinned " p }'
      request "$2" include | tr ' \t' '\n\n' | grep -v '^$' | sed 's/^/#want /'
    } | awk '
      /^#pinned / { pinned[$2] = 1; next }
      /^#want /   { want[++n] = $2; next }
      { out = out sep $0; sep = "," }
      END {
        for (i = 1; i <= n; i++) if (!(want[i] in pinned) && !(want[i] in done)) {
          out = out sep want[i]; sep = ","; done[want[i]] = 1
        }
        print out
      }' ;;
  compare)
    [ $# -eq 3 ] || usage
    check_lock "$2"
    [ -r "$3" ] || die "cannot read manifest: $3"
    awk 'NF != 2 { printf "lockutil: %s:%d: expected \"package version\", got: %s\n", FILENAME, NR, $0 > "/dev/stderr"; bad = 1 }
         END { exit bad }' "$3" || die "malformed manifest: $3"
    pins "$2" > "${TMPDIR:-/tmp}/lockutil.$$.pins"
    trap 'rm -f "${TMPDIR:-/tmp}/lockutil.$$.pins"' EXIT
    awk 'FILENAME == ARGV[1] { pin[$1] = $2; next }
         { used[$1] = $2 }
         END {
           for (p in used) {
             if (!(p in pin)) print "added", p, "-", used[p]
             else if (pin[p] != used[p]) print "moved", p, pin[p], used[p]
           }
           for (p in pin) if (!(p in used)) print "removed", p, pin[p], "-"
         }' "${TMPDIR:-/tmp}/lockutil.$$.pins" "$3" | LC_ALL=C sort -k2,2 -k1,1 ;;
  *) usage ;;
esac
