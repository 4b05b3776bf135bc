"""Every test that boots a VM is declared with vm_test (tools/platforms/defs.bzl).

A test boots a VM when its declaration names the VM kernel (`:vm_kernel`, `//images:vmlinux`)
or the harness's VM data lists (`_VM_DATA`, `_BUILDER_VM_DATA`, harness/builder/builder_vm.bzl's
`BUILDER_VM_DATA`). Such a test declared with
cc_test/sh_test/... would carry no execution requirement: remotely it could land on a worker
without QEMU or KVM, and its result would be cached without the host facts vm_test adds. Each
vm_test must name a requirement that VM_REQUIREMENTS defines.

Reads BUILD files as text (top-level calls, one per `name(` ... `)` block at column 0), like
tools/spec_check.py. Usage: python3 tools/platforms/vm_tests_check.py [WORKSPACE_ROOT]
Prints one line per VM test (label, requirement) and each problem; exit 1 on a problem.
"""
import os
import re
import sys

VM_MARKERS = (":vm_kernel", "//harness/vmm:vm_kernel", "//images:vmlinux", "_BUILDER_VM_DATA", "_VM_DATA",
              "BUILDER_VM_DATA")
_CALL = re.compile(r"^(\w+)\(\n(.*?)^\)", re.S | re.M)
_NAME = re.compile(r'^    name = "([^"]+)"', re.M)
_REQUIRES = re.compile(r'^    requires = "([^"]*)"', re.M)
_REQUIREMENT_KEY = re.compile(r'^    "([\w-]+)": struct\(', re.M)


def requirements(root):
    """The keys of VM_REQUIREMENTS in tools/platforms/defs.bzl."""
    with open(os.path.join(root, "tools", "platforms", "defs.bzl")) as f:
        text = f.read()
    start = text.index("VM_REQUIREMENTS = {")
    return set(_REQUIREMENT_KEY.findall(text[start:]))


def build_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "bazel-")))
        for name in ("BUILD", "BUILD.bazel"):
            if name in filenames:
                yield os.path.join(dirpath, name)


def check(root):
    """Returns ([(label, requirement)], [problem])."""
    known = requirements(root)
    vm_tests, problems = [], []
    for path in build_files(root):
        package = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "/")
        package = "" if package == "." else package
        with open(path) as f:
            text = f.read()
        for m in _CALL.finditer(text):
            rule, body = m.group(1), m.group(2)
            name = _NAME.search(body)
            if not name or not (rule.endswith("_test") or rule == "vm_test"):
                continue
            label = "//%s:%s" % (package, name.group(1))
            if rule == "vm_test":
                req = _REQUIRES.search(body)
                if not req:
                    problems.append("%s: vm_test without requires = (one of %s)" % (label, sorted(known)))
                elif req.group(1) not in known:
                    problems.append("%s: requires = %r is not in VM_REQUIREMENTS (%s)" %
                                    (label, req.group(1), sorted(known)))
                else:
                    vm_tests.append((label, req.group(1)))
            elif any(marker in body for marker in VM_MARKERS):
                marker = next(mk for mk in VM_MARKERS if mk in body)
                problems.append("%s: boots a VM (%s) but is a %s: declare it with vm_test "
                                "(tools/platforms/defs.bzl)" % (label, marker, rule))
    return vm_tests, problems


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    vm_tests, problems = check(os.path.abspath(root))
    for label, req in vm_tests:
        print("%-45s requires %s" % (label, req))
    for p in problems:
        print("ERROR: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
