"""builder_scenario_tests: one VM test target per builder scenario folder and VMM.

A builder scenario is a folder harness/builder/scenarios/<name>/ holding a Dockerfile (and any
context files) and a spec.json (harness/builder/builder_spec.h). For every folder this macro declares

    builder_scenario_<name>_test      QEMU (runs here: KVM where usable, else TCG)
    builder_scenario_<name>_ch_test   Cloud Hypervisor (SKIPPED where no cloud-hypervisor
                                      binary and usable KVM exist: @kiln_host)

both `vm_test`s (//tools/platforms:defs.bzl: tags, exec_properties, target compatibility) built
from one test library, each booting at most one builder VM (a scenario refused before boot
boots none). The QEMU targets carry the tag `builder-scenario`, so a
`test_suite(tags = ["builder-scenario"])` in the package runs every folder. Adding a folder adds
its targets: no BUILD or C++ edit.
"""

load("//tools/platforms:defs.bzl", "vm_test")

def builder_scenario_tests(root, lib, args, data, ch_args):
    """Declares the per-folder VM tests (see the file docstring).

    Args:
      root: the scenario folders' parent, relative to this package ("scenarios").
      lib: the cc_library (alwayslink) with the test's main: harness/builder/builder_spec_vm_test.cc.
      args: the VM artifacts' flags (kernel, initrd, builder disk, busybox image).
      data: their files.
      ch_args: extra flags of the Cloud Hypervisor variant (--vmm, --ch_binary).
    """
    folders = sorted({f.split("/")[-2]: None for f in native.glob([root + "/*/spec.json"])}.keys())
    for folder in folders:
        target = "builder_scenario_" + folder.replace("-", "_")
        common = dict(
            deps = [lib],
            args = args + ["--scenario=%s/%s/%s" % (native.package_name(), root, folder)],
            data = data + native.glob([root + "/" + folder + "/**"]),
        )
        vm_test(name = target + "_test", requires = "qemu", tags = ["builder-scenario"], **common)
        vm_test(
            name = target + "_ch_test",
            requires = "cloud-hypervisor",
            deps = common["deps"],
            args = common["args"] + ch_args,
            data = common["data"],
        )
