"""``harness sandbox build`` and ``harness sandbox prune``: the Docker sandbox image and containers."""

from __future__ import annotations

import click

from harness.cli.console import say

# The Docker SDK is imported only by these commands: `harness generate`, and `harness run --sandbox
# namespace`, run on GPU machines without it.


@click.group("sandbox")
def sandbox_group() -> None:
    """Manage the sandbox image and containers."""


@sandbox_group.command("build")
@click.option("--base-image", default=None, help="Base image (default python:3.11-slim; offline: a local Debian base).")
def build_command(base_image: str | None) -> None:
    """Build the sandbox image (cached by content) and print its tag."""
    from harness.sandbox.docker.backend import connect
    from harness.sandbox.docker.image import ensure_image

    click.echo(ensure_image(connect(), base_image, say=say))


@sandbox_group.command("prune")
def prune_command() -> None:
    """Remove sandbox containers left behind by earlier runs."""
    from harness.sandbox.docker.backend import prune

    click.echo(f"removed {prune()} sandbox container(s)")
