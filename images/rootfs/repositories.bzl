def rootfs_repositories():
    pass
