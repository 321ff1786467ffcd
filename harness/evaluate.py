"""Evaluating TACO generations: plan the jobs, reuse what is journaled or cached, run the rest
through the sandbox pool longest first, and write TACO-format outputs.

A job is one distinct program on one problem's tests.  Its key is a digest of everything that
decides its verdicts, so identical samples of a task share one job (dedup), and the journal and the
verdict cache can answer for it on a later run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .execution import ExecutionJob, RunLimits
from .generations import TaskSamples
from .journal import Journal
from .metrics import compute_metrics
from .pool import PoolStats, SandboxPool
from .problems import Problem
from .testcases import Mode
from .verdict_cache import VerdictCache
from .verdicts import SampleResult, SampleStatus

JUDGES = ("taco",)

# The modules whose code decides verdicts: a change to any of them invalidates cached verdicts.
_JUDGE_MODULES = ("compare", "execution", "judge", "programs", "testcases", "verdicts")


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
    source: str  # "journal", "cache" or "run"


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

    @property
    def infra_errors(self) -> int:
        return self.metrics["counts"]["infra_errors"]


@lru_cache(maxsize=1)
def judge_fingerprint() -> str:
    import importlib

    digest = hashlib.sha256()
    for name in _JUDGE_MODULES:
        module = importlib.import_module(f"harness.{name}")
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
            key = job_key(digest, code, settings)
            if not settings.dedup:
                key = f"{key}:{problem.task_id}:{sample}"
            if key not in jobs:
                jobs[key] = (ExecutionJob(problem.tests, code, settings.limits, settings.early_exit), cost)
                owners[key] = []
            owners[key].append((problem.task_id, sample))
    return [PlannedJob(key, job, tuple(owners[key]), cost) for key, (job, cost) in jobs.items()]


def _cache_key(key: str) -> str:
    return key.split(":", 1)[0]  # --no-dedup keys carry the slot; the verdicts do not depend on it


def evaluate(
    tasks: list[TaskSamples],
    open_pool: Callable[[], AbstractContextManager[SandboxPool]],
    settings: EvaluationSettings = EvaluationSettings(),
    journal: Journal | None = None,
    cache: VerdictCache | None = None,
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> EvaluationOutcome:
    """Evaluate every sample of *tasks*; the pool is opened only if something must run."""
    started = time.monotonic()
    plan = plan_jobs(tasks, settings)
    results: dict[int, list[SampleResult | None]] = {t.problem.task_id: [None] * len(t.outputs) for t in tasks}

    def settle(planned: PlannedJob, result: SampleResult, source: str) -> None:
        for task_id, sample in planned.owners:
            results[task_id][sample] = result
        on_progress(Progress(len(planned.owners), len(result.verdicts), source))

    recorded = journal.load() if journal is not None else {}
    pending: list[PlannedJob] = []
    from_journal = 0
    for planned in plan:
        if planned.key in recorded:
            settle(planned, recorded[planned.key], "journal")
            from_journal += 1
        else:
            pending.append(planned)
    from_cache = 0
    if cache is not None and pending:
        hits = cache.get_many(_cache_key(p.key) for p in pending)
        still = []
        for planned in pending:
            hit = hits.get(_cache_key(planned.key))
            if hit is None:
                still.append(planned)
                continue
            if journal is not None:
                journal.append(planned.key, hit)
            settle(planned, hit, "cache")
            from_cache += 1
        pending = still

    pool_stats = None
    if pending:
        # Longest expected first, so the last jobs running are short ones and no container idles
        # while one long job finishes alone.
        pending.sort(key=lambda p: -p.expected_cost)
        with open_pool() as pool:
            for index, result in pool.map_unordered(p.job for p in pending):
                planned = pending[index]
                if result.status is SampleStatus.JUDGED:
                    # Infrastructure failures are neither journaled nor cached: a rerun retries them.
                    if journal is not None:
                        journal.append(planned.key, result)
                    if cache is not None:
                        cache.put(_cache_key(planned.key), result)
                settle(planned, result, "run")
            pool_stats = pool.stats()
    final = {task: [r for r in samples if r is not None] for task, samples in results.items()}
    metrics = compute_metrics([t.problem for t in tasks], final)
    metrics["settings"] = settings.record()
    return EvaluationOutcome(
        results=final,
        metrics=metrics,
        seconds=time.monotonic() - started,
        jobs=len(plan),
        from_journal=from_journal,
        from_cache=from_cache,
        executed=len(pending),
        pool=pool_stats,
    )


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


def write_json_atomic(path: Path, data) -> None:
    # Written whole, then renamed: a reader never sees a half-written file as if it were complete.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=4), encoding="utf-8")
    tmp.replace(path)
