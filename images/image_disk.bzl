"""kiln_image_disk: a deterministic ext4 root disk made from an OCI image layout.

One action runs `kiln-image image-to-disk` (images/tool/image_disk.h): the image's config and
layer digests are verified, its layers are unpacked in manifest order with OCI whiteouts
(hostile layers refused), and kiln's disk tool images/rootfs/mkext4.sh makes the ext4 image
from the tree (fixed UUID, hash seed, label, times; `e2fsck -fn`). So the disk a VM boots is,
byte for byte, what the image turns into. The action is tagged `no-sandbox` (owners, device
nodes: like kiln_ext4_disk).

With `twin = True` the macro also declares `<name>_twin` (tagged manual): the same disk from
`twin_image` (an independent build of the image) by a second, independent action, for a test
that both have the same sha256.

Example (images/BUILD):

    kiln_image_disk(
        name = "builder_disk",
        image = ":builder",
        twin_image = ":builder_twin",
        device_dirs = ["dev"],
        label = "kiln-builder13",
        uuid = "6b696c6e-6275-4169-8c64-650000000013",
    )

Output: NAME.ext4.
"""

def _check_uuid(attr, u):
    parts = u.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or [c for c in u.elems() if c not in "0123456789abcdef-"]:
        fail("%s: %r is not a lower-case UUID (8-4-4-4-12 hex digits)" % (attr, u))

def _kiln_image_disk_impl(ctx):
    _check_uuid("uuid", ctx.attr.uuid)
    if ctx.attr.hash_seed:
        _check_uuid("hash_seed", ctx.attr.hash_seed)
    if len(ctx.attr.label) > 16:
        fail("label: %r is longer than 16 bytes (ext4 limit)" % ctx.attr.label)
    layouts = ctx.files.image
    if len(layouts) != 1 or not layouts[0].is_directory:
        fail("image: %s must be one OCI image layout directory (a kiln_oci_image)" % ctx.attr.image.label)
    for d in ctx.attr.device_dirs:
        if not d or d.startswith("/") or ".." in d.split("/"):
            fail("device_dirs: %r must be a relative path inside the image, e.g. \"dev\"" % d)

    out = ctx.actions.declare_file(ctx.label.name + ".ext4")
    args = ctx.actions.args()
    args.add("image-to-disk")
    args.add("--layout", layouts[0].path)
    if ctx.attr.ref:
        args.add("--ref", ctx.attr.ref)
    args.add("--out", out)
    args.add("--mkext4", ctx.executable._mkext4)
    args.add("--mke2fs_conf", ctx.file._mke2fs_conf)
    args.add("--epoch", str(ctx.attr.source_date_epoch))
    args.add("--uuid", ctx.attr.uuid)
    if ctx.attr.hash_seed:
        args.add("--hash_seed", ctx.attr.hash_seed)
    args.add("--label", ctx.attr.label)
    args.add("--headroom_percent", str(ctx.attr.headroom_percent))
    args.add("--extra_mib", str(ctx.attr.extra_mib))
    for d in ctx.attr.device_dirs:
        args.add("--device_dir", d)
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = [layouts[0], ctx.file._mke2fs_conf],
        tools = [ctx.executable._mkext4],
        outputs = [out],
        mnemonic = "KilnImageDisk",
        progress_message = "Making ext4 disk %s from the OCI image %s" % (ctx.label, ctx.attr.image.label),
        execution_requirements = {"no-sandbox": "1", "no-remote": "1"},
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_kiln_image_disk = rule(
    implementation = _kiln_image_disk_impl,
    doc = "A deterministic ext4 root disk made from an OCI image layout (see image_disk.bzl).",
    attrs = {
        "image": attr.label(mandatory = True, allow_files = True, doc = "OCI image layout directory (a kiln_oci_image)."),
        "ref": attr.string(doc = "org.opencontainers.image.ref.name of the manifest; default: the layout's only one."),
        "device_dirs": attr.string_list(doc = "Directories (relative, e.g. \"dev\") below which the layers may hold device nodes; elsewhere they are refused."),
        "uuid": attr.string(mandatory = True, doc = "File system UUID (fixed, so the disk is reproducible)."),
        "hash_seed": attr.string(doc = "Directory hash seed UUID; default: uuid."),
        "label": attr.string(default = "kiln-root", doc = "Volume label (at most 16 bytes)."),
        "source_date_epoch": attr.int(default = 1700000000, doc = "Time of every inode normalized, seconds since the epoch."),
        "headroom_percent": attr.int(default = 10, doc = "Free space in percent of the used size."),
        "extra_mib": attr.int(default = 16, doc = "Extra free space, in MiB."),
        "_tool": attr.label(default = "//images/tool:kiln-image", executable = True, cfg = "exec"),
        "_mkext4": attr.label(default = "//images/rootfs:mkext4", executable = True, cfg = "exec"),
        "_mke2fs_conf": attr.label(default = "//images/rootfs:mke2fs.conf", allow_single_file = True),
    },
)

def kiln_image_disk(name, twin_image = None, **kwargs):
    """Declares the disk `name` from `image`; with `twin_image` also `<name>_twin` (manual):
    the same disk from that independently built layout, by an independent action."""
    _kiln_image_disk(name = name, **kwargs)
    if twin_image:
        twin_kwargs = dict(kwargs)
        twin_kwargs["image"] = twin_image
        twin_kwargs["tags"] = twin_kwargs.get("tags", []) + ["manual"]
        twin_kwargs.pop("visibility", None)
        _kiln_image_disk(name = name + "_twin", **twin_kwargs)
