"""``harness run``: generate and evaluate overlapped, from a dataset and a model to metrics."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import CommandError, exit_if_unscored, say
from harness.cli.options import (
    DatasetOptions,
    EvaluationOptions,
    GenerationOptions,
    check_output_directory,
    dataset_options,
    evaluation_options,
    generation_options,
)
from harness.cli.progress import GenerationBar, evaluation_bar
from harness.cli.report import write_report_or_warn
from harness.data.problems import load_problems
from harness.errors import GenerationError, ModelError, PromptError, SandboxNotInstalled, SandboxUnavailable
from harness.generation.devices import resolve_devices
from harness.generation.model_path import check_model_path
from harness.pipeline import discard_journals, run


@click.command("run")
@dataset_options
@generation_options
@evaluation_options
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
    dataset: DatasetOptions, generation: GenerationOptions, evaluation: EvaluationOptions, output: Path, restart: bool
) -> None:
    """Generate N programs per problem and evaluate each one as soon as it is generated.

    Writes the official generations.json, results.json and metrics.json to OUTPUT, with
    run_stats.json (per-stage figures) and report.md/report.html.  Rerunning the same command
    resumes both stages from their journals.
    """
    check_output_directory(output)
    check_model_path(generation.settings.model)
    devices = resolve_devices(generation.gpus)
    problems = load_problems(dataset.source, dataset.split, dataset.selection)
    if restart:
        discard_journals(output)
    generation_bar = GenerationBar(position=0)
    try:
        with (
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
                    cache=cache,
                    generation_progress=generation_bar,
                    on_evaluation_progress=on_progress,
                    say=say,
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
        raise CommandError(f"interrupted; rerun the same command to resume from the journals in {output}") from None
    generated, evaluated, stats = outcome.generation, outcome.evaluation, outcome.stats
    shown = {k: round(v, 4) for k, v in evaluated.metrics.items() if k.startswith("pass@")}
    tail = stats["evaluation"]["tail_after_generation_seconds"]
    click.echo(
        f"{shown}  {generated.tasks} tasks x {generation.settings.n} samples: generated {generated.generated} "
        f"({stats['generation']['tokens_per_s']:,.0f} tok/s), evaluated {evaluated.executed} distinct programs "
        f"({evaluated.from_cache} cached, {evaluated.from_journal} resumed); wall {stats['wall_seconds']:.1f}s, "
        f"generation {stats['generation']['seconds']:.1f}s, evaluation tail {tail:.1f}s -> {output}"
    )
    write_report_or_warn(output)
    exit_if_unscored(evaluated.infra_errors)
