"""``harness run`` without the CLI: generation and evaluation overlapped.

The generator journals each sample as it finishes and hands it to an ``EvaluationSession`` at the
same moment, so sandboxes test the first samples while the GPU still produces the last ones; the
run ends when the last sample's verdicts arrive.  Both stages keep their own journal in the output
directory (``generations.json.journal/`` and ``journal.jsonl``), so rerunning the same command
resumes both: journaled samples are not generated again, journaled verdicts are not run again.

Files written to the output directory: ``generations.json`` (official layout), ``results.json`` and
``metrics.json`` (official layouts, plus tables), ``run_stats.json`` (per-stage figures).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from harness.data.problems import Problem
from harness.data.prompts import build_prompt
from harness.evaluation.cache import VerdictCache
from harness.evaluation.session import (
    EvaluationOutcome,
    EvaluationSession,
    EvaluationSettings,
    write_outputs,
)
from harness.evaluation.session import Progress as EvaluationProgress
from harness.evaluation.verdict_journal import VerdictJournal
from harness.generation.factory import EngineFactory
from harness.generation.generate import GenerationSummary, generate
from harness.generation.generate import Progress as GenerationProgress
from harness.generation.journal import JournalEntry
from harness.generation.plan import GenerationSettings
from harness.reporting.monitor import RunMonitor, write_run_stats
from harness.sandbox.pool import SandboxPool

GENERATIONS_FILE = "generations.json"
EVALUATION_JOURNAL = "journal.jsonl"


@dataclass(frozen=True)
class RunOutcome:
    generation: GenerationSummary
    evaluation: EvaluationOutcome
    stats: dict


def run_pipeline(
    problems: Sequence[Problem],
    generation_settings: GenerationSettings,
    evaluation_settings: EvaluationSettings,
    output: Path,
    engine_factory: EngineFactory,
    open_pool: Callable[[], AbstractContextManager[SandboxPool]],
    devices: Sequence[str] = ("cpu",),
    cache: VerdictCache | None = None,
    generation_progress: GenerationProgress | None = None,
    on_evaluation_progress: Callable[[EvaluationProgress], None] = lambda progress: None,
    say: Callable[[str], None] = lambda message: None,
) -> RunOutcome:
    """Generate ``generation_settings.n`` samples per problem and evaluate each as it is produced."""
    missing_tests = [p.task_id for p in problems if p.tests is None]
    if missing_tests:
        raise ValueError(f"tasks without tests cannot be evaluated: {missing_tests[:10]}")
    output.mkdir(parents=True, exist_ok=True)
    by_id = {p.task_id: p for p in problems}
    prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    monitor = RunMonitor()
    with VerdictJournal(output / EVALUATION_JOURNAL) as journal, EvaluationSession(
        evaluation_settings, open_pool, journal, cache, _counting(on_evaluation_progress, monitor)
    ) as session:

        def evaluate_sample(entry: JournalEntry) -> None:
            monitor.sample_generated()
            session.add_sample(by_id[entry.task_id], entry.index, entry.output)

        # Before the model loads: a sandbox problem fails the run at once, and the sandboxes are up
        # by the time the first sample is.
        session.open_pool()
        with monitor.running(session):
            monitor.generation_started()
            summary = generate(
                prompts, generation_settings, output / GENERATIONS_FILE, engine_factory, devices,
                generation_progress, say, on_sample=evaluate_sample,
            )
            monitor.generation_finished()
            # The samples still in the sandboxes are the run's tail beyond generation.
            outcome = session.finish(list(problems))
            monitor.evaluation_finished()
    write_outputs(outcome, output)
    stats = monitor.stats(generation=summary, evaluation=outcome, devices=devices)
    write_run_stats(output, stats)
    return RunOutcome(summary, outcome, stats)


def _counting(on_progress: Callable[[EvaluationProgress], None], monitor: RunMonitor) -> Callable[[EvaluationProgress], None]:
    def forward(progress: EvaluationProgress) -> None:
        monitor.samples_evaluated(progress.samples)
        on_progress(progress)

    return forward
