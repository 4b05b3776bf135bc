"""kiln's execution requirements as data: the execution platforms' properties and `vm_test`.

Every test that boots a VM is declared with `vm_test` (a `cc_test` with the requirement filled
in), never with hand-written tags, so that what a VM test needs from the machine that runs it is
stated once, here:

    load("//tools/platforms:defs.bzl", "vm_test")

    vm_test(
        name = "cgroup_vm_test",
        requires = "qemu",            # a key of VM_REQUIREMENTS
        srcs = ["cgroup_vm_test.cc"],
        shard_count = 2,              # from measured times: see tools/platforms/README.md
        ...                           # any other cc_test attribute
    )

A requirement (a row of VM_REQUIREMENTS) sets:
  tags             "vm" plus its "requires-*" tags (the tags @kiln_host's SKIP_REASONS and
                   tools/test_summary.py explain when a test is skipped);
  exec_properties  the Remote Execution API platform properties that route the test action to
                   a worker that can run it (merged over the execution platform's own);
  target_compatible_with
                   locally: what @kiln_host found (a test this host cannot run is SKIPPED);
                   under --config=remote (--define=kiln_exec=remote): nothing, the worker pool
                   named in exec_properties provides it;
  env              the host facts the test's result depends on and that are not files (QEMU
                   version, Cloud Hypervisor version, accelerator), so that they are part of
                   the test action's cache key: a cached result is reused only where they are
                   the same. Under --config=remote the worker image decides them instead.

A requirement whose result depends on the host in a way that cannot be made an input carries
`no_remote_cache` (the reason): the macro then tags the test `no-remote-cache`.

Why exec_properties and not exec_compatible_with: Bazel 4.2 resolves a target's execution
platform before it checks target_compatible_with, so a test that needs a `:kvm` execution
platform fails the whole build ("Unable to find an execution platform") on a host without one,
instead of being skipped. Properties on the test route it just as well.
"""

load("@rules_cc//cc:defs.bzl", "cc_test")
load(
    "@kiln_host//:defs.bzl",
    "CLOUD_HYPERVISOR_COMPATIBLE",
    "CLOUD_HYPERVISOR_VERSION",
    "HAS_KVM",
    "KVM_COMPATIBLE",
    "QEMU_COMPATIBLE",
    "QEMU_VERSION",
)

# Remote Execution API platform properties. "OSFamily" is the API's own key; "Pool" is the
# worker-pool key of Buildbarn, BuildBuddy and EngFlow. Rename the pool here if your service
# calls it otherwise (one place: the platforms and the tests both read these).
KVM_POOL = "kvm"

LINUX_EXEC_PROPERTIES = {"OSFamily": "Linux"}

KVM_EXEC_PROPERTIES = {
    "OSFamily": "Linux",
    "Pool": KVM_POOL,
}

def _dedup(labels):
    # Both lists are ["@platforms//:incompatible"] on a host with neither; Bazel rejects a
    # duplicated label.
    return {l: None for l in labels}.keys()

# requirement -> what it means. `doc` is what a worker must have (tools/platforms/README.md).
VM_REQUIREMENTS = {
    # QEMU, TCG (or KVM where the harness's probe finds it usable): any Linux worker whose
    # image has tools/setup's packages (qemu-system-x86), ~1 GiB RAM and one core per VM.
    "qemu": struct(
        doc = "any Linux worker with QEMU (tools/setup's packages)",
        tags = ["requires-qemu"],
        exec_properties = LINUX_EXEC_PROPERTIES,
        compatible = QEMU_COMPATIBLE,
        env = {
            "KILN_HOST_QEMU": QEMU_VERSION,
            "KILN_HOST_ACCEL": "kvm-if-probe-boots" if HAS_KVM else "tcg",
        },
        no_remote_cache = None,
    ),
    # Cloud Hypervisor needs hardware KVM (/dev/kvm on a CPU with vmx/svm) and the
    # cloud-hypervisor binary on PATH: the KVM worker pool.
    "cloud-hypervisor": struct(
        doc = "a KVM worker (pool \"%s\"): /dev/kvm with vmx/svm, cloud-hypervisor on PATH" % KVM_POOL,
        tags = ["requires-cloud-hypervisor", "requires-kvm"],
        exec_properties = KVM_EXEC_PROPERTIES,
        compatible = _dedup(CLOUD_HYPERVISOR_COMPATIBLE + KVM_COMPATIBLE),
        env = {
            "KILN_HOST_CLOUD_HYPERVISOR": CLOUD_HYPERVISOR_VERSION,
            "KILN_HOST_ACCEL": "kvm",
        },
        no_remote_cache = None,
    ),
}

def vm_test(name, requires, tags = [], size = "large", **kwargs):
    """A cc_test that boots VMs, with the execution requirement `requires` (VM_REQUIREMENTS).

    Args:
      name: the test's name.
      requires: "qemu" or "cloud-hypervisor" (a key of VM_REQUIREMENTS).
      tags: extra tags (e.g. "manual"); "vm" and the requirement's tags are added.
      size: default "large" (VMs under TCG take 5-110 s each).
      **kwargs: any other cc_test attribute (srcs, deps, args, data, shard_count, ...), except
        the ones the requirement sets (exec_properties, target_compatible_with, env).
    """
    if requires not in VM_REQUIREMENTS:
        fail("vm_test %s: requires = %r; one of %s" % (name, requires, sorted(VM_REQUIREMENTS.keys())))
    for attr in ("exec_properties", "target_compatible_with", "env"):
        if attr in kwargs:
            fail("vm_test %s: %s comes from requires = %r (tools/platforms/defs.bzl)" % (name, attr, requires))
    req = VM_REQUIREMENTS[requires]
    all_tags = ["vm"] + req.tags + [t for t in tags if t not in req.tags and t != "vm"]
    if req.no_remote_cache:
        all_tags.append("no-remote-cache")
    cc_test(
        name = name,
        size = size,
        tags = sorted(all_tags),
        exec_properties = req.exec_properties,
        target_compatible_with = select({
            "//tools/platforms:remote_exec": [],
            "//conditions:default": req.compatible,
        }),
        env = select({
            "//tools/platforms:remote_exec": {},
            "//conditions:default": req.env,
        }),
        **kwargs
    )
