"""``harness run``: generate and evaluate overlapped, from a dataset and a model to metrics."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import CommandError, Interrupted, exit_if_unscored, quiet_interrupt, say
from harness.cli.evaluate import hold_output, say_contention, say_load_warnings
from harness.cli.generate import generation_devices
from harness.cli.options import (
    ClusterOptions,
    DatasetOptions,
    EvaluationOptions,
    GenerationOptions,
    check_output_directory,
    cluster_options,
    dataset_options,
    evaluation_options,
    generation_options,
)
from harness.cli.progress import GenerationBar, evaluation_bar
from harness.cli.report import write_report_or_warn
from harness.cli.summary import pass_at_k_lines
from harness.errors import GenerationError, ModelError, PromptError, SandboxNotInstalled, SandboxUnavailable
from harness.generation.model_path import check_model_path
from harness.pipeline import discard_journals, load_dataset, run


@click.command("run")
@dataset_options
@generation_options
@evaluation_options
@cluster_options
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for generations.json, results.json, metrics.json, run_stats.json, the report and both journals.",
)
@click.option(
    "--restart", is_flag=True, help="Discard OUTPUT's journals (generation and evaluation) instead of resuming from them."
)
def run_command(
    dataset: DatasetOptions,
    generation: GenerationOptions,
    evaluation: EvaluationOptions,
    cluster: ClusterOptions,
    output: Path,
    restart: bool,
) -> None:
    """Generate N programs per problem and evaluate each one as soon as it is generated.

    Writes the official generations.json, results.json and metrics.json to OUTPUT, with
    run_stats.json (per-stage figures) and report.md/report.html.  Rerunning the same command
    resumes both stages from their journals.
    """
    check_output_directory(output)
    check_model_path(generation.settings.model)
    devices = generation_devices(generation) if cluster.choice is None else ()  # a cluster: one worker per GPU there
    problems = load_dataset(dataset.source, dataset.split, dataset.selection)
    hold_output(output)
    if cluster.choice is None:  # on a cluster, each host's load is its own
        say_load_warnings(evaluation.sandbox)
    if restart:
        discard_journals(output)
    generation_bar = GenerationBar(position=0)
    try:
        with (
            quiet_interrupt(),
            evaluation.verdict_cache() as cache,
            evaluation_bar(len(problems) * generation.settings.n, position=1) as on_progress,
        ):
            try:
                outcome = run(
                    problems,
                    generation.settings,
                    output,
                    evaluation_settings=evaluation.settings,
                    sandbox=evaluation.sandbox,
                    engine_factory=generation.engine_factory,
                    devices=devices,
                    device_workers=generation.device_workers,
                    cache=cache,
                    generation_progress=generation_bar,
                    on_evaluation_progress=on_progress,
                    say=say,
                    cluster=cluster.choice,
                )
            finally:
                generation_bar.close()
    except SandboxNotInstalled:
        raise  # nothing ran: the message says it all
    except (GenerationError, ModelError, SandboxUnavailable) as exc:
        raise CommandError(f"{exc} (finished samples and verdicts are kept in {output}; rerun to resume)") from exc
    except PromptError as exc:
        raise CommandError(f"{dataset.source}: {exc}") from exc
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; rerun the same command to resume from the journals in {output}") from None
    generated, evaluated, stats = outcome.generation, outcome.evaluation, outcome.stats
    tail = stats["evaluation"]["tail_after_generation_seconds"]
    for line in pass_at_k_lines(evaluated.metrics):
        click.echo(line)
    click.echo(
        f"generated {generated.generated} of {generated.samples} samples ({generated.resumed} resumed), "
        f"{stats['generation']['tokens_per_s']:,.0f} tok/s, in {stats['generation']['seconds']:.1f}s"
    )
    click.echo(
        f"{generated.samples} samples, {evaluated.jobs} distinct programs ({evaluated.executed} run, "
        f"{evaluated.from_cache} cached, {evaluated.from_journal} resumed) in {stats['wall_seconds']:.1f}s "
        f"(evaluation tail {tail:.1f}s) -> {output}"
    )
    say_contention(evaluated)
    write_report_or_warn(output)
    exit_if_unscored(evaluated.infra_errors)
