"""The sandbox image's build context (Dockerfile, runner, value codec), shipped inside the package.

Only ``valuecodec`` is imported on the host; ``runner`` runs inside the container.
"""
