"""Integration tests of //publish:publish_bin against Debian's docker-registry on loopback
(plain HTTP, htpasswd basic auth, TLS with a generated CA) and through a fault-injecting
proxy. Each test publishes freshly generated OCI layouts (//publish/testing:make_layout)."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "testing"))
from registry_fixture import (FaultProxy, HostileServer, Recorder, RegistryFixture,  # noqa: E402
                              free_port, make_certs)

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", ""), os.environ.get("TEST_WORKSPACE", "kiln"))
PUBLISH = os.path.join(RUNFILES, "publish/publish_bin")
MAKE_LAYOUT = os.path.join(RUNFILES, "publish/testing/make_layout")
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()

EXIT_OK, EXIT_USAGE, EXIT_POLICY, EXIT_AUTH, EXIT_REGISTRY, EXIT_VERIFY = 0, 2, 3, 4, 5, 6
LAYER_BYTES = 48 * 1024
VERIFIER = os.path.join(RUNFILES, "publish/builder_verifier.sh")

# The verification gate's stand-in for registry pushes here (the real one boots VMs:
# //publish:publish_vm_test): records its arguments and the manifest digest of the image it
# was given (the pulled-back layout), prints a report line, exits $KILN_FAKE_VERIFY_EXIT.
FAKE_VERIFIER = os.path.join(TMP, "fake-verifier.sh")
with open(FAKE_VERIFIER, "w") as _f:
    _f.write("""#!/bin/sh
