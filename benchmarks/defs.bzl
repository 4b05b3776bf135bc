"""mode_binaries: executables rebuilt in a fixed compilation mode, whatever the command line's.

The runner's micro benchmarks must measure optimized code even under a plain
`bazel run //benchmarks` (whose default mode, fastbuild, compiles without -O): `:micro_opt`
uses compilation_mode = "opt". The gate test builds a deliberately slow twin with "dbg" (-O0).
Each binary appears as `<name>/<basename>` in the rule's outputs and runfiles.
"""

def _mode_transition_impl(settings, attr):
    return {"//command_line_option:compilation_mode": attr.compilation_mode}

_mode_transition = transition(
    implementation = _mode_transition_impl,
    inputs = [],
    outputs = ["//command_line_option:compilation_mode"],
)

def _mode_binaries_impl(ctx):
    outs = []
    runfiles = ctx.runfiles()
    for src in ctx.attr.srcs:
        exe = src[DefaultInfo].files_to_run.executable
        out = ctx.actions.declare_file(ctx.label.name + "/" + exe.basename)
        ctx.actions.symlink(output = out, target_file = exe, is_executable = True)
        outs.append(out)
        runfiles = runfiles.merge(src[DefaultInfo].default_runfiles)
    return [DefaultInfo(files = depset(outs), runfiles = runfiles.merge(ctx.runfiles(files = outs)))]

mode_binaries = rule(
    implementation = _mode_binaries_impl,
    doc = "The `srcs` executables built in `compilation_mode`, as `<name>/<basename>` files.",
    attrs = {
        "srcs": attr.label_list(
            cfg = _mode_transition,
            doc = "Executable targets (cc_binary).",
        ),
        "compilation_mode": attr.string(
            values = ["opt", "fastbuild", "dbg"],
            default = "opt",
            doc = "opt (-O2 -DNDEBUG), fastbuild, or dbg (-O0 -g).",
        ),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)
