def kiln_image_repositories():
    pass
