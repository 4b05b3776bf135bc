"""System C++ libraries from Debian, under their upstream Bazel labels.

Each target is a header-less cc_library whose linkopts come from `pkg-config --libs --static`
(the full closure, so every target links on its own and also links into a `-static` binary,
e.g. the VM init). Headers come from /usr/include, which the compiler searches anyway.
Packages: see tools/setup. A missing package fails here with the package to install.
"""

def _pkg_libs(rctx, modules):
    res = rctx.execute(["pkg-config", "--libs", "--static"] + modules)
    if res.return_code != 0:
        fail("pkg-config %s failed (run tools/setup): %s" % (" ".join(modules), res.stderr))
    return [f for f in res.stdout.strip().split(" ") if f]

def _system_repo_impl(rctx):
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    packages = {}
    for label, spec in rctx.attr.targets.items():
        pkg, _, name = label.partition(":")
        mods = [m for m in spec.split(" ") if m and not m.startswith("-")]
        raw = [m for m in spec.split(" ") if m.startswith("-")]
        flags = (_pkg_libs(rctx, mods) if mods else []) + raw
        packages.setdefault(pkg, []).append(
            'cc_library(\n    name = "%s",\n    linkopts = %s,\n)\n' % (name, repr(flags)),
        )
    for pkg, rules in packages.items():
        path = (pkg + "/BUILD") if pkg else "BUILD"
        rctx.file(path, 'package(default_visibility = ["//visibility:public"])\n\n' + "\n".join(rules))

system_repo = repository_rule(
    implementation = _system_repo_impl,
    attrs = {"targets": attr.string_dict(doc = "'pkg:name' -> pkg-config modules (or -l flags)")},
    local = True,
)

_ABSL = {
    "absl/base:base": "absl_base",
    "absl/base:core_headers": "absl_base",
    "absl/cleanup:cleanup": "absl_cleanup",
    "absl/container:flat_hash_map": "absl_flat_hash_map",
    "absl/container:flat_hash_set": "absl_flat_hash_set",
    "absl/flags:flag": "absl_flags",
    "absl/flags:parse": "absl_flags_parse absl_flags",
    "absl/flags:usage": "absl_flags_usage absl_flags",
    "absl/status:status": "absl_status",
    "absl/status:statusor": "absl_statusor absl_status",
    "absl/strings:strings": "absl_strings",
    "absl/strings:str_format": "absl_str_format absl_strings",
    "absl/synchronization:synchronization": "absl_synchronization",
    "absl/time:time": "absl_time",
    "absl/types:span": "absl_span",
    "absl/types:optional": "absl_optional",
}

def system_libs():
    system_repo(name = "com_google_absl", targets = _ABSL)
    system_repo(name = "com_google_googletest", targets = {
        ":gtest": "gtest",
        ":gtest_main": "gtest_main gtest",
        ":gmock": "gmock gtest",
        ":gmock_main": "gmock_main gmock gtest",
    })
    system_repo(name = "com_github_google_benchmark", targets = {
        ":benchmark": "benchmark",
        ":benchmark_main": "-lbenchmark_main -lbenchmark -lpthread",
    })
    system_repo(name = "libarchive", targets = {":libarchive": "libarchive"})
    system_repo(name = "openssl", targets = {":crypto": "libcrypto", ":ssl": "openssl"})
    # :curl is pkg-config --static (needs static deps Debian lacks: nghttp2, rtmp, ssh2...);
    # :curl_shared links the shared libcurl.
    system_repo(name = "curl", targets = {":curl": "libcurl", ":curl_shared": "-lcurl"})
    system_repo(name = "nlohmann_json", targets = {":json": "nlohmann_json"})
    system_repo(name = "zlib", targets = {":zlib": "zlib"})
    system_repo(name = "libkmod", targets = {":libkmod": "libkmod"})
    system_repo(name = "lz4", targets = {":lz4": "liblz4"})
    system_repo(name = "xz", targets = {":lzma": "liblzma"})
