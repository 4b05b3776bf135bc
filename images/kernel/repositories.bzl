"""The pinned Debian kernel package, fetched by url and sha256 (else with apt).

`kernel_repositories()` declares `@kiln_kernel`, made by `kernel_deb_repository` from the lock
file `//images/kernel:kernel.lock.json`:

    {"metapackage": "linux-image-cloud-amd64",            # followed when the pin expires
     "package": "linux-image-6.1.0-57-cloud-amd64",       # the pinned binary package
     "version": "6.1.192-3", "architecture": "amd64",
     "sha256": "<sha256 of the .deb>",
     "url": "http://deb.debian.org/debian-security/pool/.../<package>_<version>_amd64.deb"}

The rule first fetches the .deb by "url" and "sha256": Bazel's downloader (repository cache,
--distdir, e.g. a directory filled by tools/fill-package-cache), else curl from the url
(KILN_DEBIAN_MIRROR=BASE replaces http://deb.debian.org) with the sha256 checked. Only when
neither has it does it ask apt, where pins expire: Debian's archive serves only the current
version of a package. Then:
  1. pinned version available (`apt-cache show P=V`)  -> `apt-get download P=V`; its sha256 must
     equal the lock's (mismatch: fail);
  2. pinned version gone and KILN_STRICT_LOCK=1       -> fail, naming the pin and the candidate;
  3. pinned version gone otherwise                    -> the metapackage's current dependency
     at its candidate version, checked against apt's own SHA256, a loud WARNING naming pinned
     vs used, and both recorded in provenance.json (shipped with //images:kernel).
If the apt lists are missing or stale (version unknown, or the download fails), it runs
`apt-get update` once and retries. `images/kernel/refresh_lock.sh` rewrites the lock to the
current candidate. The rule re-runs when the lock file, KILN_STRICT_LOCK or KILN_DEBIAN_MIRROR
changes.

The .deb is unpacked with `dpkg-deb -x` and `depmod -b` writes modules.dep and its indexes,
so that build actions can resolve module load orders offline. Targets of @kiln_kernel:
  :vmlinuz          the bzImage (boot/vmlinuz-<kver>)
  :modules_tree     every file under lib/modules/<kver>/ (.ko files + depmod indexes)
  :modules_dep_bin  lib/modules/<kver>/modules.dep.bin alone (locates the module directory)
  :provenance.json  pinned vs used package, version, sha256, kernel release
  kernel.bzl        KERNEL_RELEASE = "<kver>", for BUILD files
"""

_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}

def _run(rctx, argv, what, allow_fail = False, working_directory = ""):
    res = rctx.execute(argv, environment = _APT_ENV, working_directory = working_directory, timeout = 900)
    if res.return_code != 0 and not allow_fail:
        fail("kiln kernel: %s failed (%s):\n%s%s" % (what, " ".join(argv), res.stdout, res.stderr))
    return res

def _tool(rctx, name):
    for p in [rctx.which(name), "/usr/sbin/" + name, "/sbin/" + name, "/usr/bin/" + name]:
        if p and rctx.path(str(p)).exists:
            return str(p)
    fail("kiln kernel: %s not found (run tools/setup)" % name)

def _show_field(text, field):
    for line in text.splitlines():
        if line.startswith(field + ": "):
            return line[len(field) + 2:].strip()
    return ""

def _pinned_available(rctx, lock):
    spec = "%s:%s=%s" % (lock["package"], lock["architecture"], lock["version"])
    res = _run(rctx, ["apt-cache", "show", "--no-all-versions", spec], "apt-cache show", allow_fail = True)
    return res.return_code == 0 and _show_field(res.stdout, "Version") == lock["version"]

def _candidate(rctx, lock):
    """The metapackage's current kernel package: (package, version, sha256 from apt's lists)."""
    arch = lock["architecture"]
    res = _run(rctx, ["apt-cache", "depends", "--no-recommends", "--no-suggests", "--important",
                      "%s:%s" % (lock["metapackage"], arch)], "apt-cache depends", allow_fail = True)
    pkg = ""
    for line in res.stdout.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            pkg = line[len("Depends: "):].split(":")[0].strip()
            break
    if not pkg:
        return None
    show = _run(rctx, ["apt-cache", "show", "--no-all-versions", "%s:%s" % (pkg, arch)],
                "apt-cache show", allow_fail = True)
    if show.return_code != 0:
        return None
    return struct(package = pkg, version = _show_field(show.stdout, "Version"),
                  sha256 = _show_field(show.stdout, "SHA256"))

