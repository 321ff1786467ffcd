"""``harness evaluate``: a generations file judged in sandboxes, into an output directory."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import CommandError, exit_if_unscored, say
from harness.cli.options import DatasetOptions, EvaluationOptions, check_output_directory, dataset_options, evaluation_options
from harness.cli.progress import evaluation_bar
from harness.cli.report import write_report_or_warn
from harness.errors import SandboxNotInstalled, SandboxUnavailable
from harness.evaluation.directory import discard_journal, journal_path
from harness.pipeline import evaluate, load_tasks


@click.command("evaluate")
@dataset_options
@click.option(
    "--generations",
    required=True,
    type=click.Path(path_type=Path),
    help="Official generations.json, or JSONL of the same objects.",
)
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="Directory for results.json, metrics.json and the journal."
)
@evaluation_options
@click.option("--restart", is_flag=True, help="Discard OUTPUT's journal instead of resuming from it.")
@click.option("--allow-partial", is_flag=True, help="Allow selected tasks without generations and ids outside the dataset.")
def evaluate_command(
    dataset: DatasetOptions, generations: Path, output: Path, evaluation: EvaluationOptions, restart: bool, allow_partial: bool
) -> None:
    """Evaluate TACO generations; write results.json and metrics.json (TACO formats) to OUTPUT.

    Rerunning the same command resumes from OUTPUT/journal.jsonl.
    """
    tasks = load_tasks(dataset.source, generations, dataset.split, dataset.selection, allow_partial)
    check_output_directory(output)
    if restart:
        discard_journal(output)
    total = sum(len(t.outputs) for t in tasks)
    try:
        with evaluation.verdict_cache() as cache, evaluation_bar(total) as on_progress:
            outcome = evaluate(
                tasks,
                output,
                settings=evaluation.settings,
                sandbox=evaluation.sandbox,
                cache=cache,
                on_progress=on_progress,
                say=say,
            )
    except SandboxNotInstalled:
        raise  # nothing ran: the message says it all
    except SandboxUnavailable as exc:
        raise CommandError(f"{exc} (finished samples are kept in {journal_path(output)})") from exc
    except KeyboardInterrupt:
        raise CommandError(f"interrupted; rerun the same command to resume from {journal_path(output)}") from None
    shown = {k: round(v, 4) for k, v in outcome.metrics.items() if k.startswith("pass@")}
    click.echo(
        f"{shown}  {total} samples, {outcome.jobs} distinct programs "
        f"({outcome.executed} run, {outcome.from_cache} cached, {outcome.from_journal} resumed) "
        f"in {outcome.seconds:.1f}s -> {output}"
    )
    write_report_or_warn(output)
    exit_if_unscored(outcome.infra_errors)
