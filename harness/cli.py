"""The ``harness`` command: a thin click layer over the library."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from .docker_backend import ContainerLimits, DockerBackend, DockerUnavailable, connect, prune
from .evaluate import EvaluationSettings, GenerationsError, evaluate, join_by_task_id, load_generations, write_outputs
from .execution import RunLimits
from .image import ImageBuildError, ensure_image
from .pool import SandboxPool
from .problems import DatasetError, load_problems


def _say(message: str) -> None:
    click.echo(f"harness: {message}", err=True)


class _Fail(click.ClickException):
    def show(self, file=None) -> None:
        click.echo(f"harness: error: {self.message}", err=True)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log sandbox events.")
def main(verbose: bool) -> None:
    """Fast, faithful, sandboxed evaluation of code LLMs on TACO."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.group()
def sandbox() -> None:
    """Manage the sandbox image and containers."""


@sandbox.command("build")
@click.option("--base-image", default=None, help="Base image (default python:3.11-slim; offline: a local Debian base).")
def sandbox_build(base_image: str | None) -> None:
    """Build the sandbox image (cached by content) and print its tag."""
    try:
        click.echo(ensure_image(connect(), base_image, say=_say))
    except (DockerUnavailable, ImageBuildError) as exc:
        raise _Fail(str(exc)) from exc


@sandbox.command("prune")
def sandbox_prune() -> None:
    """Remove sandbox containers left behind by earlier runs."""
    try:
        click.echo(f"removed {prune()} sandbox container(s)")
    except DockerUnavailable as exc:
        raise _Fail(str(exc)) from exc


@main.command("evaluate")
@click.option("--dataset", "dataset", required=True, type=click.Path(path_type=Path), help="TACO-format .jsonl or .json rows.")
@click.option("--generations", required=True, type=click.Path(path_type=Path), help="Official generations.json (or JSONL).")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Directory for results.json and metrics.json.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Sandbox containers (default: CPU count).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=4.0, show_default=True, help="Seconds per test.")
@click.option("--all-tests", is_flag=True, help="Run every test (no early exit at the first failure).")
@click.option("--no-dedup", is_flag=True, help="Execute identical programs of a task separately.")
@click.option("--allow-partial", is_flag=True, help="Allow dataset tasks without generations.")
@click.option("--memory-mb", type=click.IntRange(min=64), default=2048, show_default=True, help="Memory per container.")
def evaluate_command(dataset, generations, output, workers, timeout, all_tests, no_dedup, allow_partial, memory_mb):
    """Evaluate TACO generations; write TACO-format results.json and metrics.json to OUTPUT."""
    try:
        problems = load_problems(dataset)
        pairs = join_by_task_id(problems, load_generations(generations), allow_partial)
        client = connect()
        image = ensure_image(client, say=_say)
    except (DatasetError, GenerationsError, DockerUnavailable, ImageBuildError) as exc:
        raise _Fail(str(exc)) from exc
    settings = EvaluationSettings(RunLimits(timeout_s=timeout), early_exit=not all_tests, dedup=not no_dedup)
    backend = DockerBackend(image, client=client, limits=ContainerLimits(memory_mb=memory_mb), capacity=workers or os.cpu_count())
    total = sum(len(g.outputs) for _, g in pairs)
    from tqdm import tqdm

    with SandboxPool(backend) as pool, tqdm(total=total, unit="sample", desc="evaluate", file=sys.stderr) as bar:
        outcome = evaluate(pairs, pool, settings, on_result=lambda *_: bar.update(1))
    write_outputs(outcome, output)
    shown = {k: round(v, 4) for k, v in outcome.metrics.items() if k.startswith("pass@")}
    click.echo(f"{shown}  ({outcome.metrics['counts']['samples']} samples, {outcome.seconds:.1f}s) -> {output}")


if __name__ == "__main__":
    main()
