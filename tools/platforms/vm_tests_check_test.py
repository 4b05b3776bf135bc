"""vm_tests_check on synthetic workspaces (a VM test declared with cc_test, an unknown or missing
requirement, a good one) and on kiln's own source tree.

The source-tree case reads every package's BUILD file outside the test's inputs (found through
the real path of the root README.md runfile, as tools/spec_test.py does): the target is tagged
`external` (never cached) and `no-remote` (a remote worker has no source tree)."""
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vm_tests_check  # noqa: E402

DEFS = '''VM_REQUIREMENTS = {
    "qemu": struct(
        tags = [],
    ),
    "cloud-hypervisor": struct(
        tags = [],
    ),
}
'''


class SyntheticTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        os.makedirs(os.path.join(self.root, "tools", "platforms"))
        with open(os.path.join(self.root, "tools", "platforms", "defs.bzl"), "w") as f:
            f.write(DEFS)

    def write(self, package, text):
        os.makedirs(os.path.join(self.root, package), exist_ok=True)
        with open(os.path.join(self.root, package, "BUILD"), "w") as f:
            f.write(text)

    def test_vm_tests_listed_with_their_requirement(self):
        self.write("harness", 'vm_test(\n    name = "a_vm_test",\n    requires = "qemu",\n'
                              '    data = _VM_DATA,\n)\n\n'
                              'vm_test(\n    name = "b_vm_test",\n    requires = "cloud-hypervisor",\n)\n\n'
                              'cc_test(\n    name = "unit_test",\n    srcs = ["u.cc"],\n)\n')
        tests, problems = vm_tests_check.check(self.root)
        self.assertEqual(problems, [])
        self.assertEqual(tests, [("//harness:a_vm_test", "qemu"),
                                 ("//harness:b_vm_test", "cloud-hypervisor")])

    def test_cc_test_that_boots_a_vm_is_refused(self):
        self.write("bench", 'cc_test(\n    name = "boot_test",\n    data = ["//images:vmlinux"],\n)\n')
        self.write("harness", 'sh_test(\n    name = "s_test",\n    data = _BUILDER_VM_DATA,\n)\n')
        _, problems = vm_tests_check.check(self.root)
        self.assertEqual(problems, [
            "//bench:boot_test: boots a VM (//images:vmlinux) but is a cc_test: declare it with "
            "vm_test (tools/platforms/defs.bzl)",
            "//harness:s_test: boots a VM (_BUILDER_VM_DATA) but is a sh_test: declare it with "
            "vm_test (tools/platforms/defs.bzl)",
        ])

    def test_unknown_or_missing_requirement_is_refused(self):
        self.write("harness", 'vm_test(\n    name = "x_test",\n    requires = "kvm",\n)\n\n'
                              'vm_test(\n    name = "y_test",\n    srcs = ["y.cc"],\n)\n')
        _, problems = vm_tests_check.check(self.root)
        self.assertEqual(problems, [
            "//harness:x_test: requires = 'kvm' is not in VM_REQUIREMENTS (['cloud-hypervisor', 'qemu'])",
            "//harness:y_test: vm_test without requires = (one of ['cloud-hypervisor', 'qemu'])",
        ])

    def test_binaries_that_boot_vms_are_not_tests(self):
        self.write("benchmarks", 'cc_binary(\n    name = "boot_benchmark",\n    data = ["//images:vmlinux"],\n)\n')
        self.assertEqual(vm_tests_check.check(self.root), ([], []))


def workspace_root():
    srcdir, ws = os.environ.get("TEST_SRCDIR"), os.environ.get("TEST_WORKSPACE")
    if srcdir and ws:
        anchor = os.path.realpath(os.path.join(srcdir, ws, "README.md"))
    else:  # run by hand: python3 tools/platforms/vm_tests_check_test.py
        anchor = os.path.realpath(os.path.join(HERE, "..", "..", "README.md"))
    return os.path.dirname(anchor)


class SourceTreeTest(unittest.TestCase):
    def test_every_vm_test_in_kiln_is_declared_with_vm_test(self):
        root = workspace_root()
        self.assertTrue(os.path.isfile(os.path.join(root, "WORKSPACE")), root)
        tests, problems = vm_tests_check.check(root)
        for label, req in tests:
            print("%-45s requires %s" % (label, req))
        self.assertEqual(problems, [])
        labels = dict(tests)
        self.assertEqual(labels.get("//harness/scenarios:cgroup_vm_test"), "qemu")
        self.assertEqual(labels.get("//harness/scenarios:cgroup_ch_vm_test"), "cloud-hypervisor")
        # The builder scenario tests are made per folder by a macro (the text check cannot see
        # them): it must declare them with vm_test, for QEMU and for Cloud Hypervisor.
        with open(os.path.join(root, "harness", "builder", "builder_scenarios.bzl")) as f:
            macro = f.read()
        self.assertIn('vm_test(name = target + "_test", requires = "qemu"', macro)
        self.assertIn('requires = "cloud-hypervisor"', macro)


if __name__ == "__main__":
    unittest.main()