rec="${KILN_FAKE_VERIFY_RECORD:-/dev/null}"
printf '%s\\n' "$@" > "$rec"
img=
for a; do case "$a" in --builder_image=*) img="${a#--builder_image=}";; esac; done
python3 -c 'import json, sys; print(json.load(open(sys.argv[1] + "/index.json"))["manifests"][0]["digest"])' "$img" >> "$rec"
code="${KILN_FAKE_VERIFY_EXIT:-0}"
[ "$code" = 0 ] || echo "  FAIL  fake-check  the fake verifier was told to fail"
echo "1 checks: done"
exit "$code"
""")
os.chmod(FAKE_VERIFIER, 0o755)


def make_layout(name, seed=1, change=-1, layers=3):
    out = os.path.join(TMP, "layouts", name)
    subprocess.run([MAKE_LAYOUT, out, "--layers", str(layers), "--layer-bytes", str(LAYER_BYTES),
                    "--seed", str(seed), "--change", str(change)], check=True, capture_output=True)
    return out


def blob_sizes(layout):
    with open(os.path.join(layout, "index.json")) as f:
        md = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(layout, "blobs/sha256", md[7:])) as f:
        m = json.load(f)
    return {d["digest"]: d["size"] for d in m["layers"] + [m["config"]]}


class Publisher:
    def __init__(self, test, registry):
        self.test = test
        self.registry = registry
        self.lock = os.path.join(TMP, "lock-%s.json" % test.id().split(".")[-1])

    def run(self, layout, version, repo=None, host=None, extra=(), stdin=None, lock=None,
            expect=EXIT_OK, measure=False, verifier=FAKE_VERIFIER, env_extra=None):
        cmd = [PUBLISH, "--layout", layout, "--version", version, "--json",
               "--lock", lock or self.lock, "--source-commit", "0123abcd",
               "--package-lock", os.path.join(RUNFILES, "publish/registry_integration_test.py"),
               "--retry-base-ms", "20"]
        if repo is not None:
            cmd += ["--registry", "%s/%s" % (host or self.registry.host, repo)]
        if repo is not None and verifier is not None:
            cmd += ["--verifier", verifier]
        cmd += list(extra)
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", HOME=TMP, **(env_extra or {}))
        if measure:  # report the publisher's peak RSS (KiB) from a fresh parent process
            cmd = [sys.executable, "-c", MEASURE] + cmd
        start = time.monotonic()
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)
        elapsed = time.monotonic() - start
        if expect is not None:  # None: the caller checks out["_exit"]
            self.test.assertEqual(p.returncode, expect,
                                  "exit %d, want %d\ncmd: %s\nstdout: %s\nstderr: %s" %
                                  (p.returncode, expect, " ".join(cmd), p.stdout, p.stderr))
        out = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
        out["_stderr"] = p.stderr
        out["_seconds"] = elapsed
        out["_exit"] = p.returncode
        if measure:
            out["_maxrss_kib"] = int(p.stderr.rsplit("MAXRSS_KIB=", 1)[1].split()[0])
        return out


MEASURE = ("import resource, subprocess, sys\n"
           "r = subprocess.run(sys.argv[1:])\n"
           "sys.stderr.write('\\nMAXRSS_KIB=%d\\n' % "
           "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
           "sys.exit(r.returncode)\n")


class PlainRegistryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = RegistryFixture("plain", TMP).start()
        cls.addClassCleanup(cls.reg.stop)

    def setUp(self):
        self.pub = Publisher(self, self.reg)

    def test_push_roundtrip_skopeo_and_oci_image_tool(self):
        layout = make_layout("roundtrip")
        out = self.pub.run(layout, "1.0.0", "kiln/roundtrip", extra=["--minor", "--latest"])
        self.assertFalse(out["noop"])
        self.assertEqual(out["tags"], ["1.0.0", "1.0", "latest"])
        self.assertEqual(out["bytes_uploaded"], sum(blob_sizes(layout).values()))
        digest = out["digest"]
        status, _, body = self.reg.manifest("kiln/roundtrip", digest)
        self.assertEqual(status, 200)
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), digest)
        ann = json.loads(body)["annotations"]
        self.assertEqual(ann["org.opencontainers.image.version"], "1.0.0")
        self.assertEqual(ann["org.opencontainers.image.revision"], "0123abcd")
        self.assertEqual(ann["org.opencontainers.image.created"], "2023-11-14T22:13:20Z")
        self.assertTrue(ann["dev.kiln.package-lock.digest"].startswith("sha256:"))
        for tag in ("1.0.0", "1.0", "latest"):
            self.assertEqual(self.reg.manifest("kiln/roundtrip", tag)[2], body, tag)
        insp = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                               "docker://%s/kiln/roundtrip:1.0.0" % self.reg.host],
                              capture_output=True, text=True, check=True)
        self.assertEqual(json.loads(insp.stdout)["Digest"], digest)
        pulled = os.path.join(TMP, "pulled-roundtrip")
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                        "docker://%s/kiln/roundtrip:1.0.0" % self.reg.host,
                        "oci:%s:1.0.0" % pulled], capture_output=True, check=True)
        v = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=1.0.0",
                            pulled], capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        with open(self.pub.lock) as f:
            lock = json.load(f)
        self.assertEqual(lock["versions"]["1.0.0"]["digest"], digest)

    def test_verification_gates_the_tags(self):
        layout = make_layout("gate", seed=61)
        rec = os.path.join(TMP, "gate-record")
        out = self.pub.run(layout, "1.0.0", "kiln/gate", expect=EXIT_VERIFY,
                           extra=["--latest", "--verify-arg=--accel=tcg",
                                  "--verify-arg", "--builder_groups=a,b"],
                           env_extra={"KILN_FAKE_VERIFY_RECORD": rec, "KILN_FAKE_VERIFY_EXIT": "1"})
        digest = out["digest"]
        self.assertFalse(out["ok"])
        self.assertEqual(out["exit_code"], EXIT_VERIFY)
        self.assertIn("%s/kiln/gate@%s is in the target untagged" % (self.reg.host, digest),
                      out["error"])
        self.assertIn("the verifier (suites builder) exited 1", out["error"])
        self.assertIn("FAIL  fake-check", out["error"])
        # Pushed by digest, not tagged, not in the lock.
        self.assertEqual(self.reg.manifest("kiln/gate", digest)[0], 200)
        self.assertEqual(self.reg.tags("kiln/gate"), [])
        self.assertFalse(os.path.exists(self.pub.lock))
        # The verifier got the image pulled back by that digest, the gate suites, the extras.
        with open(rec) as f:
            args = f.read().split("\n")
        self.assertTrue(args[0].startswith("--builder_image=") and args[0].endswith("/image"))
        self.assertEqual(args[1], "--suites=builder")
        self.assertIn("--accel=tcg", args)
        # Repeated, in order, each as written (a value may begin with "-" and hold commas).
        self.assertEqual(args[args.index("--accel=tcg") + 1], "--builder_groups=a,b")
        self.assertEqual(args[-2], digest)
        # A rerun that passes verification tags it (nothing uploaded again).
        os.remove(rec)
        out = self.pub.run(layout, "1.0.0", "kiln/gate", extra=["--latest", "--verify-suites=cgroup,builder"],
                           env_extra={"KILN_FAKE_VERIFY_RECORD": rec})
        self.assertEqual(out["digest"], digest)
        self.assertEqual(out["verification"], "passed")
        self.assertEqual(out["bytes_uploaded"], 0)
        self.assertEqual(sorted(self.reg.tags("kiln/gate")), ["1.0.0", "latest"])
        with open(rec) as f:
            self.assertIn("--suites=cgroup,builder", f.read())
        # Published: the same command is a no-op and verifies nothing.
        os.remove(rec)
        out = self.pub.run(layout, "1.0.0", "kiln/gate", extra=["--latest"],
                           env_extra={"KILN_FAKE_VERIFY_RECORD": rec})
        self.assertTrue(out["noop"])
        self.assertEqual(out["verification"], "none")
        self.assertFalse(os.path.exists(rec))

    def test_skip_verify_is_recorded_in_the_image(self):
        layout = make_layout("skip", seed=62)
        rec = os.path.join(TMP, "skip-record")
        out = self.pub.run(layout, "1.0.0", "kiln/skip", extra=["--skip_verify"],
                           env_extra={"KILN_FAKE_VERIFY_RECORD": rec})
        self.assertEqual(out["verification"], "skipped")
        self.assertIn("WARNING: --skip-verify", out["_stderr"])
        self.assertFalse(os.path.exists(rec))  # the verifier never ran
        _, _, body = self.reg.manifest("kiln/skip", "1.0.0")
        self.assertEqual(json.loads(body)["annotations"]["dev.kiln.publish.verification"], "skipped")
        # The same image verified is another digest, without the annotation.
        other = self.pub.run(layout, "1.0.0", "kiln/skip-verified", lock=os.path.join(TMP, "lock-skip2.json"))
        self.assertNotEqual(other["digest"], out["digest"])
        _, _, body = self.reg.manifest("kiln/skip-verified", "1.0.0")
        self.assertNotIn("dev.kiln.publish.verification", json.loads(body)["annotations"])

    def test_registry_push_without_a_verifier_is_a_usage_error(self):
        layout = make_layout("noverifier", seed=63)
        out = self.pub.run(layout, "1.0.0", "kiln/noverifier", verifier=None, expect=EXIT_USAGE)
        self.assertIn("pass --verifier PATH", out["_stderr"])
        self.assertEqual(self.reg.tags("kiln/noverifier"), [])
        out = self.pub.run(layout, "1.0.0", "kiln/noverifier", verifier="/nonexistent/verify",
                           expect=EXIT_USAGE)
        self.assertIn("not an executable file", out["_stderr"])

    def test_same_version_is_noop_other_content_refused_registry_unchanged(self):
        a, b = make_layout("same-a", seed=11), make_layout("same-b", seed=12)
        first = self.pub.run(a, "2.0.0", "kiln/same")
        again = self.pub.run(a, "2.0.0", "kiln/same")
        self.assertTrue(again["noop"])
        self.assertEqual(again["digest"], first["digest"])
        self.assertEqual(again["bytes_uploaded"], 0)
        before = self.reg.storage_snapshot()
        with open(self.pub.lock) as f:
            lock_before = f.read()
        refused = self.pub.run(b, "2.0.0", "kiln/same", expect=EXIT_POLICY)
        self.assertIn("immutable", refused["_stderr"])
        # Not even with --force, and not through a fresh lock (the registry's tag decides).
        self.pub.run(b, "2.0.0", "kiln/same", extra=["--force"], expect=EXIT_POLICY)
        self.pub.run(b, "2.0.0", "kiln/same", lock=os.path.join(TMP, "fresh.lock"),
                     expect=EXIT_POLICY)
        self.assertEqual(self.reg.storage_snapshot(), before)
        self.assertEqual(self.reg.manifest("kiln/same", "2.0.0")[1].get("Docker-Content-Digest"),
                         first["digest"])
        with open(self.pub.lock) as f:
            self.assertEqual(f.read(), lock_before)

    def test_one_layer_change_uploads_only_that_layer(self):
        a, b = make_layout("delta-a", seed=21), make_layout("delta-b", seed=21, change=1)
        sa, sb = blob_sizes(a), blob_sizes(b)
        self.pub.run(a, "1.0.0", "kiln/delta")
        out = self.pub.run(b, "1.1.0", "kiln/delta")
        new = {d: s for d, s in sb.items() if d not in sa}
        self.assertEqual(len(new), 2)  # the changed layer and the config (its diff_ids changed)
        self.assertEqual(out["bytes_uploaded"], sum(new.values()))
        self.assertEqual(out["bytes_skipped"], sum(s for d, s in sb.items() if d in sa))
        actions = {x["digest"]: x["action"] for x in out["blobs"]}
        for d in sb:
            self.assertEqual(actions[d], "upload" if d in new else "skip", d)

    def test_version_order_policy_and_force(self):
        a, b, c = make_layout("ord-a", seed=31), make_layout("ord-b", seed=32), make_layout("ord-c", seed=33)
        self.pub.run(a, "3.1.0", "kiln/order")
        out = self.pub.run(b, "3.0.9", "kiln/order", expect=EXIT_POLICY)
        self.assertIn("not newer than 3.1.0", out["_stderr"])
        self.pub.run(b, "3.1.0-rc.1", "kiln/order", expect=EXIT_POLICY)
        self.pub.run(b, "3.0.9", "kiln/order", extra=["--force"])
        self.pub.run(c, "3.2.0", "kiln/order")
        self.assertEqual(sorted(self.reg.tags("kiln/order")), ["3.0.9", "3.1.0", "3.2.0"])

    def test_cross_repository_mount(self):
        layout = make_layout("mount", seed=41)
        self.pub.run(layout, "1.0.0", "kiln/mount-src")
        # The lock records kiln/mount-src on this registry: the publisher mounts from it.
        out = self.pub.run(layout, "1.0.0", "kiln/mount-dst")
        self.assertEqual(out["blobs_mounted"], len(blob_sizes(layout)))
        self.assertEqual(out["bytes_uploaded"], 0)
        status, _, _ = self.reg.manifest("kiln/mount-dst", "1.0.0")
        self.assertEqual(status, 200)

    def test_dry_run_writes_nothing(self):
        layout = make_layout("dry", seed=51)
        out = self.pub.run(layout, "1.0.0", "kiln/dry", extra=["--dry-run"])
        self.assertTrue(out["dry_run"])
        self.assertEqual(out["tags"], ["1.0.0"])
        self.assertEqual(self.reg.tags("kiln/dry"), [])
        self.assertFalse(os.path.exists(self.pub.lock))

    def test_bad_versions_are_usage_errors(self):
        layout = make_layout("badver", seed=61)
        for bad, why in [("1.2", "needs 3"), ("v1.2.3.4", "leading \"v\""),
                         ("01.2.3", "leading zero"), ("1.2.3-", "empty pre-release")]:
            with self.subTest(bad):
                out = self.pub.run(layout, bad, "kiln/badver", expect=EXIT_USAGE)
                self.assertIn("invalid version", out["_stderr"])
                self.assertIn(why, out["_stderr"])
        self.assertEqual(self.reg.tags("kiln/badver"), [])

    def test_every_version_the_policy_accepts_has_a_valid_tag(self):
        # Build metadata ("+") is not allowed in a tag: it is published as "_" (as Helm does),
        # the lock and the version annotation keep "+".
        layout = make_layout("buildmeta", seed=63)
        out = self.pub.run(layout, "1.0.0+build.7", "kiln/buildmeta")
        self.assertEqual(out["tags"], ["1.0.0_build.7"])
        self.assertEqual(self.reg.tags("kiln/buildmeta"), ["1.0.0_build.7"])
        status, _, body = self.reg.manifest("kiln/buildmeta", "1.0.0_build.7")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["annotations"]["org.opencontainers.image.version"],
                         "1.0.0+build.7")
        with open(self.pub.lock) as f:
            self.assertIn("1.0.0+build.7", json.load(f)["versions"])
        again = self.pub.run(layout, "1.0.0+build.7", "kiln/buildmeta")
        self.assertTrue(again["noop"])
        # A version longer than a tag may be is refused before anything is uploaded.
        before = self.reg.storage_snapshot()
        long_version = "1.0.1-" + "a" * 130
        out = self.pub.run(layout, long_version, "kiln/buildmeta", expect=EXIT_USAGE)
        self.assertIn("cannot be published", out["_stderr"])
        self.assertIn("136 characters, at most 128", out["_stderr"])
        self.assertEqual(self.reg.storage_snapshot(), before)

    def test_dry_run_into_a_fresh_oci_dir_plans(self):
        layout = make_layout("freshdry", seed=64)
        oci = os.path.join(TMP, "fresh-dry", "oci")
        out = self.pub.run(layout, "1.0.0", extra=["--oci-dir", oci, "--dry-run"])
        self.assertTrue(out["dry_run"])
        self.assertEqual(out["tags"], ["1.0.0"])
        self.assertEqual({b["action"] for b in out["blobs"]}, {"upload"})
        self.assertFalse(os.path.exists(os.path.join(TMP, "fresh-dry")))

    def test_unreachable_registry(self):
        layout = make_layout("unreach", seed=71)
        out = self.pub.run(layout, "1.0.0", "kiln/x", host="127.0.0.1:%d" % free_port(),
                           extra=["--retries", "2"], expect=EXIT_REGISTRY)
        self.assertRegex(out["_stderr"], "(?i)connect")

    def test_layout_archive_help_and_usage_errors(self):
        layout = make_layout("archive", seed=91)
        tar = os.path.join(TMP, "archive.tar")
        subprocess.run(["tar", "-C", layout, "-cf", tar, "."], check=True)
        from_dir = self.pub.run(layout, "1.0.0", "kiln/archive", extra=["--dry-run"])
        from_tar = self.pub.run(tar, "1.0.0", "kiln/archive", extra=["--dry-run"])
        self.assertEqual(from_tar["digest"], from_dir["digest"])
        h = subprocess.run([PUBLISH, "--help"], capture_output=True, text=True)
        self.assertEqual(h.returncode, 0)
        self.assertIn("Exit codes", h.stdout)
        # absl flags (third_party/absl_ext/command_flags.h): -h, --flag=value and "_" spellings,
        # switches as --flag=false / --noflag; every usage error is exit 2 naming the flag.
        h = subprocess.run([PUBLISH, "-h"], capture_output=True, text=True)
        self.assertEqual(h.returncode, 0)
        self.assertIn("Exit codes", h.stdout)
        spelled = self.pub.run(layout, "1.0.0", "kiln/archive",
                               extra=["--version=1.0.0", "--dry_run", "--latest=false", "--nominor"])
        self.assertEqual(spelled["digest"], from_dir["digest"])
        self.assertTrue(spelled["dry_run"])
        for args, why in [(["--bogus"], "unknown argument"), ([], "--version is required"),
                          (["--version", "1.0.0", "--layout", layout, "--tls", "--plain-http"],
                           "exclude each other"),
                          (["--version", "1.0.0", "--layout", layout, "--registry", "http://x/y"],
                           "no scheme"),
                          (["--version"], "flag --version needs a value"),
                          (["--version", "1.0.0", "--layout", layout, "--retries", "many"],
                           "--retries=many: Illegal value"),
                          (["--version", "1.0.0", "--layout", layout, "--retries", "0"],
                           "--retries must be 1..100"),
                          (["--version", "1.0.0", "--layout", layout, "--flagfile=/dev/null"],
                           'unknown argument "--flagfile=/dev/null"'),
                          (["--version", "1.0.0", "--layout", layout, "stray"],
                           'unknown argument "stray"')]:
            with self.subTest(args):
                p = subprocess.run([PUBLISH] + args, capture_output=True, text=True)
                self.assertEqual(p.returncode, EXIT_USAGE, p.stderr)
                self.assertIn(why, p.stderr)

    def test_local_layout_default(self):
        layout = make_layout("local", seed=81)
        oci = os.path.join(TMP, "local-oci")
        out = self.pub.run(layout, "1.0.0", extra=["--oci-dir", oci])
        self.assertEqual(out["target"], "oci-layout:" + oci)
        again = self.pub.run(layout, "1.0.0", extra=["--oci-dir", oci])
        self.assertTrue(again["noop"])
        v = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=1.0.0",
                            oci], capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)


class FaultInjectionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMP + "/faults", exist_ok=True)
        cls.reg = RegistryFixture("plain", TMP + "/faults").start()
        cls.addClassCleanup(cls.reg.stop)

    def setUp(self):
        self.proxy = FaultProxy(self.reg.port)
        self.addCleanup(self.proxy.stop)
        self.pub = Publisher(self, self.reg)

    def push(self, name, seed, version="1.0.0", expect=EXIT_OK, extra=()):
        layout = make_layout(name, seed=seed)
        return layout, self.pub.run(layout, version, "kiln/" + name, host=self.proxy.host,
                                    extra=["--chunk-bytes", "16384"] + list(extra), expect=expect)

    def test_500s_are_retried_to_success(self):
        self.proxy.fail("HEAD", times=1)
        self.proxy.fail("PATCH", times=2)
        self.proxy.fail("PUT", times=1, path_contains="/manifests/")
        layout, out = self.push("f500", 101)
        self.assertGreaterEqual(out["retries"], 4)
        status, _, body = self.reg.manifest("kiln/f500", "1.0.0")
        self.assertEqual(status, 200)
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), out["digest"])

    def test_connection_closed_mid_upload_resumes(self):
        self.proxy.reset("PATCH", times=2)
        layout, out = self.push("freset", 102)
        self.assertGreaterEqual(out["resumes"], 1)
        self.assertEqual(out["restarts"], 0)
        total = sum(blob_sizes(layout).values())
        # Resumed, not restarted: at most the two interrupted 16 KiB chunks are sent again.
        self.assertLessEqual(out["bytes_uploaded"], total + 2 * 16384)
        insp = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                               "docker://%s/kiln/freset:1.0.0" % self.reg.host],
                              capture_output=True, text=True, check=True)
        self.assertEqual(json.loads(insp.stdout)["Digest"], out["digest"])

    def test_persistent_upload_failure_fails_cleanly_without_tag(self):
        self.proxy.reset("PATCH", times=None)
        _, out = self.push("fdead", 103, expect=EXIT_REGISTRY, extra=["--retries", "3"])
        self.assertFalse(out["ok"])
        self.assertEqual(self.reg.tags("kiln/fdead"), [])
        self.assertFalse(os.path.exists(self.pub.lock))

    def test_tampered_blob_is_refused_by_digest_before_anything_boots(self):
        # A registry that serves one layer with a byte flipped, or cut short: publish's
        # pull-back refuses it by that digest (exit 6, untagged, the verifier never runs), and
        # so does `verify --builder_image` (the real one: it exits 2 before choosing a VMM).
        for i, mode in enumerate(("flip", "truncate")):
            name = "tamper-" + mode
            layout = make_layout(name, seed=110 + i)
            with open(os.path.join(layout, "index.json")) as f:
                md = json.load(f)["manifests"][0]["digest"]
            with open(os.path.join(layout, "blobs/sha256", md[7:])) as f:
                layer = json.load(f)["layers"][1]["digest"]
            self.proxy.tamper("GET", "/blobs/" + layer, mode)
            rec = os.path.join(TMP, name + "-record")
            out = self.pub.run(layout, "1.0.0", "kiln/" + name, host=self.proxy.host,
                               expect=EXIT_VERIFY, env_extra={"KILN_FAKE_VERIFY_RECORD": rec})
            self.assertTrue(self.proxy.tampered, mode)
            self.assertIn("pull-back", out["error"])
            self.assertIn(layer, out["error"])
            self.assertIn("nothing booted", out["error"])
            self.assertFalse(os.path.exists(rec), "the verifier ran on a tampered image")
            self.assertEqual(self.reg.tags("kiln/" + name), [])
            # verify --builder_image through the same proxy.
            logs = os.path.join(TMP, name + "-verify")
            v = subprocess.run([VERIFIER, "--suites=builder", "--log_dir=" + logs,
                                "--builder_image=%s/kiln/%s@%s" % (self.proxy.host, name, out["digest"])],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(v.returncode, 2, v.stdout + v.stderr)
            self.assertIn(layer, v.stderr)
            self.assertNotIn("choosing the VMM", v.stderr)
            self.assertFalse(os.path.exists(os.path.join(logs, "logs")), "a VM was started")
            self.assertFalse(os.path.exists(os.path.join(logs, "builder-vms")), "a VM was started")
            self.proxy.rules.clear()

    def test_manifest_put_failure_leaves_no_tag(self):
        self.proxy.fail("PUT", times=None, path_contains="/manifests/")
        _, out = self.push("fmanifest", 104, expect=EXIT_REGISTRY, extra=["--retries", "2"])
        self.assertIn("HTTP 500", out["error"])
        self.assertEqual(self.reg.tags("kiln/fmanifest"), [])

    def test_tag_failure_after_manifest_leaves_version_unset(self):
        # The manifest by digest lands; every tag PUT fails: no tag may point anywhere, and a
        # rerun completes the publish.
        self.proxy.fail("PUT", times=None, path_contains="/manifests/1.")
        layout, _ = self.push("ftag", 105, expect=EXIT_REGISTRY, extra=["--retries", "2"])
        self.assertEqual(self.reg.tags("kiln/ftag"), [])
        self.proxy.rules.clear()
        out = self.pub.run(layout, "1.0.0", "kiln/ftag", host=self.proxy.host)
        self.assertEqual(out["bytes_uploaded"], 0)
        self.assertEqual(self.reg.tags("kiln/ftag"), ["1.0.0"])


class BasicAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = RegistryFixture("htpasswd", TMP).start()
        cls.addClassCleanup(cls.reg.stop)

    def setUp(self):
        self.pub = Publisher(self, self.reg)

    def test_username_with_password_on_stdin(self):
        layout = make_layout("auth-ok", seed=201)
        self.pub.run(layout, "1.0.0", "kiln/auth", extra=["--username", self.reg.username],
                     stdin=self.reg.password + "\n")
        self.assertEqual(self.reg.tags("kiln/auth"), ["1.0.0"])

    def test_docker_config_json(self):
        import base64
        cfg = os.path.join(TMP, "docker-config.json")
        with open(cfg, "w") as f:
            json.dump({"auths": {self.reg.host: {"auth": base64.b64encode(
                ("%s:%s" % (self.reg.username, self.reg.password)).encode()).decode()}}}, f)
        layout = make_layout("auth-cfg", seed=202)
        self.pub.run(layout, "1.0.0", "kiln/authcfg", extra=["--docker-config", cfg])
        self.assertEqual(self.reg.tags("kiln/authcfg"), ["1.0.0"])

    def test_bad_or_missing_credentials(self):
        layout = make_layout("auth-bad", seed=203)
        out = self.pub.run(layout, "1.0.0", "kiln/authbad", extra=["--username", self.reg.username],
                           stdin="wrong\n", expect=EXIT_AUTH)
        self.assertIn("rejected", out["_stderr"])
        out = self.pub.run(layout, "1.0.0", "kiln/authbad", expect=EXIT_AUTH)
        self.assertIn("requires authentication", out["_stderr"])
        self.assertEqual(self.reg.tags("kiln/authbad"), [])


class TokenAuthTest(unittest.TestCase):
    """Bearer-token auth: the registry's WWW-Authenticate challenge points at a token server."""

    @classmethod
    def setUpClass(cls):
        cls.reg = RegistryFixture("token", TMP).start()
        cls.addClassCleanup(cls.reg.stop)

    def setUp(self):
        self.pub = Publisher(self, self.reg)

    def test_bearer_token_flow(self):
        layout = make_layout("token", seed=401)
        out = self.pub.run(layout, "1.0.0", "kiln/token", extra=["--username", self.reg.username],
                           stdin=self.reg.password + "\n")
        scopes = [sc for q in self.reg.token_server.requests for sc in q.get("scope", [])]
        self.assertIn("repository:kiln/token:pull,push", scopes)
        self.assertEqual([q.get("service") for q in self.reg.token_server.requests][0],
                         ["kiln-registry"])
        status, _, body = self.reg.manifest("kiln/token", "1.0.0")
        self.assertEqual(status, 200, body)
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), out["digest"])

    def test_token_endpoint_refuses_bad_credentials(self):
        layout = make_layout("token-bad", seed=402)
        out = self.pub.run(layout, "1.0.0", "kiln/tokenbad", extra=["--username", "kiln"],
                           stdin="wrong\n", expect=EXIT_AUTH)
        self.assertIn("token endpoint", out["_stderr"])


class TlsRegistryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = RegistryFixture("tls", TMP).start()
        cls.addClassCleanup(cls.reg.stop)

    def setUp(self):
        self.pub = Publisher(self, self.reg)

    def test_push_over_tls_with_custom_ca(self):
        layout = make_layout("tls", seed=301)
        out = self.pub.run(layout, "1.0.0", "kiln/tls", extra=["--tls", "--ca-cert", self.reg.ca_cert])
        insp = subprocess.run(["skopeo", "inspect", "--cert-dir", self.reg.cert_dir,
                               "docker://%s/kiln/tls:1.0.0" % self.reg.host],
                              capture_output=True, text=True, check=True)
        self.assertEqual(json.loads(insp.stdout)["Digest"], out["digest"])

    def test_untrusted_certificate_and_plain_http_fail_clearly(self):
        layout = make_layout("tls-bad", seed=302)
        out = self.pub.run(layout, "1.0.0", "kiln/tlsbad", extra=["--tls", "--retries", "1"],
                           expect=EXIT_REGISTRY)
        self.assertRegex(out["_stderr"], "(?i)certificate")
        # Loopback defaults to plain HTTP, which a TLS registry answers with 400.
        self.pub.run(layout, "1.0.0", "kiln/tlsbad", extra=["--retries", "1"], expect=EXIT_REGISTRY)


