"""Public Starlark API of images/: deterministic kernel, module and archive targets.

Every rule runs exactly one action that calls the C++ image tool `//images/tool:kiln-image`,
with a mnemonic (`KilnVmlinux`, `KilnModules`, `KilnCpio`), so the same inputs give the same
bytes. Attributes are checked at analysis time and bad combinations `fail()` early.

Rules and what they make:
  vmlinux          ELF kernel from a bzImage                  (kiln-image extract-vmlinux)
  kernel_modules   needed .ko files + modules.dep + modules.load (kiln-image modules, libkmod)
  kiln_cpio        newc cpio (initramfs), gzip by default      (kiln-image cpio)
  kiln_tar         tar layer (pax or ustar)                    (kiln-image tar)
  kiln_image_disk  ext4 root disk from an OCI image layout     (kiln-image image-to-disk)

Example (images/BUILD):

    load("@kiln_kernel//:kernel.bzl", "KERNEL_RELEASE")
    load("//images:defs.bzl", "kernel_modules", "kiln_cpio", "vmlinux")

    vmlinux(name = "vmlinux", bzimage = "@kiln_kernel//:vmlinuz")

    kernel_modules(
        name = "modules",
        kernel_release = KERNEL_RELEASE,
        modules_tree = "@kiln_kernel//:modules_tree",
        modules = ["virtio_blk", "overlay"],
    )

    kiln_cpio(
        name = "initrd",
        out = "initrd.cpio.gz",
        executables = {"//init:init": "init"},
        chardevs = {"dev/console": "5:1"},
        kernel_modules = ":modules",
    )
"""

load("//images/oci:defs.bzl", _kiln_oci_image = "kiln_oci_image")
load("//images:image_disk.bzl", _kiln_image_disk = "kiln_image_disk")

# kiln_oci_image: OCI image layout directory from layer tars (images/oci/defs.bzl).
kiln_oci_image = _kiln_oci_image

# kiln_image_disk: ext4 root disk from an OCI image layout (images/image_disk.bzl).
kiln_image_disk = _kiln_image_disk


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
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

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

# ---------------------------------------------------------------------------------------------
# kernel_modules

KernelModulesInfo = provider(
    doc = "Kernel modules selected for an image (output of kernel_modules).",
    fields = {
        "kernel_release": "string: the kernel release (uname -r), e.g. 6.1.0-57-cloud-amd64",
        "tree": "File (directory): lib/modules/<kernel_release>/{kernel/...ko, modules.dep}",
        "modules_load": "File: absolute guest paths of the .ko files, one per line, in load order",
    },
)

def _check_release(release):
    if not release or "/" in release or release in [".", ".."] or " " in release:
        fail("kernel_release %r is not a kernel release such as 6.1.0-57-cloud-amd64" % release)

def _kernel_modules_impl(ctx):
    _check_release(ctx.attr.kernel_release)
    if not ctx.attr.modules:
        fail("kernel_modules %s: `modules` is empty" % ctx.label)
    seen = {}
    for m in ctx.attr.modules:
        if not m or "/" in m or "." in m or " " in m:
            fail("kernel_modules: %r is not a module name (use e.g. virtio_blk, not a path)" % m)
        if m in seen:
            fail("kernel_modules: module %r listed twice" % m)
        seen[m] = True
    suffix = "/lib/modules/%s/modules.dep.bin" % ctx.attr.kernel_release
    module_dir = None
    for f in ctx.files.modules_tree:
        if f.path.endswith(suffix):
            module_dir = f.path[:-len("/modules.dep.bin")]
    if not module_dir:
        fail("kernel_modules: modules_tree has no lib/modules/%s/modules.dep.bin (run depmod)" %
             ctx.attr.kernel_release)

    tree = ctx.actions.declare_directory(ctx.label.name)
    load_list = ctx.actions.declare_file(ctx.label.name + ".load")
    args = ctx.actions.args()
    args.add("modules")
    args.add("--module_dir", module_dir)
    args.add("--kernel_release", ctx.attr.kernel_release)
    for m in ctx.attr.modules:
        args.add("--module", m)
    args.add("--out_dir", tree.path)
    args.add("--load_out", load_list)
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = ctx.files.modules_tree,
        outputs = [tree, load_list],
        mnemonic = "KilnModules",
        progress_message = "Resolving %d kernel modules for %s" % (len(ctx.attr.modules), ctx.label),
    )
    return [
        DefaultInfo(files = depset([tree, load_list]), runfiles = ctx.runfiles(files = [tree, load_list])),
        OutputGroupInfo(modules_load = depset([load_list]), tree = depset([tree])),
        KernelModulesInfo(kernel_release = ctx.attr.kernel_release, tree = tree, modules_load = load_list),
    ]

