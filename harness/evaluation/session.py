"""Evaluating TACO generations: plan the jobs, reuse what is journaled or cached, run the rest
through the sandbox pool longest first, and write TACO-format outputs.

A job is one distinct program on one problem's tests.  Its key is a digest of everything that
decides its verdicts, so identical samples of a task share one job (dedup), and the journal and the
verdict cache can answer for it on a later run.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.data.atomic import write_json_atomic
from harness.data.generations import TaskSamples
from harness.data.problems import Problem
from harness.data.testcases import Mode
from harness.evaluation.cache import VerdictCache
from harness.evaluation.execution import ExecutionJob, RunLimits
from harness.evaluation.verdict_journal import VerdictJournal
from harness.judging.verdicts import SampleResult, SampleStatus
from harness.sandbox.pool import PoolStats, SandboxPool
from harness.scoring.metrics import compute_metrics

JUDGES = ("taco",)

# The modules whose code decides verdicts: a change to any of them invalidates cached verdicts.
_JUDGE_MODULES = (
    "harness.judging.compare",
    "harness.evaluation.execution",
    "harness.judging.judge",
    "harness.judging.programs",
    "harness.data.testcases",
    "harness.judging.verdicts",
)


@dataclass(frozen=True)
class EvaluationSettings:
    limits: RunLimits = RunLimits()
    early_exit: bool = True
    dedup: bool = True
    judge: str = "taco"
    # The sandbox the verdicts come from (image and container limits), as part of the job key.
    sandbox_id: str = ""

    def record(self) -> dict:
        return {
            "judge": self.judge,
            "timeout_s": self.limits.timeout_s,
            "output_limit_bytes": self.limits.output_limit_bytes,
            "early_exit": self.early_exit,
            "dedup": self.dedup,
            "sandbox": self.sandbox_id,
        }


@dataclass(frozen=True)
class PlannedJob:
    key: str
    job: ExecutionJob
    owners: tuple[tuple[int, int], ...]  # the (task_id, sample index) slots this job answers
    expected_cost: float  # relative: only the order matters


@dataclass(frozen=True)
class Progress:
    """What one finished job adds: delivered to the caller's progress callback."""

    samples: int
    tests: int
    source: str  # "journal", "cache", "dedup" (an identical program already answered) or "run"
    sandboxes: int = 0  # sandboxes up at that moment


@dataclass(frozen=True)
class EvaluationTimes:
    """When the session's executed jobs ran (monotonic seconds; None when nothing ran)."""

    first_submitted: float | None
    last_finished: float | None
    tests_executed: int


@dataclass(frozen=True)
class EvaluationOutcome:
    results: dict[int, list[SampleResult]]
    metrics: dict
    seconds: float
    jobs: int
    from_journal: int
    from_cache: int
    executed: int
    pool: PoolStats | None = field(default=None)
    times: EvaluationTimes = EvaluationTimes(None, None, 0)

    @property
    def infra_errors(self) -> int:
        return self.metrics["counts"]["infra_errors"]


