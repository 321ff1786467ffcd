"""``harness generate``: samples from a model for each problem, into the official generations.json."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import CommandError, say
from harness.cli.options import DatasetOptions, GenerationOptions, dataset_options, generation_options
from harness.cli.progress import GenerationBar
from harness.data.problems import load_problems
from harness.errors import PromptError
from harness.generation.devices import resolve_devices
from harness.generation.model_path import check_model_path
from harness.pipeline import generate


@click.command("generate")
@dataset_options
@generation_options
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="generations.json to write (journal: OUTPUT.journal/)."
)
def generate_command(dataset: DatasetOptions, generation: GenerationOptions, output: Path) -> None:
    """Sample N programs per TACO problem with the official prompt; write the official generations.json."""
    # The model and the devices first: a typo fails before a large dataset is read.
    check_model_path(generation.settings.model)
    devices = resolve_devices(generation.gpus)
    problems = load_problems(dataset.source, dataset.split, dataset.selection, require_tests=False)
    bar = GenerationBar()
    try:
        summary = generate(
            problems,
            generation.settings,
            output,
            engine_factory=generation.engine_factory,
            devices=devices,
            progress=bar,
            say=say,
        )
    except PromptError as exc:
        raise CommandError(f"{dataset.source}: {exc}") from exc
    finally:
        bar.close()
    rate = summary.new_tokens / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.tasks} tasks x {generation.settings.n} samples ({summary.resumed} resumed, {summary.generated} generated: "
        f"{summary.new_tokens} tokens, {rate:,.0f} tok/s, {summary.seconds:.1f}s) -> {output}"
    )