def _download(rctx, package, arch, version, dest):
    """apt-get download into `dest`; returns the .deb path or None."""
    rctx.execute(["rm", "-rf", dest])
    rctx.execute(["mkdir", "-p", dest])
    res = _run(rctx, ["apt-get", "download", "-q", "%s:%s=%s" % (package, arch, version)],
               "apt-get download", allow_fail = True, working_directory = dest)
    if res.return_code != 0:
        return None
    ls = rctx.execute(["sh", "-c", "ls '%s'/*.deb" % dest])
    debs = [l for l in ls.stdout.splitlines() if l.strip()]
    return debs[0] if len(debs) == 1 else None

def _sha256(rctx, path):
    res = _run(rctx, ["sha256sum", path], "sha256sum")
    return res.stdout.split(" ")[0].strip()

def _resolve_and_download(rctx, lock, strict, dest, allow_fallback):
    """One attempt. Returns struct(deb, package, version, sha256, pinned) or an error string.

    Without `allow_fallback`, a pinned version missing from the lists is an error string (the
    caller then updates the lists and retries with the fallback allowed).
    """
    if _pinned_available(rctx, lock):
        deb = _download(rctx, lock["package"], lock["architecture"], lock["version"], dest)
        if not deb:
            return "apt-get download %s=%s failed" % (lock["package"], lock["version"])
        got = _sha256(rctx, deb)
        if got != lock["sha256"]:
            fail(("kiln kernel: sha256 mismatch for %s %s: lock says %s, downloaded .deb is %s. " +
                  "The archive served different bytes for the pinned version; refusing to use them.") %
                 (lock["package"], lock["version"], lock["sha256"], got))
        return struct(deb = deb, package = lock["package"], version = lock["version"], sha256 = got, pinned = True)
    if not allow_fallback:
        return "pinned %s %s not in the apt lists" % (lock["package"], lock["version"])
    cand = _candidate(rctx, lock)
    if strict:
        return struct(strict_fail = ("kiln kernel: pinned %s %s is no longer in the apt archive and " +
                                     "KILN_STRICT_LOCK=1. Current candidate: %s. Run " +
                                     "images/kernel/refresh_lock.sh and commit the lock.") %
                                    (lock["package"], lock["version"],
                                     "%s %s" % (cand.package, cand.version) if cand else "none"))
    if not cand:
        return "no candidate for %s in the apt lists" % lock["metapackage"]
    deb = _download(rctx, cand.package, lock["architecture"], cand.version, dest)
    if not deb:
        return "apt-get download %s=%s failed" % (cand.package, cand.version)
    got = _sha256(rctx, deb)
    if got != cand.sha256:
        fail("kiln kernel: sha256 of %s %s is %s but apt's lists say %s" % (cand.package, cand.version, got, cand.sha256))
    return struct(deb = deb, package = cand.package, version = cand.version, sha256 = got, pinned = False)

def _fetch_by_hash(rctx, lock, dest):
    """The pinned .deb by the lock's url and sha256, or None.

    First Bazel's downloader (the repository cache, --distdir; the network only when downloads
    are allowed: .bazelrc disables them), then curl from the url (KILN_DEBIAN_MIRROR=BASE
    replaces http://deb.debian.org), checked against the sha256.
    """
    url = lock.get("url", "")
    if not url:
        return None
    mirror = rctx.os.environ.get("KILN_DEBIAN_MIRROR", "")
    if mirror and url.startswith("http://deb.debian.org/"):
        url = mirror.rstrip("/") + url[len("http://deb.debian.org"):]
    deb = dest + "/" + url.split("/")[-1]
    res = rctx.download(url = [url], output = deb, sha256 = lock["sha256"], allow_fail = True)
    if not res.success:
        rctx.execute(["mkdir", "-p", dest])
        curl = rctx.execute(["curl", "-fsSL", "--retry", "2", "-o", deb, url], timeout = 900)
        if curl.return_code != 0 or _sha256(rctx, deb) != lock["sha256"]:
            rctx.execute(["rm", "-f", deb])
            return None
    return struct(deb = deb, package = lock["package"], version = lock["version"], sha256 = lock["sha256"], pinned = True)

