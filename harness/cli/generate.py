"""``harness generate``: samples from a model for each problem, into the official generations.json."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import CommandError, Interrupted, quiet_interrupt, say
from harness.cli.options import (
    ClusterOptions,
    DatasetOptions,
    GenerationOptions,
    check_output_file,
    cluster_options,
    dataset_options,
    generation_options,
)
from harness.cli.progress import GenerationBar
from harness.data.problems import load_problems
from harness.errors import PromptError
from harness.generation.devices import resolve_devices
from harness.generation.generate import GenerationSummary
from harness.generation.journal import discard_journal, journal_directory
from harness.generation.model_path import check_model_path
from harness.pipeline import generate


@click.command("generate")
@dataset_options
@generation_options
@cluster_options
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="generations.json to write (journal: OUTPUT.journal/)."
)
@click.option("--restart", is_flag=True, help="Discard OUTPUT's journal instead of resuming from it.")
def generate_command(
    dataset: DatasetOptions, generation: GenerationOptions, cluster: ClusterOptions, output: Path, restart: bool
) -> None:
    """Sample N programs per TACO problem with the official prompt; write the official generations.json.

    Rerunning the same command resumes from OUTPUT.journal/ (a larger --n keeps the samples there).
    With --cluster ray, one worker per GPU of the cluster generates (--gpus is not used; the model's
    path must be the same on every node), and this machine writes the journal and the file.
    """
    # The output, the model and the devices first: a typo fails before a large dataset is read.
    check_output_file(output)
    check_model_path(generation.settings.model)
    devices = generation_devices(generation) if cluster.choice is None else ()
    problems = load_problems(dataset.source, dataset.split, dataset.selection, require_tests=False)
    if restart:
        discard_journal(output)
    bar = GenerationBar()
    try:
        with quiet_interrupt():
            summary = generate(
                problems,
                generation.settings,
                output,
                engine_factory=generation.engine_factory,
                devices=devices,
                device_workers=generation.device_workers,
                progress=bar,
                say=say,
                cluster=cluster.choice,
            )
    except PromptError as exc:
        raise CommandError(f"{dataset.source}: {exc}") from exc
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; rerun the same command to resume from {journal_directory(output)}") from None
    finally:
        bar.close()
    rate = summary.new_tokens / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.tasks} tasks x {generation.settings.n} samples ({summary.resumed} resumed, {summary.generated} generated: "
        f"{summary.new_tokens} tokens, {rate:,.0f} tok/s, {summary.seconds:.1f}s) -> {output}"
    )
    if len(summary.samples_by_worker) > 1 or summary.workers_lost:
        shares = ", ".join(
            f"{worker} {count}{_worker_times(worker, summary)}" for worker, count in summary.samples_by_worker.items()
        )
        lost = f"; lost {', '.join(summary.workers_lost)} ({summary.requeued} samples re-queued)" if summary.workers_lost else ""
        click.echo(f"samples per worker: {shares}{lost}")


def _worker_times(worker: str, summary: GenerationSummary) -> str:
    """When the worker's model had loaded and when it returned its last sample, from the start."""
    ready, last = summary.ready_seconds_by_worker.get(worker), summary.last_sample_seconds_by_worker.get(worker)
    times = ([f"ready {ready:.1f}s"] if ready is not None else []) + ([f"last sample {last:.1f}s"] if last is not None else [])
    return f" ({', '.join(times)})" if times else ""


def generation_devices(generation: GenerationOptions) -> tuple[str, ...]:
    """The devices of --gpus (refused: 'all' where no CUDA device is visible), with a note when the
    CPU is asked for in a half-precision dtype."""
    devices = resolve_devices(generation.gpus)
    if "cpu" in devices and generation.settings.dtype != "float32":
        say(f"generating on the CPU in {generation.settings.dtype} (slow; --dtype float32 is usually faster there)")
    return devices
