"""The harness's flows as library calls, each writing the output directory its command writes.

* ``evaluate``: samples (``load_tasks`` reads a generations file for them) judged in sandboxes of a
  chosen kind; with an output directory it resumes from its journal and writes ``results.json``,
  ``metrics.json`` and ``run_stats.json`` there, as ``harness evaluate`` does.
* ``generate``: ``n`` samples per problem with the official prompt, written as the official
  ``generations.json`` (journal beside it), as ``harness generate`` does.
* ``run`` (``run_pipeline`` underneath): both overlapped, as ``harness run`` does.  The generator
  journals each sample as it finishes and hands it to an ``EvaluationSession`` at the same moment,
  so sandboxes test the first samples while the GPU still produces the last ones; the run ends when
  the last sample's verdicts arrive.  Both stages keep their own journal in the output directory
  (``generations.json.journal/`` and ``journal.jsonl``), so rerunning the same call resumes both:
  journaled samples are not generated again, journaled verdicts are not run again.

Each flow composes the stages below it and adds no logic of its own beyond that composition; the
command line (``harness.cli``) adds progress bars, messages and the report.  What only a flow knows
(both stages' settings, the dataset and generations file the tasks came from, which selected tasks a
partial run left out) it adds to ``metrics.json`` as ``provenance`` and ``coverage``, and to
``run_stats.json`` as ``provenance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from harness.cluster.choice import ClusterChoice
from harness.cluster.generation import RayGenerationWorkers
from harness.data.generations import JoinGaps, TaskSamples, join_by_task_id, join_gaps, load_generations
from harness.data.problems import Problem, Selection, load_selection
from harness.data.prompts import build_prompt
from harness.errors import SandboxNotInstalled
from harness.evaluation import session
from harness.evaluation.cache import VerdictCache
from harness.evaluation.directory import discard_journal, hold_directory, journal_path
from harness.evaluation.outputs import write_outputs
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.service import ExecutionService
from harness.evaluation.session import EvaluationOutcome, EvaluationSession
from harness.evaluation.session import Progress as EvaluationProgress
from harness.evaluation.verdict_journal import VerdictJournal
from harness.generation import generate as generation
from harness.generation.devices import resolve_devices
from harness.generation.factory import EngineFactory, ModelEngineFactory
from harness.generation.generate import GenerationSummary
from harness.generation.generate import Progress as GenerationProgress
from harness.generation.journal import JournalEntry
from harness.generation.journal import discard_journal as discard_generation_journal
from harness.generation.model_path import check_model_path
from harness.generation.plan import GenerationSettings
from harness.generation.workers import DeviceWorkers, WorkerPool
from harness.reporting.monitor import RunMonitor, evaluation_run_stats, write_run_stats
from harness.reporting.provenance import (
    DatasetRecord,
    GenerationRecord,
    GenerationsFile,
    Provenance,
    build_provenance,
    describe_dataset,
    describe_generations,
    generation_beside,
    generation_of_run,
)
from harness.sandbox.choice import SandboxChoice

GENERATIONS_FILE = "generations.json"

# Argument defaults (frozen dataclasses, so one instance serves every call).
_NO_FILTER = Selection()
_DEFAULT_EVALUATION = EvaluationSettings()
_DOCKER_SANDBOXES = SandboxChoice()


def _ignore(_: object) -> None:
    """The default for callbacks nobody asked for (progress, notes)."""


@dataclass(frozen=True)
class RunOutcome:
    generation: GenerationSummary
    evaluation: EvaluationOutcome
    stats: dict


# -- where problems and samples came from ---------------------------------------------------------
@dataclass(frozen=True)
class TaskSource:
    """Where ``load_tasks`` found its tasks, and what the join by task_id left out."""

    dataset: DatasetRecord
    generations: GenerationsFile
    generation: GenerationRecord | None  # how the file was generated, when that was recorded beside it
    selected: int  # problems the dataset and its filters selected
    gaps: JoinGaps


class LoadedTasks(list[TaskSamples]):
    """The tasks of ``load_tasks``: a list, that also says where they came from (``source``), so that
    ``evaluate`` records it in metrics.json."""

    def __init__(self, tasks: Sequence[TaskSamples], source: TaskSource):
        super().__init__(tasks)
        self.source = source


class LoadedProblems(list[Problem]):
    """The problems of ``load_dataset``: a list, that also says where they came from (``dataset``),
    so that ``run`` records it in metrics.json."""

    def __init__(self, problems: Sequence[Problem], dataset: DatasetRecord):
        super().__init__(problems)
        self.dataset = dataset


def load_dataset(
    dataset: str | Path, split: str = "test", selection: Selection = _NO_FILTER, require_tests: bool = True
) -> LoadedProblems:
    """``harness.load_problems``, with a record of the dataset (source, digest, filters)."""
    problems, every_task_id = load_selection(dataset, split, selection, require_tests)
    return LoadedProblems(problems, describe_dataset(dataset, split, selection, problems, len(every_task_id)))


# -- evaluate -------------------------------------------------------------------------------------
def load_tasks(
    dataset: str | Path,
    generations: str | Path,
    split: str = "test",
    selection: Selection = _NO_FILTER,
    allow_partial: bool = False,
) -> LoadedTasks:
    """The selected problems of *dataset*, each with its samples from the *generations* file (the
    official ``generations.json`` or JSONL of the same objects), joined by task_id; with where they
    came from and what the join left out (``LoadedTasks.source``)."""
    problems, every_task_id = load_selection(dataset, split, selection)
    path = Path(generations)
    read = load_generations(path)
    tasks = join_by_task_id(problems, read, allow_partial, every_task_id)
    file = describe_generations(path, [len(g.outputs) for g in read])
    source = TaskSource(
        dataset=describe_dataset(dataset, split, selection, problems, len(every_task_id)),
        generations=file,
        generation=generation_beside(file),
        selected=len(problems),
        gaps=join_gaps(problems, read, every_task_id),
    )
    return LoadedTasks(tasks, source)


def evaluate(
    tasks: Sequence[TaskSamples],
    output: Path | None = None,
    *,
    settings: EvaluationSettings = _DEFAULT_EVALUATION,
    sandbox: SandboxChoice = _DOCKER_SANDBOXES,
    cache: VerdictCache | None = None,
    on_progress: Callable[[EvaluationProgress], None] = _ignore,
    say: Callable[[str], None] = _ignore,
    source: TaskSource | None = None,
    cluster: ClusterChoice | None = None,
) -> EvaluationOutcome:
    """Judge every sample of *tasks* in sandboxes of the *sandbox* kind (``settings.sandbox_id`` is
    set from it).  The sandboxes start only if some sample is not answered by the journal or *cache*.

    With *output*, the evaluation resumes from ``output/journal.jsonl`` and writes ``results.json``,
    ``metrics.json`` and ``run_stats.json`` there; without, nothing is written.  The metrics carry the
    ``provenance`` and ``coverage`` of the tasks' *source* (by default that of ``load_tasks``' tasks).
    With *cluster*, the sandboxes run on the cluster's sandbox hosts (the same verdicts, journal and
    outputs; each verdict records its host).
    """
    settings = _with_sandbox(settings, sandbox)
    if source is None and isinstance(tasks, LoadedTasks):
        source = tasks.source
    journal: AbstractContextManager[VerdictJournal | None] = (
        VerdictJournal(journal_path(output)) if output is not None else nullcontext()
    )
    held = hold_directory(output) if output is not None else nullcontext()  # one evaluation per directory
    with held:  # held until the outputs are written: a second run must not interleave with them
        with journal as verdicts:
            outcome = session.evaluate(list(tasks), _opener(sandbox, cluster, say), settings, verdicts, cache, on_progress)
        provenance = build_provenance(
            "evaluate",
            settings,
            generation=source.generation if source is not None else None,
            dataset=source.dataset if source is not None else None,
            generations=source.generations if source is not None else None,
        )
        selected = source.selected if source is not None else len(tasks)
        outcome = _with_records(outcome, provenance, coverage(selected, len(tasks), source.gaps if source is not None else None))
        if output is not None:
            write_outputs(outcome, output, [task.problem for task in tasks])
            write_run_stats(output, evaluation_run_stats(outcome, provenance))
    return outcome


# -- generate -------------------------------------------------------------------------------------
def generate(
    problems: Sequence[Problem],
    settings: GenerationSettings,
    output: Path,
    *,
    engine_factory: EngineFactory | None = None,
    devices: str | Sequence[str] = "all",
    progress: GenerationProgress | None = None,
    say: Callable[[str], None] = _ignore,
    cluster: ClusterChoice | None = None,
    device_workers: DeviceWorkers = DeviceWorkers.THREADS,
) -> GenerationSummary:
    """Sample ``settings.n`` programs per problem with TACO's prompt and write the official
    ``generations.json`` at *output*; ``output.journal/`` beside it makes a rerun resume.

    *devices* is a ``--gpus`` spec (``"all"``, ``"cpu"``, ``"2"``, ``"0,2"``) or device names: one
    worker each (a thread or a process, as *device_workers* says).  With *cluster*, the workers are
    instead one per GPU of that Ray cluster (*devices* is not used; the model's path must be the same
    on every node).  Without
    *engine_factory*, ``settings.model`` is loaded (``engine="auto"``).
    """
    factory = engine_factory if engine_factory is not None else _model_engine(settings)
    chosen_devices = resolve_devices(devices) if cluster is None else ()
    prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    output.parent.mkdir(parents=True, exist_ok=True)
    return generation.generate(
        prompts,
        settings,
        output,
        factory,
        chosen_devices,
        progress,
        say,
        workers=_generation_workers(cluster),
        device_workers=device_workers,
    )


# -- run ------------------------------------------------------------------------------------------
def run(
    problems: Sequence[Problem],
    generation_settings: GenerationSettings,
    output: Path,
    *,
    evaluation_settings: EvaluationSettings = _DEFAULT_EVALUATION,
    sandbox: SandboxChoice = _DOCKER_SANDBOXES,
    engine_factory: EngineFactory | None = None,
    devices: str | Sequence[str] = "all",
    cache: VerdictCache | None = None,
    generation_progress: GenerationProgress | None = None,
    on_evaluation_progress: Callable[[EvaluationProgress], None] = _ignore,
    say: Callable[[str], None] = _ignore,
    cluster: ClusterChoice | None = None,
    device_workers: DeviceWorkers = DeviceWorkers.THREADS,
) -> RunOutcome:
    """``generate`` and ``evaluate`` overlapped: each sample is judged as soon as it is generated.
    Writes every file of both into the *output* directory, with ``run_stats.json`` for the run;
    rerunning resumes both stages.  The arguments are those of ``generate`` and ``evaluate``;
    problems from ``load_dataset`` have their dataset recorded in the provenance."""
    evaluation_settings = _with_sandbox(evaluation_settings, sandbox)
    factory = engine_factory if engine_factory is not None else _model_engine(generation_settings)
    return run_pipeline(
        problems,
        generation_settings,
        evaluation_settings,
        output,
        factory,
        _opener(sandbox, cluster, say),
        resolve_devices(devices) if cluster is None else (),
        cache,
        generation_progress,
        on_evaluation_progress,
        say,
        dataset=problems.dataset if isinstance(problems, LoadedProblems) else None,
        generation_workers=_generation_workers(cluster),
        device_workers=device_workers,
    )


def discard_journals(output: Path) -> None:
    """Start a run's *output* directory over: both stages forget what earlier runs finished."""
    discard_generation_journal(output / GENERATIONS_FILE)  # as `harness generate --restart` does
    discard_journal(output)


