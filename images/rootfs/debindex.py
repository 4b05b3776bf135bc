#!/usr/bin/env python3
"""debindex.py: look up a kiln lock's pins in the Debian archive's Packages indexes.

Usage:
  debindex.py resolve LOCK            one line per pin, sorted by package:
                                        ok PKG VERSION SHA256 URL     the archive serves the pin
                                        moved PKG PINNED AVAILABLE    it does not; AVAILABLE is the
                                                                      version it serves ("-": none)
  debindex.py annotate LOCK [--accept-moved]
                                      rewrite LOCK's pins as "PKG VERSION SHA256 URL" (request
                                      lines and comments kept). A pin the archive no longer serves
                                      is an error (exit 1, each one named) unless --accept-moved,
                                      which replaces it with the available version. Prints every
                                      version it changes as "PKG: OLD -> NEW".

The indexes are dists/SUITE/COMPONENT/binary-amd64/Packages.xz of every "@source deb URI SUITE
COMPONENT..." line of the lock. URLs in the lock always name the @source URI (e.g.
http://deb.debian.org/debian/pool/main/...). KILN_DEBIAN_MIRROR=BASE (e.g. file:///srv/mirror or
http://mirror.example) fetches from BASE instead of http://deb.debian.org: BASE/debian/dists/...
Exit status: 0 ok, 1 moved pins (annotate) or an unreadable index, 2 bad usage.
"""
import lzma
import os
import sys
import urllib.request

ARCH = "amd64"
DEBIAN = "http://deb.debian.org"


def mirrored(url):
    base = os.environ.get("KILN_DEBIAN_MIRROR", "").rstrip("/")
    if base and url.startswith(DEBIAN + "/"):
        return base + url[len(DEBIAN):]
    return url


def read_lock(path):
    sources, pins = [], {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] == "@source":
                sources.append(fields[1:])
            elif not fields[0].startswith("@"):
                pins[fields[0]] = fields[1]
    return sources, pins


def fetch_index(uri, suite, component):
    url = mirrored("%s/dists/%s/%s/binary-%s/Packages.xz" % (uri.rstrip("/"), suite, component, ARCH))
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return lzma.decompress(r.read()).decode("utf-8", "replace")
    except Exception as e:  # a mirror without this suite holds nothing
        print("debindex: cannot read %s: %s" % (url, e), file=sys.stderr)
        return ""


def archive(sources):
    """{package: [(version, sha256, url)]} over every source, in source order."""
    served = {}
    for src in sources:
        if len(src) < 4 or src[0] != "deb":
            continue
        uri, suite = src[1], src[2]
        for comp in src[3:]:
            for stanza in fetch_index(uri, suite, comp).split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if line and not line[0].isspace() and ":" in line:
                        k, v = line.split(":", 1)
                        fields[k] = v.strip()
                if "Package" in fields and "Filename" in fields:
                    served.setdefault(fields["Package"], []).append(
                        (fields.get("Version", ""), fields.get("SHA256", ""),
                         "%s/%s" % (uri.rstrip("/"), fields["Filename"])))
    return served


def newest(entries):
    """The last-listed entry of the highest version (dpkg order via apt_pkg if present)."""
    try:
        import apt_pkg
        apt_pkg.init_system()
        best = entries[0]
        for e in entries[1:]:
            if apt_pkg.version_compare(e[0], best[0]) > 0:
                best = e
        return best
    except ImportError:
        return entries[-1]


def resolve(lock):
    sources, pins = read_lock(lock)
    served = archive(sources)
    out = []
    for pkg in sorted(pins):
        entries = served.get(pkg, [])
        hit = [e for e in entries if e[0] == pins[pkg]]
        if hit:
            out.append(("ok", pkg, pins[pkg], hit[0][1], hit[0][2]))
        else:
            out.append(("moved", pkg, pins[pkg]) + (newest(entries) if entries else ("-", "", "")))
    return out


def main(argv):
    if len(argv) >= 2 and argv[0] == "resolve" and len(argv) == 2:
        for r in resolve(argv[1]):
            print(" ".join(r[:5]) if r[0] == "ok" else " ".join(r[:4]))
        return 0
    if len(argv) in (2, 3) and argv[0] == "annotate" and (len(argv) == 2 or argv[2] == "--accept-moved"):
        lock, accept = argv[1], len(argv) == 3
        rows = resolve(lock)
        moved = [r for r in rows if r[0] == "moved"]
        if moved and (not accept or any(r[3] == "-" for r in moved)):
            for r in moved:
                print("debindex: %s: pin gone: %s %s (archive serves %s)" % (lock, r[1], r[2], r[3]), file=sys.stderr)
            return 1
        with open(lock) as f:
            head = [l for l in f if l.split()[:1] == [] or l.lstrip().startswith(("#", "@"))]
        while head and not head[-1].strip():
            head.pop()
        with open(lock + ".new", "w") as f:
            f.writelines(head)
            f.write("\n")
            for r in rows:
                ver, sha, url = (r[2], r[3], r[4]) if r[0] == "ok" else (r[3], r[4], r[5])
                f.write("%s %s %s %s\n" % (r[1], ver, sha, url))
        os.replace(lock + ".new", lock)
        for r in moved:
            print("%s: %s -> %s" % (r[1], r[2], r[3]))
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
