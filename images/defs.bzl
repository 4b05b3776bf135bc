"""Public Starlark API of images/: deterministic kernel, module and archive targets.

Every rule runs exactly one action that calls the C++ image tool `//images/tool:kiln-image`,
with a mnemonic (`KilnVmlinux`, `KilnModules`, `KilnCpio`), so the same inputs give the same
bytes. Attributes are checked at analysis time and bad combinations `fail()` early.

Example (images/BUILD):

    load("//images:defs.bzl", "kernel_modules", "kiln_cpio", "vmlinux")

    vmlinux(name = "vmlinux", bzimage = "@kiln_kernel//:vmlinuz")

    kernel_modules(
        name = "modules",
        kernel_release = KERNEL_RELEASE,
        modules_tree = "@kiln_kernel//:modules_tree",
        modules = ["virtio_blk", "overlay"],
    )
"""

_TOOL = "//images/tool:kiln-image"

def _tool_attr():
    return attr.label(default = _TOOL, executable = True, cfg = "exec", doc = "the image tool")

# ---------------------------------------------------------------------------------------------
# vmlinux

def _vmlinux_impl(ctx):
    out = ctx.actions.declare_file(ctx.attr.out or ctx.label.name)
    args = ctx.actions.args()
    args.add("extract-vmlinux")
    args.add("--bzimage", ctx.file.bzimage)
    args.add("--out", out)
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = [ctx.file.bzimage],
        outputs = [out],
        mnemonic = "KilnVmlinux",
        progress_message = "Extracting vmlinux from %s" % ctx.file.bzimage.short_path,
    )
    return [DefaultInfo(files = depset([out]))]

vmlinux = rule(
    implementation = _vmlinux_impl,
    doc = """Extracts the ELF kernel (PVH-bootable vmlinux) from an x86 bzImage.

    The payload is located through the boot protocol header and decompressed (lz4 legacy
    frame or xz) by `kiln-image extract-vmlinux`.

    Example: `vmlinux(name = "vmlinux", bzimage = "@kiln_kernel//:vmlinuz")`
    """,
    attrs = {
        "bzimage": attr.label(mandatory = True, allow_single_file = True, doc = "the bzImage (vmlinuz)"),
        "out": attr.string(doc = "output file name (default: the target name)"),
        "_tool": _tool_attr(),
    },
)
