"""The host image (top-level Dockerfile): the harness in a container, driving sibling sandbox containers
through the mounted Docker socket, gives the verdicts of the same evaluation run on the host and leaves
no sandbox behind.  Real Docker, no mocks.

The image is built by scripts/build-host-image.sh, as a user would (offline: on the local Debian base
with the CPU torch wheel); it is tagged by a hash of its inputs, so only the first run after a change
builds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.sandbox.docker.backend import LABEL
from harness.sandbox.docker.image import DEFAULT_BASE_IMAGE, image_tag

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def host_image() -> str:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-host-image.sh")],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, f"build-host-image.sh failed:\n{done.stderr[-6000:]}"
    tag = done.stdout.strip().splitlines()[-1]
    assert tag.startswith("taco-harness:"), done.stdout
    notes = [line for line in done.stderr.splitlines() if line.startswith("build-host-image: ")]
    print(f"\nhost image {tag} ready in {time.monotonic() - started:.0f}s\n" + "\n".join(notes))
    return tag


def docker_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_commands(host_image):
    done = docker_run(host_image, "--help")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.split("Commands:", 1)[1].split()
    for command in ("generate", "evaluate", "run", "sandbox"):
        assert command in commands, done.stdout


def test_torch_and_transformers_import(host_image):
    done = docker_run(
        "--entrypoint",
        "python",
        host_image,
        "-c",
        "import torch, transformers; print(torch.__version__, transformers.__version__)",
    )
    assert done.returncode == 0, done.stderr
    print(f"in the image: torch, transformers = {done.stdout.strip()}")


def test_image_names_the_sandbox_image_as_the_host_does(host_image):
    """Same content hash inside and outside, so the sandbox image the host built is found, not rebuilt."""
    done = docker_run(
        "--entrypoint",
        "python",
        host_image,
        "-c",
        "from harness.sandbox.docker.image import DEFAULT_BASE_IMAGE, image_tag; print(image_tag(DEFAULT_BASE_IMAGE))",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == image_tag(DEFAULT_BASE_IMAGE)


def _labelled(docker_client, image: str) -> list:
    return [
        c
        for c in docker_client.containers.list(all=True, filters={"label": LABEL})
        if c.attrs.get("Config", {}).get("Image") == image
    ]


def test_evaluate_in_the_container_equals_the_host(host_image, docker_client, sandbox_image, tmp_path):
    # The sandboxes of these two runs are told apart from other harness processes on this daemon by
    # their image name: a private tag of the host's sandbox image, under a base name of its own
    # (TACO_HARNESS_BASE_IMAGE enters the tag).  Both runs find that tag; neither builds anything.
    private_base = f"taco-harness-host-image-test-{uuid.uuid4().hex[:8]}"
    private_tag = image_tag(private_base)
    docker_client.images.get(sandbox_image).tag(*private_tag.rsplit(":", 1))
    try:
        dirs = {}
        for name in ("host", "container"):
            dirs[name] = tmp_path / name
            dirs[name].mkdir()
            for sample in ("problems.jsonl", "generations.json"):
                shutil.copy(REPO / "samples" / sample, dirs[name] / sample)

        harness = Path(sys.executable).parent / "harness"
        host = subprocess.run(
            [
                str(harness),
                "evaluate",
                "--dataset",
                "problems.jsonl",
                "--generations",
                "generations.json",
                "--output",
                "out",
                "--no-cache",
            ],
            cwd=dirs["host"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TACO_HARNESS_BASE_IMAGE": private_base},
        )
        assert host.returncode == 0, host.stderr[-3000:]

        since = int(time.time()) - 1
        inside = docker_run(
            "-v",
            f"{SOCKET}:{SOCKET}",
            "-v",
            f"{dirs['container']}:/work",
            "-e",
            f"TACO_HARNESS_BASE_IMAGE={private_base}",
            host_image,
            "evaluate",
            "--dataset",
            "/work/problems.jsonl",
            "--generations",
            "/work/generations.json",
            "--output",
            "/work/out",
            "--no-cache",
        )
        until = int(time.time()) + 1
        assert inside.returncode == 0, inside.stderr[-3000:]

        for name in ("results.json", "metrics.json"):
            in_container = json.loads((dirs["container"] / "out" / name).read_text())
            on_host = json.loads((dirs["host"] / "out" / name).read_text())
            # Provenance says where each ran (paths, date, the host's Python, a git checkout or not);
            # what was evaluated, and in which sandbox, must be the same.
            inside_from, host_from = in_container.pop("provenance", None), on_host.pop("provenance", None)
            assert in_container == on_host, name
            if name == "metrics.json":
                assert inside_from["dataset"]["digest"] == host_from["dataset"]["digest"]
                assert inside_from["generations"]["digest"] == host_from["generations"]["digest"]
                assert inside_from["sandbox"]["image"] == host_from["sandbox"]["image"]
                assert inside_from["python"]["sandbox"] == host_from["python"]["sandbox"]
        assert json.loads((dirs["host"] / "out" / "metrics.json").read_text())["counts"]["samples"] == 24

        # The container did start sandboxes (siblings on this daemon), and none is left.
        events = docker_client.events(
            since=since, until=until, decode=True, filters={"type": "container", "event": "create", "label": LABEL}
        )
        started = [e for e in events if e.get("from") == private_tag]
        assert started, "the harness in the container started no sandbox container"
        deadline = time.monotonic() + 15
        while _labelled(docker_client, private_tag) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _labelled(docker_client, private_tag) == []
    finally:
        for container in _labelled(docker_client, private_tag):
            container.remove(force=True)
        docker_client.images.remove(private_tag)