kernel_modules = rule(
    implementation = _kernel_modules_impl,
    doc = """Selects kernel modules and resolves their load order at build time.

    Each name (or alias) in `modules` is resolved in the depmod-prepared module tree like
    `modprobe --show-depends` (libkmod dry-run probe: softdeps and dependencies first, the
    host's modprobe.d and loaded modules ignored). Outputs: the directory `<name>/` holding
    lib/modules/<kernel_release>/ with only the needed .ko files and their modules.dep, and
    `<name>.load` (the guest's /etc/kiln/modules.load: absolute paths, one per line, in load
    order). Built-in modules (e.g. ext4) resolve to nothing to load.

    Example:
        kernel_modules(
            name = "modules",
            kernel_release = KERNEL_RELEASE,
            modules_tree = "@kiln_kernel//:modules_tree",
            modules = ["virtio_blk", "overlay"],
        )
    """,
    attrs = {
        "kernel_release": attr.string(mandatory = True, doc = "uname -r of the kernel (KERNEL_RELEASE)"),
        "modules": attr.string_list(mandatory = True, doc = "module names or aliases to load, in order"),
        "modules_tree": attr.label(mandatory = True, allow_files = True, doc = "every file under lib/modules/<kver>, after depmod"),
        "_tool": _tool_attr(),
    },
)

# ---------------------------------------------------------------------------------------------
# kiln_cpio / kiln_tar

def _check_guest_path(path, what):
    if not path:
        fail("%s: empty guest path" % what)
    if path.startswith("/"):
        fail("%s: guest path %r must be relative to the archive root (write %r)" % (what, path, path.lstrip("/")))
    for c in path.split("/"):
        if c in ["", ".", ".."]:
            fail("%s: guest path %r has an empty, '.' or '..' component" % (what, path))

def _check_mode(mode, what):
    if not mode or len(mode) > 5 or [c for c in mode.elems() if c not in "01234567"]:
        fail("%s: mode %r is not an octal string such as \"0755\"" % (what, mode))

def _add_entry(entries, paths, path, entry, what):
    _check_guest_path(path, what)
    if path in paths:
        fail("%s: guest path %r given twice (also by %s)" % (what, path, paths[path]))
    paths[path] = what
    entry["path"] = path
    entries.append(entry)

def _archive_entries(ctx):
    """The manifest entries and input files from the rule's attributes (fails on bad ones)."""
    entries = []
    inputs = []
    paths = {}

    for attr_name, mode in [("files", "0644"), ("executables", "0755")]:
        for target, path in getattr(ctx.attr, attr_name).items():
            files = target.files.to_list()
            if len(files) != 1:
                fail("%s: %s gives %d files; want exactly one" % (attr_name, target.label, len(files)))
            inputs.append(files[0])
            _add_entry(entries, paths, path, {"type": "file", "mode": mode, "source": files[0].path}, "%s[%s]" % (attr_name, target.label))
    for path in ctx.attr.dirs:
        _add_entry(entries, paths, path, {"type": "dir", "mode": "0755"}, "dirs")
    for path, target in ctx.attr.symlinks.items():
        if not target:
            fail("symlinks: %r has an empty target" % path)
        _add_entry(entries, paths, path, {"type": "symlink", "target": target}, "symlinks")
    for path, spec in ctx.attr.chardevs.items():
        parts = spec.split(":")
        if len(parts) not in [2, 3] or not parts[0].isdigit() or not parts[1].isdigit():
            fail("chardevs: %r: want \"major:minor\" or \"major:minor:mode\", got %r" % (path, spec))
        mode = parts[2] if len(parts) == 3 else "0600"
        _check_mode(mode, "chardevs[%s]" % path)
        _add_entry(entries, paths, path, {"type": "chardev", "mode": mode, "major": int(parts[0]), "minor": int(parts[1])}, "chardevs")
    if ctx.attr.kernel_modules:
        info = ctx.attr.kernel_modules[KernelModulesInfo]
        inputs += [info.tree, info.modules_load]
        entries.append({"type": "tree", "path": "", "source": info.tree.path})
        _add_entry(entries, paths, ctx.attr.modules_load_path, {"type": "file", "mode": "0644", "source": info.modules_load.path},
            "kernel_modules (modules_load_path)")
    for path, mode in ctx.attr.modes.items():
        _check_mode(mode, "modes[%s]" % path)
        hits = [e for e in entries if e.get("path") == path and e["type"] in ["file", "dir", "chardev"]]
        if not hits:
            fail("modes: %r is not a file, executable, dir or chardev of this archive" % path)
        hits[0]["mode"] = mode
    if not entries:
        fail("%s: the archive would be empty" % ctx.label)
    return entries, inputs