@lru_cache(maxsize=1)
def judge_fingerprint() -> str:
    import importlib

    digest = hashlib.sha256()
    for name in _JUDGE_MODULES:
        module = importlib.import_module(name)
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def tests_digest(problem: Problem) -> str:
    """A digest of the problem's tests as stored, so that equal tests give equal keys."""
    raw = problem.row.get("input_output")
    text = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def job_key(tests: str, code: str, settings: EvaluationSettings) -> str:
    material = json.dumps(
        {
            "tests": tests,
            "code": code,
            "judge": settings.judge,
            "judge_code": judge_fingerprint(),
            "timeout_s": settings.limits.timeout_s,
            "output_limit": settings.limits.output_limit_bytes,
            "early_exit": settings.early_exit,
            "sandbox": settings.sandbox_id,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def expected_cost(problem: Problem) -> float:
    # Tests dominate; big inputs take longer to feed, parse and answer.
    suite = problem.tests
    if suite is None:
        return 0.0
    input_bytes = sum(len(str(case.input)) for case in suite.cases)
    return len(suite) + input_bytes / 20_000 + (0.5 if suite.mode is Mode.STDIN else 0.0)


def sample_key(tests: str, code: str, task_id: int, index: int, settings: EvaluationSettings) -> str:
    """The job key of one sample: identical programs on identical tests share it, unless dedup is off."""
    key = job_key(tests, code, settings)
    return key if settings.dedup else f"{key}:{task_id}:{index}"


def plan_jobs(tasks: list[TaskSamples], settings: EvaluationSettings) -> list[PlannedJob]:
    owners: dict[str, list[tuple[int, int]]] = {}
    jobs: dict[str, tuple[ExecutionJob, float]] = {}
    for task in tasks:
        problem = task.problem
        if problem.tests is None:
            raise ValueError(f"task {problem.task_id} has no tests")
        digest = tests_digest(problem)
        cost = expected_cost(problem)
        for sample, code in enumerate(task.outputs):
            key = sample_key(digest, code, problem.task_id, sample, settings)
            if key not in jobs:
                jobs[key] = (ExecutionJob(problem.tests, code, settings.limits, settings.early_exit), cost)
                owners[key] = []
            owners[key].append((problem.task_id, sample))
    return [PlannedJob(key, job, tuple(owners[key]), cost) for key, (job, cost) in jobs.items()]


def _cache_key(key: str) -> str:
    return key.split(":", 1)[0]  # --no-dedup keys carry the slot; the verdicts do not depend on it


class _JobState:
    """A job inside a session: who waits for it and, once known, its result."""

    __slots__ = ("planned", "owners", "result")

    def __init__(self, planned: PlannedJob):
        self.planned = planned
        self.owners: list[tuple[int, int]] = list(planned.owners)
        self.result: SampleResult | None = None


class EvaluationSession:
    """Evaluates samples as they are added, from any thread.

    Each sample is answered by the journal, the verdict cache or an identical program already
    planned (dedup), or else queued on the pool, which is opened at the first job that must run.
    Results are journaled and cached as they arrive, from the pool's threads.  ``evaluate`` adds a
    whole file at once (longest jobs first); ``harness run`` adds each sample as the generator
    finishes it.  ``finish`` waits for everything added and builds the outcome.
    """

    def __init__(
        self,
        settings: EvaluationSettings,
        open_pool: Callable[[], AbstractContextManager[SandboxPool]],
        journal: VerdictJournal | None = None,
        cache: VerdictCache | None = None,
        on_progress: Callable[[Progress], None] = lambda progress: None,
    ):
        self.settings = settings
        self._open_pool = open_pool
        self._journal = journal
        self._cache = cache
        self._on_progress = on_progress
        self._recorded = journal.load() if journal is not None else {}
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: dict[str, _JobState] = {}
        self._results: dict[int, dict[int, SampleResult]] = {}
        self._problems: dict[int, Problem] = {}
        self._task_facts: dict[int, tuple[str, float]] = {}  # task -> (tests digest, expected cost)
        self._running = 0
        self._pool_context: AbstractContextManager[SandboxPool] | None = None
        self._pool: SandboxPool | None = None
        self._pool_stats: PoolStats | None = None
        self._counts = Counter()
        self._first_submitted: float | None = None
        self._last_finished: float | None = None

    # -- adding samples ------------------------------------------------------------------------
    def add_tasks(self, tasks: list[TaskSamples]) -> None:
        """Add every sample of *tasks*; the jobs that must run are queued longest first, so the
        last ones running are short and no sandbox idles while one long job finishes alone."""
        for task in tasks:
            self._problems.setdefault(task.problem.task_id, task.problem)
            self._results.setdefault(task.problem.task_id, {})
        self._add_planned(plan_jobs(tasks, self.settings), longest_first=True)

    def add_sample(self, problem: Problem, index: int, code: str) -> None:
        """Add sample *index* of *problem* (as a generator finishes it)."""
        if problem.tests is None:
            raise ValueError(f"task {problem.task_id} has no tests")
        self._problems.setdefault(problem.task_id, problem)
        self._results.setdefault(problem.task_id, {})
        facts = self._task_facts.get(problem.task_id)
        if facts is None:  # once per task: both walk every test, and samples arrive one by one
            facts = self._task_facts[problem.task_id] = (tests_digest(problem), expected_cost(problem))
        digest, cost = facts
        key = sample_key(digest, code, problem.task_id, index, self.settings)
        job = ExecutionJob(problem.tests, code, self.settings.limits, self.settings.early_exit)
        self._add_planned([PlannedJob(key, job, ((problem.task_id, index),), cost)], longest_first=False)

    def _add_planned(self, planned_jobs: list[PlannedJob], longest_first: bool) -> None:
        with self._lock:
            fresh: list[_JobState] = []
            for planned in planned_jobs:
                state = self._jobs.get(planned.key)
                if state is not None:  # the same program on the same tests: one job answers both
                    state.owners.extend(planned.owners)
                    if state.result is not None:
                        self._settle(planned.owners, state.result, "dedup")
                    continue
                state = self._jobs[planned.key] = _JobState(planned)
                recorded = self._recorded.get(planned.key)
                if recorded is not None:
                    state.result = recorded
                    self._counts["journal"] += 1
                    self._settle(state.owners, recorded, "journal")
                else:
                    fresh.append(state)
            if self._cache is not None and fresh:
                hits = self._cache.get_many(_cache_key(s.planned.key) for s in fresh)
                missing = []
                for state in fresh:
                    hit = hits.get(_cache_key(state.planned.key))
                    if hit is None:
                        missing.append(state)
                        continue
                    if self._journal is not None:
                        self._journal.append(state.planned.key, hit)
                    state.result = hit
                    self._counts["cache"] += 1
                    self._settle(state.owners, hit, "cache")
                fresh = missing
            if not fresh:
                return
            if longest_first:
                fresh.sort(key=lambda s: -s.planned.expected_cost)
            pool = self._ensure_pool()
            if self._first_submitted is None:
                self._first_submitted = time.monotonic()
            self._running += len(fresh)
            self._counts["run"] += len(fresh)
        for state in fresh:
            # Of the jobs waiting for a sandbox, the longest expected runs first: when generation
            # ends, the backlog drains longest first and the run does not end on one long job.
            pool.submit_with_callback(
                state.planned.job, lambda result, state=state: self._finished(state, result), -state.planned.expected_cost
            )

    def open_pool(self) -> None:
        """Open the pool and start its sandboxes now: fails early when sandboxes cannot run, and
        has them ready when the first sample arrives."""
        with self._lock:
            self._ensure_pool().warm_up()

    def _ensure_pool(self) -> SandboxPool:
        if self._pool is None:
            context = self._open_pool()
            self._pool = context.__enter__()
            self._pool_context = context
        return self._pool

    def _finished(self, state: _JobState, result: SampleResult) -> None:
        # Runs on a pool thread.
        with self._lock:
            if result.status is SampleStatus.JUDGED:
                # Infrastructure failures are neither journaled nor cached: a rerun retries them.
                if self._journal is not None:
                    self._journal.append(state.planned.key, result)
                if self._cache is not None:
                    self._cache.put(_cache_key(state.planned.key), result)
                self._counts["tests"] += len(result.verdicts)
            state.result = result
            self._settle(state.owners, result, "run")
            self._running -= 1
            self._last_finished = time.monotonic()
            if self._running == 0:
                self._idle.notify_all()

    def _settle(self, owners, result: SampleResult, source: str) -> None:
        for task_id, sample in owners:
            self._results[task_id][sample] = result
        live = self._pool.stats().sandboxes_live if self._pool is not None else 0
        self._on_progress(Progress(len(owners), len(result.verdicts), source, live))

    # -- results -------------------------------------------------------------------------------
    def wait(self) -> None:
        """Block until every job added so far has its result."""
        with self._idle:
            while self._running:
                self._idle.wait(timeout=1.0)

    def times(self) -> EvaluationTimes:
        with self._lock:
            return EvaluationTimes(self._first_submitted, self._last_finished, self._counts["tests"])

    def pool_stats(self) -> PoolStats | None:
        with self._lock:
            if self._pool is not None:
                return self._pool.stats()
            return self._pool_stats

    def finish(self, problems: list[Problem] | None = None) -> EvaluationOutcome:
        """Wait for every added sample, close the pool, and build the outcome over *problems*
        (default: every problem a sample was added for, in task order)."""
        self.wait()
        self.close()
        if problems is None:
            problems = [self._problems[task] for task in sorted(self._problems)]
        final = {
            p.task_id: [result for _, result in sorted(self._results.get(p.task_id, {}).items())] for p in problems
        }
        metrics = compute_metrics(problems, final)
        metrics["settings"] = self.settings.record()
        return EvaluationOutcome(
            results=final,
            metrics=metrics,
            seconds=time.monotonic() - self._started,
            jobs=len(self._jobs),
            from_journal=self._counts["journal"],
            from_cache=self._counts["cache"],
            executed=self._counts["run"],
            pool=self._pool_stats,
            times=self.times(),
        )

    def close(self) -> None:
        """Close the pool (its sandboxes are removed); jobs still queued end as infra errors."""
        with self._lock:
            pool, context = self._pool, self._pool_context
            self._pool = self._pool_context = None
            if pool is not None:
                self._pool_stats = pool.stats()
        if context is not None:
            context.__exit__(None, None, None)

    def __enter__(self) -> "EvaluationSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def evaluate(
    tasks: list[TaskSamples],
    open_pool: Callable[[], AbstractContextManager[SandboxPool]],
    settings: EvaluationSettings = EvaluationSettings(),
    journal: VerdictJournal | None = None,
    cache: VerdictCache | None = None,
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> EvaluationOutcome:
    """Evaluate every sample of *tasks*; the pool is opened only if something must run."""
    with EvaluationSession(settings, open_pool, journal, cache, on_progress) as session:
        session.add_tasks(tasks)
        return session.finish([t.problem for t in tasks])


def taco_results(results: dict[int, list[SampleResult]]) -> dict[str, list[list[bool | int] | None]]:
    """The official results.json layout.  An infrastructure failure is written as null: it is not a
    verdict, and TACO's scripts would otherwise score whatever stood in its place."""
    return {
        str(task): [r.taco() if r.status is SampleStatus.JUDGED else None for r in samples]
        for task, samples in sorted(results.items())
    }


def write_outputs(outcome: EvaluationOutcome, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "results.json", taco_results(outcome.results))
    write_json_atomic(directory / "metrics.json", outcome.metrics)