def _kernel_deb_repository_impl(rctx):
    lock_path = rctx.path(rctx.attr.lock)
    lock = json.decode(rctx.read(lock_path))
    for key in ["metapackage", "package", "version", "architecture", "sha256"]:
        if not lock.get(key):
            fail("kiln kernel: %s has no \"%s\"" % (rctx.attr.lock, key))
    strict = rctx.os.environ.get("KILN_STRICT_LOCK", "") == "1"
    dest = str(rctx.path("_deb"))

    got = _fetch_by_hash(rctx, lock, dest)
    if not got:
        got = _resolve_and_download(rctx, lock, strict, dest, allow_fallback = False)
    if type(got) == "string":
        # The apt lists may be missing or stale: update them once and retry, now allowing the
        # expired-pin fallback.
        rctx.report_progress("apt-get update (lists missing or stale)")
        _run(rctx, ["apt-get", "update", "-q"], "apt-get update", allow_fail = True)
        got = _resolve_and_download(rctx, lock, strict, dest, allow_fallback = True)
    if hasattr(got, "strict_fail"):
        fail(got.strict_fail)
    if type(got) == "string":
        fail("kiln kernel: %s (after apt-get update)" % got)

    if not got.pinned:
        msg = ("\n" + "=" * 78 + "\nWARNING: kiln kernel lock expired: pinned %s %s is gone from the apt " +
               "archive;\nWARNING: using %s %s (sha256 %s) instead.\nWARNING: recorded in " +
               "@kiln_kernel//:provenance.json; run images/kernel/refresh_lock.sh to update the lock,\n" +
               "WARNING: or set KILN_STRICT_LOCK=1 to fail instead.\n" + "=" * 78) % (
            lock["package"], lock["version"], got.package, got.version, got.sha256)
        print(msg)

    _run(rctx, ["dpkg-deb", "-x", got.deb, "root"], "dpkg-deb -x")
    rctx.execute(["rm", "-rf", dest])
    ls = _run(rctx, ["ls", "root/lib/modules"], "ls lib/modules")
    kvers = [k for k in ls.stdout.splitlines() if k.strip()]
    if len(kvers) != 1:
        fail("kiln kernel: expected one lib/modules/<kver> in %s, found %s" % (got.package, kvers))
    kver = kvers[0]
    if not rctx.path("root/boot/vmlinuz-" + kver).exists:
        fail("kiln kernel: %s has no boot/vmlinuz-%s" % (got.package, kver))
    _run(rctx, [_tool(rctx, "depmod"), "-b", str(rctx.path("root")), kver], "depmod")

    provenance = {
        "kernel_release": kver,
        "lock": {"package": lock["package"], "version": lock["version"], "sha256": lock["sha256"]},
        "used": {"package": got.package, "version": got.version, "sha256": got.sha256},
        "pinned": got.pinned,
        "source": "the lock's url by sha256, or Debian's apt archive (apt-get download); unpacked with dpkg-deb -x",
    }
    rctx.file("provenance.json", json.encode_indent(provenance, indent = "  ") + "\n")
    rctx.file("kernel.bzl", 'KERNEL_RELEASE = "%s"\nKERNEL_PACKAGE = "%s"\nKERNEL_VERSION = "%s"\nKERNEL_PINNED = %s\n' % (
        kver,
        got.package,
        got.version,
        "True" if got.pinned else "False",
    ))
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD", """# Generated by //images/kernel:repositories.bzl from %s %s.
package(default_visibility = ["//visibility:public"])

exports_files(["provenance.json", "kernel.bzl"])

filegroup(
    name = "vmlinuz",
    srcs = ["root/boot/vmlinuz-%s"],
)

filegroup(
    name = "modules_tree",
    srcs = glob(["root/lib/modules/%s/**"]),
)

# One file of the module directory, to locate it (e.g. with $(rootpath)).
filegroup(
    name = "modules_dep_bin",
    srcs = ["root/lib/modules/%s/modules.dep.bin"],
)
""" % (got.package, got.version, kver, kver, kver))

kernel_deb_repository = repository_rule(
    implementation = _kernel_deb_repository_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True, doc = "the lock file (JSON)"),
    },
    environ = ["KILN_STRICT_LOCK", "KILN_DEBIAN_MIRROR"],
    doc = "A Debian kernel package pinned by a lock file, fetched by url and sha256 (else apt-get download).",
)

def kernel_repositories():
    kernel_deb_repository(
        name = "kiln_kernel",
        lock = "//images/kernel:kernel.lock.json",
    )
