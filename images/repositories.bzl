"""Repository rules of images/: the only place kiln touches the network (apt, Debian's archive).

kernel_repositories(): the pinned Debian kernel package (images/kernel/).
rootfs_repositories(): Debian root filesystems made with mmdebstrap (images/rootfs/).
"""

load("//images/kernel:repositories.bzl", "kernel_repositories")
load("//images/rootfs:repositories.bzl", "rootfs_repositories")

def kiln_image_repositories():
    kernel_repositories()
    rootfs_repositories()