def run_pipeline(
    problems: Sequence[Problem],
    generation_settings: GenerationSettings,
    evaluation_settings: EvaluationSettings,
    output: Path,
    engine_factory: EngineFactory,
    open_pool: Callable[[], AbstractContextManager[ExecutionService]],
    devices: Sequence[str] = ("cpu",),
    cache: VerdictCache | None = None,
    generation_progress: GenerationProgress | None = None,
    on_evaluation_progress: Callable[[EvaluationProgress], None] = _ignore,
    say: Callable[[str], None] = _ignore,
    *,
    dataset: DatasetRecord | None = None,
    generation_workers: WorkerPool | None = None,
    device_workers: DeviceWorkers = DeviceWorkers.THREADS,
) -> RunOutcome:
    """Generate ``generation_settings.n`` samples per problem and evaluate each as it is produced
    (``evaluation_settings`` as they are: ``run`` fills in the sandbox's identity).  *dataset* says
    where the problems came from, for the provenance.  The generation workers run on *devices* of
    this machine (a thread or a process each, as *device_workers* says), unless *generation_workers*
    says where they run (a cluster's GPUs)."""
    missing_tests = [p.task_id for p in problems if p.tests is None]
    if missing_tests:
        raise ValueError(f"tasks without tests cannot be evaluated: {missing_tests[:10]}")
    output.mkdir(parents=True, exist_ok=True)
    by_id = {p.task_id: p for p in problems}
    prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    monitor = RunMonitor()
    with (
        hold_directory(output),  # one run per directory
        VerdictJournal(journal_path(output)) as journal,
        EvaluationSession(
            evaluation_settings, open_pool, journal, cache, _counting(on_evaluation_progress, monitor)
        ) as evaluation,
    ):

        def evaluate_sample(entry: JournalEntry) -> None:
            monitor.sample_generated()
            evaluation.add_sample(by_id[entry.task_id], entry.index, entry.output)

        # Before the model loads: a sandbox problem fails the run at once, and the sandboxes are up
        # by the time the first sample is.
        evaluation.open_pool()
        with monitor.running(evaluation):
            monitor.generation_started()
            summary = generation.generate(
                prompts,
                generation_settings,
                output / GENERATIONS_FILE,
                engine_factory,
                devices,
                generation_progress,
                say,
                on_sample=evaluate_sample,
                workers=generation_workers,
                device_workers=device_workers,
            )
            monitor.generation_finished()
            # The samples still in the sandboxes are the run's tail beyond generation.
            outcome = evaluation.finish(list(problems))
            monitor.evaluation_finished()
    written = output / GENERATIONS_FILE
    provenance = build_provenance(
        "run",
        evaluation_settings,
        generation=generation_of_run(generation_settings),
        dataset=dataset,
        generations=describe_generations(written, [generation_settings.n] * summary.tasks),
    )
    outcome = _with_records(outcome, provenance, coverage(len(problems), len(outcome.results), None))
    write_outputs(outcome, output, problems)
    workers = devices if generation_workers is None else list(summary.samples_by_worker)  # a cluster's: by name
    stats = monitor.stats(generation=summary, evaluation=outcome, devices=workers, provenance=provenance)
    write_run_stats(output, stats)
    return RunOutcome(summary, outcome, stats)


