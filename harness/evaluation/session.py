"""Evaluating samples: each one is answered by the journal, the verdict cache or an identical
program already planned (dedup), or else run through the sandbox pool, longest expected first.

``EvaluationSession`` takes samples from any thread as they arrive (``harness run`` adds each one
as the generator finishes it); ``evaluate`` adds a whole generations file at once.

Contended timeouts.  A result whose timeout came from waiting for a CPU (``SampleResult.contended``,
decided by ``harness.judging.judge.is_contended``) is not a verdict on the program: it is neither
journaled nor cached, and the job runs again ahead of every waiting job.  The session also backs
off: after a contended result it runs one job at a time, and takes back one more sandbox per round
of uncontended results (a round: as many results as jobs it may run at once), so that two
evaluations on one machine, or more sandboxes than cores, settle at what the machine can run; a job
on its last attempt runs with nothing else of the session beside it.  A job contended
``MAX_CONTENDED_ATTEMPTS`` times in a row is not scored (an infrastructure error, with the reason):
never a timeout verdict.
"""

from __future__ import annotations

import enum
import functools
import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from harness.data.generations import TaskSamples
from harness.data.problems import Problem
from harness.evaluation.cache import VerdictCache
from harness.evaluation.plan import (
    EvaluationSettings,
    PlannedJob,
    cache_key,
    execution_job,
    expected_cost,
    plan_jobs,
    sample_key,
    tests_digest,
)
from harness.evaluation.service import ExecutionService
from harness.evaluation.verdict_journal import VerdictJournal
from harness.judging.verdicts import SampleResult, SampleStatus
from harness.sandbox.pool import HostStats, PoolStats
from harness.scoring.metrics import compute_metrics

# Attempts of one job that may end contended before it is reported as not scored.
MAX_CONTENDED_ATTEMPTS = 3
_RERUN_PRIORITY = float("-inf")  # ahead of every job that has not run yet


class ResultSource(str, enum.Enum):
    """Where a sample's result came from."""

    JOURNAL = "journal"  # recorded by an earlier run into the same output directory
    CACHE = "cache"  # the persistent verdict cache
    DEDUP = "dedup"  # an identical program of the same task already answered
    RUN = "run"  # executed in a sandbox now


@dataclass(frozen=True)
class Progress:
    """What one finished job adds: delivered to the caller's progress callback."""

    samples: int
    tests: int
    source: ResultSource
    sandboxes: int = 0  # sandboxes up at that moment
    hosts: HostStats | None = None  # the cluster's hosts at that moment (None on one machine)


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
    contended_reruns: int = 0  # jobs run again because a timeout was contended (each re-run counted)
    contended_unresolved: int = 0  # jobs contended on every attempt: not scored

    @property
    def infra_errors(self) -> int:
        return self.metrics["counts"]["infra_errors"]


class _JobState:
    """A job inside a session: who waits for it and, once known, its result."""

    __slots__ = ("contended_attempts", "owners", "planned", "result")

    def __init__(self, planned: PlannedJob):
        self.planned = planned
        self.owners: list[tuple[int, int]] = list(planned.owners)
        self.result: SampleResult | None = None
        self.contended_attempts = 0


