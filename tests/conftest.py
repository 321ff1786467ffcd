"""Shared fixtures.  Sandbox tests use real containers on a real Docker daemon (`make test` starts
one); with no daemon they fail rather than skip, because they are the core of the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.sandbox.docker.backend import DockerBackend, connect
from harness.sandbox.docker.image import ensure_image
from harness.sandbox.pool import SandboxPool

SHARED_DATA = Path(os.environ.get("TACO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def private_verdict_cache(tmp_path_factory):
    """Tests never read (or fill) the user's verdict cache: a cached verdict would hide the sandbox."""
    os.environ["TACO_HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("verdict-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def docker_client():
    return connect()


@pytest.fixture(scope="session")
def sandbox_image(docker_client):
    return ensure_image(docker_client)


@pytest.fixture(scope="session")
def pool(docker_client, sandbox_image):
    with SandboxPool(DockerBackend(sandbox_image, client=docker_client, capacity=2)) as p:
        yield p


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (set TACO_SHARED_DATA)")
    return path
