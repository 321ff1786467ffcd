"""``harness train-demo-model``: a tiny model that really writes the dataset's programs, trained on the
CPU (or taken from the cache of trained models), written to a directory that ``--model`` loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from harness.cli.console import CommandError, say
from harness.cli.options import DatasetOptions, check_output_directory, dataset_options
from harness.data.problems import load_problems
from harness.evaluation.cache import default_cache_dir
from harness.training.corpus import training_examples
from harness.training.recipe import DEMO_RECIPE
from harness.training.train import MANIFEST, cached_model

MODEL_CACHE = "models"  # under the cache directory ($TACO_HARNESS_CACHE_DIR, else ~/.cache/taco-harness)


@click.command("train-demo-model")
@dataset_options
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Model directory to write (for --model).")
def train_command(dataset: DatasetOptions, output: Path) -> None:
    """Train the demo recipe's tiny Llama-style model on the problems' official prompts and reference
    solutions (such as samples/problems.jsonl) and write it to OUTPUT.

    The trained model is cached by a hash of the recipe and the training data, so the same command
    again only copies it.
    """
    check_output_directory(output)
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise CommandError(f"--output: {output} is not empty and holds no trained model; choose another directory")
    problems = load_problems(dataset.source, dataset.split, dataset.selection, require_tests=False)
    examples = training_examples(problems)
    trained = cached_model(examples, DEMO_RECIPE, default_cache_dir() / MODEL_CACHE, say=say)
    if output.resolve() != trained.directory.resolve():
        shutil.copytree(trained.directory, output, dirs_exist_ok=True)
    where = "from the cache" if trained.from_cache else f"trained in {trained.seconds:.0f}s"
    click.echo(f"{len(examples)} examples, {trained.steps} steps, final loss {trained.final_loss:.4f} ({where}) -> {output}")
