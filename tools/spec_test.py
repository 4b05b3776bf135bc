"""SPECIFICATION.md's test: every test it names exists (tools/spec_check.py), every promise
names one (or says why its test is pending), no promise number is used twice, and README.md
links it.

Bazel cannot glob across packages, and a test sees only its declared inputs in runfiles, so
this test reads SPECIFICATION.md and the other packages' BUILD files and test sources from
the source tree itself: the README.md runfile (the root package exports it) is a symlink into
the workspace, and its real path gives the workspace root. The alternative, declaring every
BUILD file and test source as data, would need an exports_files in every package and a list
kept in step with the specification by hand. Because what is read is not among the inputs
Bazel knows of, the target is tagged `external` (never cached: a test renamed elsewhere must
fail the next run) and `no-remote` (a remote worker has no source tree)."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spec_check  # noqa: E402


def workspace_root():
    srcdir, ws = os.environ.get("TEST_SRCDIR"), os.environ.get("TEST_WORKSPACE")
    if srcdir and ws:
        anchor = os.path.realpath(os.path.join(srcdir, ws, "README.md"))
    else:  # run by hand: python3 tools/spec_test.py
        anchor = os.path.realpath(os.path.join(HERE, "..", "README.md"))
    return os.path.dirname(anchor)


class SpecificationTest(unittest.TestCase):
    def test_every_named_test_exists(self):
        root = workspace_root()
        self.assertTrue(os.path.isfile(os.path.join(root, "WORKSPACE")),
                        f"{root} (from README.md's real path) is not the workspace root")
        promises, errors = spec_check.check(root, os.path.join(root, "SPECIFICATION.md"))
        refs = sum(len(p.refs) for p in promises)
        pending = [p.number for p in promises if p.pending]
        print(f"{len(promises)} promises, {refs} test references, pending: {pending}")
        self.assertGreater(len(promises), 0)
        if errors:
            self.fail("SPECIFICATION.md names tests that do not exist, or is malformed:\n" +
                      "\n".join(errors))

    def test_readme_links_the_specification(self):
        with open(os.path.join(workspace_root(), "README.md"), encoding="utf-8") as fh:
            self.assertIn("(SPECIFICATION.md)", fh.read())


if __name__ == "__main__":
    unittest.main()
