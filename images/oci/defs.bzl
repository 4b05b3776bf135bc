"""kiln_oci_image: a deterministic OCI image layout (directory) from layer tars.

Loaded through //images:defs.bzl. One action runs `//images/oci:kiln-oci`.
"""

def _kiln_oci_image_impl(ctx):
    if not ctx.files.layers:
        fail("%s: `layers` is empty; an image needs at least one layer" % ctx.label)
    for env in ctx.attr.env:
        if "=" not in env or env.startswith("="):
            fail("%s: env %r: want KEY=value" % (ctx.label, env))
    out = ctx.actions.declare_directory(ctx.label.name)
    digest = ctx.actions.declare_file(ctx.label.name + ".digest")
    args = ctx.actions.args()
    args.add("--out", out.path)
    args.add("--digest_out", digest)
    for layer in ctx.attr.layers:
        files = layer.files.to_list()
        if len(files) != 1:
            fail("%s: layer %s gives %d files; want exactly one tar" % (ctx.label, layer.label, len(files)))
        args.add("--layer", "%s=kiln: %s" % (files[0].path, layer.label))
    args.add_all(ctx.attr.entrypoint, before_each = "--entrypoint")
    args.add_all(ctx.attr.cmd, before_each = "--cmd")
    args.add_all(ctx.attr.env, before_each = "--env")
    for k, v in sorted(ctx.attr.labels.items()):
        args.add("--label", "%s=%s" % (k, v))
    for k, v in sorted(ctx.attr.annotations.items()):
        args.add("--annotation", "%s=%s" % (k, v))
    if ctx.attr.workdir:
        args.add("--workdir", ctx.attr.workdir)
    args.add("--created", ctx.attr.created)
    if ctx.attr.ref_name:
        args.add("--ref_name", ctx.attr.ref_name)
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = ctx.files.layers,
        outputs = [out, digest],
        mnemonic = "KilnOciImage",
        progress_message = "Writing OCI image layout %s" % out.short_path,
    )
    return [
        DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out, digest])),
        OutputGroupInfo(digest = depset([digest])),
    ]

_kiln_oci_image = rule(
    implementation = _kiln_oci_image_impl,
    doc = """An OCI image layout directory (oci-layout, index.json, blobs/sha256/) built from
    uncompressed layer tars, deterministically (gzip'd layers without timestamps, sorted compact
    JSON, `created` fixed). Also writes `<name>.digest` (the manifest digest; output group
    `digest`).

    Example:
        kiln_oci_image(
            name = "builder",
            layers = ["//images/rootfs:builder_rootfs", ":builder_kiln_layer"],
            entrypoint = ["/usr/local/bin/kiln-agent"],
        )
    """,
    attrs = {
        "layers": attr.label_list(allow_files = True, mandatory = True, doc = "uncompressed layer tars, bottom first"),
        "entrypoint": attr.string_list(doc = "config.Entrypoint"),
        "cmd": attr.string_list(doc = "config.Cmd"),
        "env": attr.string_list(doc = "config.Env, KEY=value"),
        "labels": attr.string_dict(doc = "config.Labels"),
        "annotations": attr.string_dict(doc = "manifest annotations"),
        "workdir": attr.string(doc = "config.WorkingDir"),
        "created": attr.string(default = "1970-01-01T00:00:00Z", doc = "RFC 3339 UTC creation time (never the clock)"),
        "ref_name": attr.string(doc = "index.json org.opencontainers.image.ref.name"),
        "_tool": attr.label(default = "//images/oci:kiln-oci", executable = True, cfg = "exec"),
    },
)

def kiln_oci_image(name, twin = False, **kwargs):
    """Declares the OCI image layout `name`; with twin = True also `<name>_twin` (tagged
    manual): the same image written by a second, independent action, so that a test can check
    that two builds give the same manifest digest."""
    _kiln_oci_image(name = name, **kwargs)
    if twin:
        twin_kwargs = dict(kwargs)
        twin_kwargs["tags"] = twin_kwargs.get("tags", []) + ["manual"]
        _kiln_oci_image(name = name + "_twin", **twin_kwargs)
