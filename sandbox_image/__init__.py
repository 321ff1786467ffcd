"""The sandbox image's build context, shipped inside the harness package: the ``Dockerfile``, the
offline base-image script ``build-local-base.sh``, and the runner package ``taco_runner`` that runs
in every sandbox (Docker's and the namespace backend's alike).

On the host only ``taco_runner.protocol`` and ``taco_runner.valuecodec`` are imported.
"""

from __future__ import annotations

from pathlib import Path


def context_dir() -> Path:
    """This directory: the sandbox image's build context."""
    return Path(__file__).resolve().parent


def runner_package_dir() -> Path:
    return context_dir() / "taco_runner"


def runner_files() -> list[Path]:
    """The runner package's files, sorted: exactly what the Dockerfile copies into the image
    (``taco_runner/*.py``) and what verdicts from a sandbox depend on besides its environment."""
    return sorted(runner_package_dir().glob("*.py"))
