"""Building the sandbox image: cached by content hash, with an offline fallback for the base image."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

import sandbox_image
from harness.errors import ImageBuildError

DEFAULT_BASE_IMAGE = "python:3.11-slim"
LOCAL_BASE_IMAGE = "taco-harness-base:bookworm"
IMAGE_REPOSITORY = "taco-harness-sandbox"


def context_dir() -> Path:
    return sandbox_image.context_dir()


def context_files() -> list[str]:
    """Every file of the build context that goes into the image, relative to it: the Dockerfile and
    the runner package it copies (``COPY taco_runner/*.py``)."""
    root = context_dir()
    return ["Dockerfile", *(path.relative_to(root).as_posix() for path in sandbox_image.runner_files())]


def image_tag(base_image: str) -> str:
    """Tag that changes exactly when the runner, the Dockerfile or the requested base changes."""
    digest = hashlib.sha256(base_image.encode())
    for name in context_files():
        digest.update(name.encode() + b"\0" + (context_dir() / name).read_bytes())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:16]}"


def _exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _usable_base(client: docker.DockerClient, base_image: str, say: Callable[[str], None]) -> str:
    if _exists(client, base_image):
        return base_image
    try:
        say(f"pulling {base_image}")
        client.images.pull(base_image)
        return base_image
    except docker.errors.DockerException as exc:
        say(f"cannot pull {base_image} ({str(exc).splitlines()[0][:120]}); building a local Debian base instead")
    if not _exists(client, LOCAL_BASE_IMAGE):
        script = context_dir() / "build-local-base.sh"
        done = subprocess.run(["bash", str(script), LOCAL_BASE_IMAGE])
        if done.returncode != 0:
            raise ImageBuildError("building the local base image failed (see the messages above)")
    return LOCAL_BASE_IMAGE


def chosen_base_image(base_image: str | None = None) -> str:
    """The base the sandbox image is built on: as given, else $TACO_HARNESS_BASE_IMAGE, else the default."""
    return base_image or os.environ.get("TACO_HARNESS_BASE_IMAGE") or DEFAULT_BASE_IMAGE


def ensure_image(client: docker.DockerClient, base_image: str | None = None, say: Callable[[str], None] = lambda m: None) -> str:
    """Return the sandbox image's tag, building it first if this content was never built."""
    base_image = chosen_base_image(base_image)
    tag = image_tag(base_image)
    if _exists(client, tag):
        return tag
    base = _usable_base(client, base_image, say)
    say(f"building {tag} on {base}")
    try:
        client.images.build(path=str(context_dir()), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True, pull=False)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", "")) for chunk in exc.build_log)
        raise ImageBuildError(f"sandbox image build failed: {exc}\n{log[-2000:]}") from exc
    return tag
