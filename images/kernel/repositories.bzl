def kernel_repositories():
    pass