class CredentialOriginTest(unittest.TestCase):
    """Credentials go only to the registry's origin: a Location or Link that points elsewhere
    (another port on 127.0.0.1, where a Recorder listens) or downgrades https to http is refused
    before anything is sent to it."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMP + "/origin", exist_ok=True)
        cls.reg = RegistryFixture("htpasswd", TMP + "/origin").start()
        cls.addClassCleanup(cls.reg.stop)

    def setUp(self):
        self.proxy = FaultProxy(self.reg.port)
        self.addCleanup(self.proxy.stop)
        self.recorder = Recorder()
        self.addCleanup(self.recorder.stop)
        self.pub = Publisher(self, self.reg)

    def push(self, name, seed, host, expect, extra=()):
        layout = make_layout(name, seed=seed)
        return self.pub.run(layout, "1.0.0", "kiln/" + name, host=host,
                            extra=["--username", self.reg.username] + list(extra),
                            stdin=self.reg.password + "\n", expect=expect)

    def assertNothingReachedRecorder(self):
        self.assertEqual([(r["method"], r["path"], "authorization" in r["headers"])
                          for r in self.recorder.requests], [])

    def test_foreign_upload_location_is_refused_and_receives_nothing(self):
        self.proxy.rewrite_location("POST", "/blobs/uploads/", self.recorder.base)
        out = self.push("oloc", 501, self.proxy.host, None)
        self.assertNothingReachedRecorder()
        self.assertEqual(out["_exit"], EXIT_REGISTRY, out["_stderr"])
        self.assertIn("another origin (http://127.0.0.1:%d)" % self.recorder.port, out["_stderr"])
        self.assertIn("refusing to follow it", out["_stderr"])
        self.assertEqual(self.reg.tags("kiln/oloc"), [])

    def test_foreign_tag_page_link_is_refused(self):
        self.proxy.add_link("GET", "/tags/list",
                            '<%s/v2/kiln/olink/tags/list?last=a>; rel="next"' % self.recorder.base)
        # The first push creates the repository (its tag list is 404 before, so no Link).
        layout = make_layout("olink", seed=502)
        self.pub.run(layout, "1.0.0", "kiln/olink", host=self.reg.host,
                     extra=["--username", self.reg.username], stdin=self.reg.password + "\n")
        out = self.pub.run(make_layout("olink2", seed=503), "1.1.0", "kiln/olink",
                           host=self.proxy.host, extra=["--username", self.reg.username],
                           stdin=self.reg.password + "\n", expect=None)
        self.assertNothingReachedRecorder()
        self.assertEqual(out["_exit"], EXIT_REGISTRY, out["_stderr"])
        self.assertIn("with Link", out["_stderr"])
        self.assertIn("another origin", out["_stderr"])
        self.assertEqual(self.reg.tags("kiln/olink"), ["1.0.0"])

    def test_redirect_to_another_origin_is_not_followed(self):
        self.proxy.redirect("HEAD", "/blobs/", self.recorder.base + "/blob")
        out = self.push("oredir", 504, self.proxy.host, None)
        self.assertNothingReachedRecorder()
        self.assertEqual(out["_exit"], EXIT_REGISTRY, out["_stderr"])
        self.assertIn("another origin", out["_stderr"])

    def test_https_to_http_downgrade_is_refused_and_nothing_goes_in_clear(self):
        d = os.path.join(TMP, "origin", "tls-proxy")
        os.makedirs(d, exist_ok=True)
        _, ca, key, cert = make_certs(d)
        # A TLS front whose registry builds http:// upload Locations (it sees plain HTTP).
        front = FaultProxy(self.reg.port, tls=(cert, key))
        self.addCleanup(front.stop)
        out = self.push("odown", 505, front.host, None, extra=["--tls", "--ca-cert", ca])
        self.assertEqual(front.plaintext, [])  # nothing (least of all credentials) in clear
        self.assertEqual(out["_exit"], EXIT_REGISTRY, out["_stderr"])
        self.assertIn("downgrades https to plain http", out["_stderr"])
        self.assertEqual(self.reg.tags("kiln/odown"), [])
        # Control: the same front telling the registry the original scheme works end to end.
        good = FaultProxy(self.reg.port, tls=(cert, key), forwarded_proto="https")
        self.addCleanup(good.stop)
        self.push("odown", 505, good.host, EXIT_OK, extra=["--tls", "--ca-cert", ca])
        self.assertEqual(good.plaintext, [])
        self.assertEqual(self.reg.tags("kiln/odown"), ["1.0.0"])


class HostileServerTest(unittest.TestCase):
    """A registry that stalls, crawls, or sends without end gets a clear error quickly, with the
    publisher's memory bounded (its peak RSS is measured)."""

    def setUp(self):
        self.pub = Publisher(self, None)
        self.layout = make_layout("hostile", seed=601)

    def attack(self, mode, extra=()):
        server = HostileServer(mode)
        self.addCleanup(server.stop)
        out = self.pub.run(self.layout, "1.0.0", "kiln/hostile", host=server.host,
                           extra=list(extra), expect=EXIT_REGISTRY, measure=True)
        sys.stderr.write("  %s: %.1f s, peak RSS %d KiB, server sent %d bytes on %d connections\n"
                         % (mode, out["_seconds"], out["_maxrss_kib"], server.bytes_sent,
                            server.connections))
        return out, server

    def test_headers_then_stall_is_deadline_exceeded(self):
        out, server = self.attack("stall", ["--stall-timeout-s", "2"])
        self.assertIn("nothing sent or received for 2000 ms (stall timeout)", out["_stderr"])
        self.assertLess(out["_seconds"], 10)
        self.assertEqual(server.connections, 1)  # a stall is not retried

    def test_silent_server_is_deadline_exceeded(self):
        out, _ = self.attack("silent", ["--stall-timeout-s", "2"])
        self.assertIn("stall timeout", out["_stderr"])
        self.assertLess(out["_seconds"], 10)

    def test_trickling_server_is_deadline_exceeded(self):
        out, _ = self.attack("trickle", ["--stall-timeout-s", "2"])
        self.assertRegex(out["_stderr"], r"only \d+ bytes moved in \d+ ms \(below 1024 bytes/s\)")
        self.assertLess(out["_seconds"], 10)

    def test_endless_body_is_resource_exhausted_with_bounded_memory(self):
        out, server = self.attack("endless_body")
        self.assertIn("response body exceeds 1048576 bytes", out["_stderr"])
        self.assertLess(out["_seconds"], 20)
        self.assertLess(out["_maxrss_kib"], 64 * 1024)
        self.assertEqual(server.connections, 1)  # not retried

    def test_endless_headers_are_resource_exhausted(self):
        out, _ = self.attack("endless_headers")
        self.assertIn("response headers exceed 262144 bytes", out["_stderr"])
        self.assertLess(out["_seconds"], 20)
        self.assertLess(out["_maxrss_kib"], 64 * 1024)


if __name__ == "__main__":
    unittest.main(verbosity=2)