def _archive_impl(ctx, command, mnemonic):
    out = ctx.actions.declare_file(ctx.attr.out or ctx.label.name)
    entries, inputs = _archive_entries(ctx)
    manifest = ctx.actions.declare_file(ctx.label.name + ".manifest.json")
    ctx.actions.write(manifest, json.encode({"entries": entries}) + "\n")
    args = ctx.actions.args()
    args.add(command)
    args.add("--manifest", manifest)
    args.add("--out", out)
    args.add("--gzip=" + ("true" if ctx.attr.gzip else "false"))
    if command == "tar":
        if ctx.attr.format not in ["pax", "ustar"]:
            fail("format %r: want pax or ustar" % ctx.attr.format)
        args.add("--format=" + ctx.attr.format)
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = inputs + [manifest],
        outputs = [out],
        mnemonic = mnemonic,
        progress_message = "Writing %s %s" % (command, out.short_path),
    )
    return [
        DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out])),
        OutputGroupInfo(manifest = depset([manifest])),
    ]

_ARCHIVE_ATTRS = {
    "out": attr.string(doc = "output file name (default: the target name)"),
    "files": attr.label_keyed_string_dict(allow_files = True, doc = "file label -> guest path (mode 0644)"),
    "executables": attr.label_keyed_string_dict(allow_files = True, doc = "file label -> guest path (mode 0755)"),
    "dirs": attr.string_list(doc = "extra empty directories (mode 0755); parents are added anyway"),
    "symlinks": attr.string_dict(doc = "guest path -> link target"),
    "chardevs": attr.string_dict(doc = "guest path -> \"major:minor\" or \"major:minor:mode\" (default mode 0600)"),
    "modes": attr.string_dict(doc = "guest path -> octal mode (\"0640\") of one of the entries above, instead of its default"),
    "kernel_modules": attr.label(providers = [KernelModulesInfo], doc = "a kernel_modules target: its lib/modules tree at the root, its load list at modules_load_path"),
    "modules_load_path": attr.string(default = "etc/kiln/modules.load", doc = "guest path of the module load list"),
    "gzip": attr.bool(default = True, doc = "gzip the archive (no timestamp in the gzip header)"),
    "_tool": _tool_attr(),
}

def _cpio_impl(ctx):
    return _archive_impl(ctx, "cpio", "KilnCpio")

kiln_cpio = rule(
    implementation = _cpio_impl,
    doc = """A deterministic newc cpio archive, e.g. an initramfs.

    Guest paths are relative ("init", not "/init"); parent directories are added (0755);
    entries are sorted by path, with mtime SOURCE_DATE_EPOCH (or 0), uid/gid 0 and fixed
    inode numbers, so the same inputs give the same bytes. Bad paths, duplicates and
    malformed device specs fail at analysis time.

    Example:
        kiln_cpio(
            name = "initrd",
            out = "initrd.cpio.gz",
            executables = {"//init:init": "init"},
            chardevs = {"dev/console": "5:1"},
            kernel_modules = ":modules",
        )
    """,
    attrs = _ARCHIVE_ATTRS,
)

def _tar_impl(ctx):
    return _archive_impl(ctx, "tar", "KilnTar")

_TAR_ATTRS = dict(_ARCHIVE_ATTRS)
_TAR_ATTRS["gzip"] = attr.bool(default = False, doc = "gzip the archive (no timestamp in the gzip header)")
_TAR_ATTRS["format"] = attr.string(default = "pax", doc = "pax (extended headers only where needed) or ustar")

kiln_tar = rule(
    implementation = _tar_impl,
    doc = """A deterministic tar archive (e.g. an OCI layer): like kiln_cpio, plus empty
    uname/gname; `format` pax (default) or ustar.

    Example:
        kiln_tar(name = "layer", out = "layer.tar", files = {":config": "etc/app.conf"})
    """,
    attrs = _TAR_ATTRS,
)

# ---------------------------------------------------------------------------------------------
# kiln_initrd (macro)

def kiln_initrd(name, init, kernel_modules, out = None, files = {}, twin = True, **kwargs):
    """The kiln initramfs (docs/interfaces.md "initrd layout"), as a gzip'd newc cpio.

    Holds /init (mode 0755), /dev/console (char 5:1), the kernel_modules tree under
    /lib/modules/<kver>/ and its load list at /etc/kiln/modules.load, plus `files`.

    Args:
      name: target name; the output is `out` (default "<name>.cpio.gz").
      init: label of the static init binary (//init:init).
      kernel_modules: a kernel_modules target.
      out: output file name.
      files: extra {label: guest path} files (mode 0644).
      twin: also declare "<name>_twin" (tagged manual), the same archive written by a
        second, independent action, for reproducibility tests.
      **kwargs: common attributes (visibility, tags, ...).
    """
    if not init:
        fail("kiln_initrd %s: `init` is required" % name)
    attrs = dict(
        chardevs = {"dev/console": "5:1"},
        executables = {init: "init"},
        files = files,
        kernel_modules = kernel_modules,
    )
    kiln_cpio(name = name, out = out or (name + ".cpio.gz"), **dict(attrs, **kwargs))
    if twin:
        twin_kwargs = dict(kwargs)
        twin_kwargs["tags"] = kwargs.get("tags", []) + ["manual"]
        kiln_cpio(name = name + "_twin", out = name + "_twin.cpio.gz", **dict(attrs, **twin_kwargs))