# -- shared -----------------------------------------------------------------------------------------
def coverage(selected: int, evaluated: int, gaps: JoinGaps | None) -> dict:
    """The ``coverage`` block of metrics.json: how many tasks were selected and evaluated, and which
    were left out and why (a partial run, ``--allow-partial``): selected tasks without generations,
    and generations whose task id the dataset does not have (ignored)."""
    no_generations = list(gaps.no_generations) if gaps is not None else []
    not_in_dataset = list(gaps.not_in_dataset) if gaps is not None else []
    return {
        "partial": bool(no_generations or not_in_dataset),
        "selected": selected,
        "evaluated": evaluated,
        "left_out": selected - evaluated,
        "no_generations": no_generations,
        "not_in_dataset": not_in_dataset,
    }


def _with_records(outcome: EvaluationOutcome, provenance: Provenance, covered: dict) -> EvaluationOutcome:
    """*outcome* with its metrics saying what produced them and which tasks they cover."""
    return replace(outcome, metrics={**outcome.metrics, "coverage": covered, "provenance": provenance.record()})


def _with_sandbox(settings: EvaluationSettings, sandbox: SandboxChoice) -> EvaluationSettings:
    """*settings* for verdicts from *sandbox*: its identity goes into every job key, so that verdicts
    from one kind of sandbox are never reused for another."""
    try:
        identity = sandbox.identity()
    except ImportError as exc:
        raise SandboxNotInstalled(f"--sandbox {sandbox.kind.value} needs {exc.name} (pip install -e . on this machine)") from exc
    return replace(settings, sandbox_id=identity)


def _generation_workers(cluster: ClusterChoice | None) -> WorkerPool | None:
    """Where generation runs: one worker per GPU of the *cluster*, or (None) this machine's devices."""
    return RayGenerationWorkers(cluster.resolved_address()) if cluster is not None else None


def _opener(
    sandbox: SandboxChoice, cluster: ClusterChoice | None, say: Callable[[str], None]
) -> Callable[[], AbstractContextManager[ExecutionService]]:
    """What opens the sandboxes: a pool on this machine, or the cluster's hosts running *sandbox*."""
    return cluster.opener(sandbox, say) if cluster is not None else sandbox.opener(say)


def _model_engine(settings: GenerationSettings) -> ModelEngineFactory:
    """The real engine for ``settings.model`` (checked before any worker loads it)."""
    check_model_path(settings.model)
    return ModelEngineFactory(settings)


def _counting(on_progress: Callable[[EvaluationProgress], None], monitor: RunMonitor) -> Callable[[EvaluationProgress], None]:
    def forward(progress: EvaluationProgress) -> None:
        monitor.samples_evaluated(progress.samples)
        on_progress(progress)

    return forward
