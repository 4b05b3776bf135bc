"""Repository rules that wire Debian's Bazel rule packages in offline.

debian_rules_cc: copies /usr/share/bazel/rules/cc (package bazel-rules-cc 0.0.4) and replaces its
loads of `use_cpp_toolchain` from @bazel_tools, which Bazel 4.2 lacks, with a local shim.

remote_coverage_tools_stub: an empty repository named like the one every *_test depends on, so
that Bazel never downloads it. `bazel coverage` does not work with it; use gcov directly.
"""

_RULES_CC_DIR = "/usr/share/bazel/rules/cc"

_SHIM = '''"""Shim: Bazel 4.2's @bazel_tools has find_cpp_toolchain but not use_cpp_toolchain."""
load("@bazel_tools//tools/cpp:toolchain_utils.bzl", _find = "find_cpp_toolchain")

find_cpp_toolchain = _find

def use_cpp_toolchain(mandatory = True):
    return ["@bazel_tools//tools/cpp:toolchain_type"]
'''

def _debian_rules_cc_impl(rctx):
    src = rctx.path(_RULES_CC_DIR)
    if not src.exists:
        fail("%s is missing: run tools/setup (package bazel-rules-cc)" % _RULES_CC_DIR)
    res = rctx.execute(["cp", "-r", str(src) + "/.", "."])
    if res.return_code != 0:
        fail("copying rules_cc failed: " + res.stderr)
    rctx.file("cc/private/toolchain_shim.bzl", _SHIM)
    for f in ["cc/private/rules_impl/cc_flags_supplier.bzl", "cc/private/rules_impl/compiler_flag.bzl"]:
        content = rctx.read(f)
        content = content.replace(
            'load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain", "use_cpp_toolchain")',
            'load("//cc/private:toolchain_shim.bzl", "find_cpp_toolchain", "use_cpp_toolchain")',
        )
        rctx.file(f, content)
    # The package's WORKSPACE downloads its own deps; a repository only needs a name.
    rctx.file("WORKSPACE", 'workspace(name = "rules_cc")\n')
    if not rctx.path("cc/private/BUILD").exists:
        rctx.file("cc/private/BUILD", "")

debian_rules_cc = repository_rule(
    implementation = _debian_rules_cc_impl,
    local = True,
    doc = "Debian's rules_cc with the use_cpp_toolchain load repaired for Bazel 4.2.",
)

def _stub_impl(rctx):
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD", 'package(default_visibility = ["//visibility:public"])\n' +
                       'filegroup(name = "coverage_report_generator", srcs = [])\n' +
                       'filegroup(name = "lcov_merger", srcs = [])\n')

remote_coverage_tools_stub = repository_rule(implementation = _stub_impl, local = True)
