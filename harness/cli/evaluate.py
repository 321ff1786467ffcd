"""``harness evaluate``: a generations file judged in sandboxes, into an output directory."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import CommandError, Interrupted, exit_if_unscored, quiet_interrupt, say
from harness.cli.options import (
    ClusterOptions,
    DatasetOptions,
    EvaluationOptions,
    check_output_directory,
    cluster_options,
    dataset_options,
    evaluation_options,
)
from harness.cli.progress import evaluation_bar
from harness.cli.report import write_report_or_warn
from harness.cli.summary import partial_warning, pass_at_k_lines
from harness.errors import SandboxNotInstalled, SandboxUnavailable
from harness.evaluation.directory import discard_journal, hold_directory, journal_path
from harness.evaluation.session import EvaluationOutcome
from harness.pipeline import evaluate, load_tasks
from harness.sandbox.choice import LoadWarning, Oversubscribed, SandboxChoice


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
@cluster_options
@click.option("--restart", is_flag=True, help="Discard OUTPUT's journal instead of resuming from it.")
@click.option("--allow-partial", is_flag=True, help="Allow selected tasks without generations and ids outside the dataset.")
def evaluate_command(
    dataset: DatasetOptions,
    generations: Path,
    output: Path,
    evaluation: EvaluationOptions,
    cluster: ClusterOptions,
    restart: bool,
    allow_partial: bool,
) -> None:
    """Evaluate TACO generations; write results.json and metrics.json (TACO formats) to OUTPUT.

    Rerunning the same command resumes from OUTPUT/journal.jsonl.
    """
    check_output_directory(output)  # before the dataset is read
    tasks = load_tasks(dataset.source, generations, dataset.split, dataset.selection, allow_partial)
    hold_output(output)
    if cluster.choice is None:  # on a cluster, each host's load is its own
        say_load_warnings(evaluation.sandbox)
    if restart:
        discard_journal(output)
    total = sum(len(t.outputs) for t in tasks)
    try:
        with quiet_interrupt(), evaluation.verdict_cache() as cache, evaluation_bar(total) as on_progress:
            outcome = evaluate(
                tasks,
                output,
                settings=evaluation.settings,
                sandbox=evaluation.sandbox,
                cache=cache,
                on_progress=on_progress,
                say=say,
                cluster=cluster.choice,
            )
    except SandboxNotInstalled:
        raise  # nothing ran: the message says it all
    except SandboxUnavailable as exc:
        raise CommandError(f"{exc} (finished samples are kept in {journal_path(output)})") from exc
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; rerun the same command to resume from {journal_path(output)}") from None
    for line in pass_at_k_lines(outcome.metrics):
        click.echo(line)
    click.echo(
        f"{total} samples, {outcome.jobs} distinct programs "
        f"({outcome.executed} run, {outcome.from_cache} cached, {outcome.from_journal} resumed) "
        f"in {outcome.seconds:.1f}s -> {output}"
    )
    warning = partial_warning(outcome.metrics)
    if warning is not None:
        say(warning)
    say_contention(outcome)
    write_report_or_warn(output)
    exit_if_unscored(outcome.infra_errors)


def hold_output(output: Path) -> None:
    """Hold OUTPUT until the command ends: a second evaluation or run into it is refused at once."""
    click.get_current_context().with_resource(hold_directory(output))


def say_load_warnings(sandbox: SandboxChoice) -> None:
    """One line per thing that will make programs wait for a CPU (their timeouts are then re-run)."""
    for warning in sandbox.load_warnings():
        say(describe_load(warning))


def describe_load(warning: LoadWarning) -> str:
    if isinstance(warning, Oversubscribed):
        return (
            f"warning: {warning.sandboxes} sandboxes x {warning.cpus_per_sandbox:g} CPU exceed the machine's "
            f"{warning.machine_cpus} CPUs: busy programs will wait for a CPU (timeouts from that are re-run, "
            f"which is slower); --workers {max(1, int(warning.machine_cpus // warning.cpus_per_sandbox))} avoids it"
        )
    return (
        f"warning: another evaluation is running on this Docker daemon ({warning.sandboxes} sandbox(es) of "
        f"{warning.evaluations} other run(s)): programs will compete for CPUs (timeouts from that are re-run, "
        "which is slower)"
    )


def say_contention(outcome: EvaluationOutcome) -> None:
    """A line when some timeouts came from waiting for a CPU (re-run; not scored when every attempt did)."""
    if outcome.contended_reruns or outcome.contended_unresolved:
        unresolved = (
            f"; {outcome.contended_unresolved} program(s) timed out that way on every attempt and are not scored "
            "(rerun the same command when the machine is less busy)"
            if outcome.contended_unresolved
            else ""
        )
        say(f"{outcome.contended_reruns} run(s) timed out waiting for a CPU and were run again{unresolved}")
