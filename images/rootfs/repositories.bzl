"""Repository rules of images/rootfs/: the Debian root filesystems (mmdebstrap, network).

rootfs_repositories() declares one repository per lock file:
    @kiln_testroot_debian   images/rootfs/testroot.lock   cgroup test root (runc, busybox-static)
    @kiln_builder_debian    images/rootfs/builder.lock    builder root (docker.io, containerd, runc, ...)
    @kiln_builder_trixie_debian  images/rootfs/builder-trixie.lock  Debian 13 builder root
                            (docker.io 26.1, containerd, runc, rootlesskit, uidmap, ...)
Each is fetched only when a target needs it (building it runs mmdebstrap, ~1 min).
"""

load("//images/rootfs:debian_rootfs.bzl", "debian_rootfs")

def rootfs_repositories():
    debian_rootfs(
        name = "kiln_testroot_debian",
        lock = "//images/rootfs:testroot.lock",
    )
    debian_rootfs(
        name = "kiln_builder_debian",
        lock = "//images/rootfs:builder.lock",
    )
    debian_rootfs(
        name = "kiln_builder_trixie_debian",
        lock = "//images/rootfs:builder-trixie.lock",
    )
