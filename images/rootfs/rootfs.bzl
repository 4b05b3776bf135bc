"""kiln_ext4_disk: a deterministic ext4 disk image from a root filesystem tar plus extra files.

One action (mkext4.sh) unpacks the tar into a temporary directory (as root, keeping owners,
modes, xattrs and device nodes), adds the extra entries, runs `mkfs.ext4 -d` with a fixed UUID,
directory hash seed, E2FSPROGS_FAKE_TIME and a size computed from the tree, then sets every
inode's atime/ctime to source_date_epoch with debugfs and checks the result with `e2fsck -fn`.
Nothing is mounted. The action is tagged `no-sandbox`: it must create device nodes and files
owned by other users, which Bazel's linux-sandbox (a user namespace) does not allow.

Example:

    kiln_ext4_disk(
        name = "testroot_disk",
        base = "@kiln_testroot_debian//:rootfs.tar",
        files = {
            "bundle/config.json": "/opt/kiln/bundle/config.json",
            "cgroup-check.sh": "/usr/lib/kiln/cgroup-check:0755",
        },
        dirs = ["/opt/kiln/bundle/rootfs/proc"],
        hardlinks = {"/opt/kiln/bundle/rootfs/bin/busybox": "/bin/busybox"},
        symlinks = {"/opt/kiln/bundle/rootfs/bin/cat": "busybox"},
        uuid = "6b696c6e-0000-4000-8000-000000000001",
    )

Output: NAME.ext4.
"""

_DEFAULT_MODE = "0644"

def _check_path(attr, p):
    if not p.startswith("/") or p.endswith("/") or "//" in p:
        fail("%s: %r must be an absolute path without a trailing slash" % (attr, p))
    for c in ["\t", "\n", " "]:
        if c in p:
            fail("%s: %r must not contain whitespace" % (attr, p))
    for part in p.split("/")[1:]:
        if part in [".", ".."]:
            fail("%s: %r must not contain . or .. components" % (attr, p))

def _split_mode(attr, spec, default_mode):
    """Splits "PATH[:MODE]" into (PATH, MODE), MODE an octal string like 0755."""
    path, sep, mode = spec.partition(":")
    if not sep:
        mode = default_mode
    if len(mode) not in [3, 4] or [c for c in mode.elems() if c not in "01234567"]:
        fail("%s: bad mode %r in %r (want octal, e.g. 0755)" % (attr, mode, spec))
    _check_path(attr, path)
    return path, mode

def _check_uuid(attr, u):
    parts = u.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or [c for c in u.elems() if c not in "0123456789abcdef-"]:
        fail("%s: %r is not a lower-case UUID (8-4-4-4-12 hex digits)" % (attr, u))

def _kiln_ext4_disk_impl(ctx):
    _check_uuid("uuid", ctx.attr.uuid)
    hash_seed = ctx.attr.hash_seed or ctx.attr.uuid
    _check_uuid("hash_seed", hash_seed)
    if len(ctx.attr.label) > 16:
        fail("label: %r is longer than 16 bytes (ext4 limit)" % ctx.attr.label)

    lines = []
    inputs = [ctx.file.base, ctx.file._mke2fs_conf]
    for d in ctx.attr.dirs:
        path, mode = _split_mode("dirs", d, "0755")
        lines.append("dir\t%s\t%s" % (path, mode))
    for target, spec in ctx.attr.files.items():
        srcs = target.files.to_list()
        if len(srcs) != 1:
            fail("files: %s must be exactly one file, got %d" % (target.label, len(srcs)))
        path, mode = _split_mode("files", spec, _DEFAULT_MODE)
        lines.append("file\t%s\t%s\t%s" % (srcs[0].path, path, mode))
        inputs.append(srcs[0])
    for dest, src in ctx.attr.hardlinks.items():
        _check_path("hardlinks", dest)
        _check_path("hardlinks", src)
        lines.append("hardlink\t%s\t%s" % (src, dest))
    for dest, target in ctx.attr.symlinks.items():
        _check_path("symlinks", dest)
        if not target or "\t" in target or "\n" in target:
            fail("symlinks: bad target %r for %s" % (target, dest))
        lines.append("symlink\t%s\t%s" % (target, dest))

    entries = ctx.actions.declare_file(ctx.label.name + ".entries")
    ctx.actions.write(entries, "\n".join(lines) + "\n")
    inputs.append(entries)

    out = ctx.actions.declare_file(ctx.label.name + ".ext4")
    ctx.actions.run(
        executable = ctx.executable._mkext4,
        arguments = [
            out.path,
            ctx.file.base.path,
            entries.path,
            ctx.file._mke2fs_conf.path,
            str(ctx.attr.source_date_epoch),
            ctx.attr.uuid,
            hash_seed,
            ctx.attr.label,
            str(ctx.attr.headroom_percent),
            str(ctx.attr.extra_mib),
        ],
        inputs = inputs,
        outputs = [out],
        mnemonic = "KilnExt4Disk",
        progress_message = "Building ext4 disk %s" % ctx.label,
        execution_requirements = {"no-sandbox": "1", "no-remote": "1"},
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

kiln_ext4_disk = rule(
    implementation = _kiln_ext4_disk_impl,
    doc = "A deterministic ext4 disk image: a root filesystem tar plus extra entries (see rootfs.bzl).",
    attrs = {
        "base": attr.label(mandatory = True, allow_single_file = [".tar"], doc = "Root filesystem tar (e.g. @kiln_testroot_debian//:rootfs.tar)."),
        "files": attr.label_keyed_string_dict(allow_files = True, doc = "File -> \"/dest/path[:MODE]\" (MODE octal, default 0644; owner root:root)."),
        "dirs": attr.string_list(doc = "Directories to create: \"/path[:MODE]\" (default 0755), e.g. mount points."),
        "symlinks": attr.string_dict(doc = "\"/dest/path\" -> link target (relative or absolute)."),
        "hardlinks": attr.string_dict(doc = "\"/dest/path\" -> \"/existing/file\" in the root (shares the inode)."),
        "uuid": attr.string(mandatory = True, doc = "File system UUID (fixed, so the image is reproducible)."),
        "hash_seed": attr.string(doc = "Directory hash seed UUID; default: uuid."),
        "label": attr.string(default = "kiln-root", doc = "Volume label (at most 16 bytes)."),
        "source_date_epoch": attr.int(default = 1700000000, doc = "Time of every inode added or normalized, in seconds since the epoch."),
        "headroom_percent": attr.int(default = 10, doc = "Free space in percent of the used size."),
        "extra_mib": attr.int(default = 16, doc = "Extra free space, in MiB."),
        "_mkext4": attr.label(default = "//images/rootfs:mkext4", executable = True, cfg = "exec"),
        "_mke2fs_conf": attr.label(default = "//images/rootfs:mke2fs.conf", allow_single_file = True),
    },
)