class _Admission:
    """How many of the session's jobs may be in the pool at once: all its sandboxes, until a result
    comes back contended; then one, and one more after each round of uncontended results."""

    def __init__(self) -> None:
        self.most = 1  # the pool's size, once it is open
        self.limit = 1
        self.calm = 0  # uncontended results since the limit last changed

    def opened(self, slots: int) -> None:
        self.most = self.limit = max(1, slots)

    def contended(self) -> None:
        self.limit = 1
        self.calm = 0

    def uncontended(self) -> None:
        self.calm += 1
        if self.limit < self.most and self.calm >= self.limit:
            self.limit += 1
            self.calm = 0


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
        open_pool: Callable[[], AbstractContextManager[ExecutionService]],
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
        self._pool_context: AbstractContextManager[ExecutionService] | None = None
        self._pool: ExecutionService | None = None
        self._pool_stats: PoolStats | None = None
        self._counts: Counter[ResultSource] = Counter()
        # Jobs that must run wait here, best first, and go to the pool while admission allows.
        self._waiting: list[tuple[float, int, _JobState]] = []
        self._arrivals = itertools.count()
        self._in_pool = 0
        self._admission = _Admission()
        self._solo: _JobState | None = None  # a job on its last attempt, running alone
        self._contended_reruns = 0
        self._contended_unresolved = 0
        self._tests_executed = 0
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
        job = execution_job(problem, code, self.settings)
        self._add_planned([PlannedJob(key, job, ((problem.task_id, index),), cost)], longest_first=False)

    def _add_planned(self, planned_jobs: list[PlannedJob], longest_first: bool) -> None:
        with self._lock:
            fresh: list[_JobState] = []
            for planned in planned_jobs:
                state = self._jobs.get(planned.key)
                if state is not None:  # the same program on the same tests: one job answers both
                    state.owners.extend(planned.owners)
                    if state.result is not None:
                        self._settle(planned.owners, state.result, ResultSource.DEDUP)
                    continue
                state = self._jobs[planned.key] = _JobState(planned)
                recorded = self._recorded.get(planned.key)
                if recorded is not None:
                    state.result = recorded
                    self._counts[ResultSource.JOURNAL] += 1
                    self._settle(state.owners, recorded, ResultSource.JOURNAL)
                else:
                    fresh.append(state)
            if self._cache is not None and fresh:
                hits = self._cache.get_many(cache_key(s.planned.key) for s in fresh)
                missing = []
                for state in fresh:
                    hit = hits.get(cache_key(state.planned.key))
                    if hit is None:
                        missing.append(state)
                        continue
                    if self._journal is not None:
                        self._journal.append(state.planned.key, hit)
                    state.result = hit
                    self._counts[ResultSource.CACHE] += 1
                    self._settle(state.owners, hit, ResultSource.CACHE)
                fresh = missing
            if not fresh:
                return
            if longest_first:
                fresh.sort(key=lambda s: -s.planned.expected_cost)
            self._ensure_pool()
            if self._first_submitted is None:
                self._first_submitted = time.monotonic()
            self._running += len(fresh)
            self._counts[ResultSource.RUN] += len(fresh)
            for state in fresh:
                # Of the jobs waiting for a sandbox, the longest expected runs first: when generation
                # ends, the backlog drains longest first and the run does not end on one long job.
                heapq.heappush(self._waiting, (-state.planned.expected_cost, next(self._arrivals), state))
            admitted = self._admit()
        self._submit(admitted)

    def _admit(self) -> list[tuple[ExecutionService, _JobState]]:
        """Take the best waiting jobs that admission lets into the pool now (under the lock).  A job
        on its last attempt after contended ones runs alone: nothing else of this session with it."""
        pool = self._pool
        admitted: list[tuple[ExecutionService, _JobState]] = []
        while pool is not None and self._waiting and self._solo is None:
            state = self._waiting[0][2]
            if state.contended_attempts == MAX_CONTENDED_ATTEMPTS - 1:
                if self._in_pool:
                    break  # it waits for the session's other jobs to finish
                self._solo = state
            elif self._in_pool >= self._admission.limit:
                break
            heapq.heappop(self._waiting)
            self._in_pool += 1
            admitted.append((pool, state))
        return admitted

    def _submit(self, admitted: list[tuple[ExecutionService, _JobState]]) -> None:
        for pool, state in admitted:
            try:
                # In the pool's own queue they keep the same order (admission lets in the best first).
                pool.submit_with_callback(state.planned.job, functools.partial(self._finished, state), 0.0)
            except RuntimeError:  # the pool closed meanwhile (Ctrl-C): the job ends unscored
                self._finished(state, state.planned.job.infrastructure_error("pool closed"))

    def open_pool(self) -> None:
        """Open the pool and start its sandboxes now: fails early when sandboxes cannot run, and
        has them ready when the first sample arrives."""
        with self._lock:
            self._ensure_pool().warm_up()

    def _ensure_pool(self) -> ExecutionService:
        if self._pool is None:
            context = self._open_pool()
            self._pool = context.__enter__()
            self._pool_context = context
            self._admission.opened(self._pool.size)
        return self._pool

    def _finished(self, state: _JobState, result: SampleResult) -> None:
        # Runs on a pool thread.
        with self._lock:
            self._in_pool -= 1
            if self._solo is state:
                self._solo = None
            final: SampleResult | None = result
            if result.status is SampleStatus.JUDGED and result.contended:
                # The machine's timeout, not the program's: never journaled or cached; run it again.
                self._admission.contended()
                state.contended_attempts += 1
                if state.contended_attempts < MAX_CONTENDED_ATTEMPTS and self._pool is not None:
                    self._contended_reruns += 1
                    heapq.heappush(self._waiting, (_RERUN_PRIORITY, next(self._arrivals), state))
                    final = None
                else:
                    self._contended_unresolved += 1
                    final = SampleResult(
                        SampleStatus.INFRA_ERROR,
                        (),
                        detail=f"timed out waiting for a CPU (a busy machine) on {state.contended_attempts} "
                        "attempt(s) in a row: not scored",
                        contended=True,
                    )
            elif result.status is SampleStatus.JUDGED:
                self._admission.uncontended()
            if final is not None:
                self._record(state, replace(final, contended_reruns=state.contended_attempts - final.contended))
            admitted = self._admit()
        self._submit(admitted)

    def _record(self, state: _JobState, result: SampleResult) -> None:
        """*state*'s final result (under the lock)."""
        if result.status is SampleStatus.JUDGED:
            # Infrastructure failures (and contended results) are neither journaled nor cached: a
            # rerun retries them.
            if self._journal is not None:
                self._journal.append(state.planned.key, result)
            if self._cache is not None:
                self._cache.put(cache_key(state.planned.key), result)
            self._tests_executed += len(result.verdicts)
        state.result = result
        self._settle(state.owners, result, ResultSource.RUN)
        self._running -= 1
        self._last_finished = time.monotonic()
        if self._running == 0:
            self._idle.notify_all()

    def _settle(
        self, owners: list[tuple[int, int]] | tuple[tuple[int, int], ...], result: SampleResult, source: ResultSource
    ) -> None:
        for task_id, sample in owners:
            self._results[task_id][sample] = result
        stats = self._pool.stats() if self._pool is not None else None
        live = stats.sandboxes_live if stats is not None else 0
        self._on_progress(Progress(len(owners), len(result.verdicts), source, live, stats.hosts if stats is not None else None))

    # -- results -------------------------------------------------------------------------------
    def wait(self) -> None:
        """Block until every job added so far has its result."""
        with self._idle:
            while self._running:
                self._idle.wait(timeout=1.0)

    def times(self) -> EvaluationTimes:
        with self._lock:
            return EvaluationTimes(self._first_submitted, self._last_finished, self._tests_executed)

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
        final = {p.task_id: [result for _, result in sorted(self._results.get(p.task_id, {}).items())] for p in problems}
        metrics = compute_metrics(problems, final)
        metrics["settings"] = self.settings.record()
        return EvaluationOutcome(
            results=final,
            metrics=metrics,
            seconds=time.monotonic() - self._started,
            jobs=len(self._jobs),
            from_journal=self._counts[ResultSource.JOURNAL],
            from_cache=self._counts[ResultSource.CACHE],
            executed=self._counts[ResultSource.RUN],
            pool=self._pool_stats,
            times=self.times(),
            contended_reruns=self._contended_reruns,
            contended_unresolved=self._contended_unresolved,
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
        with self._lock:  # jobs that admission held back never reached the pool
            while self._waiting:
                _, _, state = heapq.heappop(self._waiting)
                self._record(state, state.planned.job.infrastructure_error("pool closed"))

    def __enter__(self) -> EvaluationSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def evaluate(
    tasks: list[TaskSamples],
    open_pool: Callable[[], AbstractContextManager[ExecutionService]],
    settings: EvaluationSettings = EvaluationSettings(),
    journal: VerdictJournal | None = None,
    cache: VerdictCache | None = None,
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> EvaluationOutcome:
    """Evaluate every sample of *tasks*; the pool is opened only if something must run."""
    with EvaluationSession(settings, open_pool, journal, cache, on_progress) as session:
        session.add_tasks(tasks)
        return session.finish([t.problem for t in tasks])
