"""opt_binaries: executables rebuilt with `-c opt`, whatever the command line's mode.

Micro benchmarks measure optimized code even under a plain `bazel run //benchmarks` (whose
default mode, fastbuild, compiles without -O). Each binary appears as `<name>/<basename>`.
"""

def _opt_transition_impl(settings, attr):
    return {"//command_line_option:compilation_mode": "opt"}

_opt_transition = transition(
    implementation = _opt_transition_impl,
    inputs = [],
    outputs = ["//command_line_option:compilation_mode"],
)

def _opt_binaries_impl(ctx):
    outs = []
    runfiles = ctx.runfiles()
    for src in ctx.attr.srcs:
        exe = src[DefaultInfo].files_to_run.executable
        out = ctx.actions.declare_file(ctx.label.name + "/" + exe.basename)
        ctx.actions.symlink(output = out, target_file = exe, is_executable = True)
        outs.append(out)
        runfiles = runfiles.merge(src[DefaultInfo].default_runfiles)
    return [DefaultInfo(files = depset(outs), runfiles = runfiles.merge(ctx.runfiles(files = outs)))]

opt_binaries = rule(
    implementation = _opt_binaries_impl,
    doc = "The `srcs` executables built with -c opt, as `<name>/<basename>` files.",
    attrs = {
        "srcs": attr.label_list(
            cfg = _opt_transition,
            doc = "Executable targets (cc_binary) to build in opt mode.",
        ),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)
