"""The evaluation plan (pure): what decides a verdict, and the jobs to run.

A job is one distinct program on one problem's tests.  Its key is a digest of everything that
decides its verdicts (the tests and the problem's Special-Judge flag, the program, the judges and
their code, the limits, early exit, the sandbox), so identical samples of a task share one job
(dedup), and the journal and the verdict cache can answer for it on a later run.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass
from functools import lru_cache

from harness.data.generations import TaskSamples
from harness.data.problems import Problem
from harness.data.special_judge import SpecialJudge
from harness.data.testcases import Mode
from harness.evaluation.execution import ExecutionJob, RunLimits

JUDGES = ("taco",)
# The judge that runs beside the one chosen, from the same runs (``harness.judging.corrected``).
CORRECTED_JUDGE = "corrected"

# The modules whose code decides verdicts (and the details stored with them): a change to any of
# them invalidates cached verdicts.
_JUDGE_MODULES = (
    "harness.judging.compare",
    "harness.judging.corrected",
    "harness.data.special_judge",
    "harness.evaluation.execution",
    "harness.judging.judge",
    "harness.judging.programs",
    "harness.data.testcases",
    "harness.judging.verdicts",
    "harness.judging.failures",  # not verdicts, but the failure details stored with them
)


@dataclass(frozen=True)
class EvaluationSettings:
    limits: RunLimits = RunLimits()
    early_exit: bool = True
    dedup: bool = True
    judge: str = "taco"
    # Also judge every output with the corrected judge (results_corrected.json, metrics' ``corrected``
    # and ``disagreements``); it costs no run, and an early exit waits until both judges have decided.
    corrected: bool = True
    # The sandbox the verdicts come from (image and container limits), as part of the job key.
    sandbox_id: str = ""

    def record(self) -> dict:
        return {
            "judge": self.judge,
            "judges": list(self.judges),
            "judge_code": judge_fingerprint(),  # a digest of the modules that decide verdicts
            "timeout_s": self.limits.timeout_s,
            "output_limit_bytes": self.limits.output_limit_bytes,
            "early_exit": self.early_exit,
            "dedup": self.dedup,
            "sandbox": self.sandbox_id,
        }

    @property
    def judges(self) -> tuple[str, ...]:
        """Every judge whose verdicts the results carry."""
        return (self.judge, CORRECTED_JUDGE) if self.corrected else (self.judge,)


@dataclass(frozen=True)
class PlannedJob:
    key: str
    job: ExecutionJob
    owners: tuple[tuple[int, int], ...]  # the (task_id, sample index) slots this job answers
    expected_cost: float  # relative: only the order matters


@lru_cache(maxsize=1)
def judge_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in _JUDGE_MODULES:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()[:16]


def tests_digest(problem: Problem) -> str:
    """A digest of the problem's tests as stored (so that equal tests give equal keys) and of its
    Special-Judge flag, which decides the corrected judge's verdicts on them."""
    raw = problem.row.get("input_output")
    text = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
    if problem.special_judge is not SpecialJudge.NONE:
        text = f"{text}\0{problem.special_judge.value}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def job_key(tests: str, code: str, settings: EvaluationSettings) -> str:
    material = json.dumps(
        {
            "tests": tests,
            "code": code,
            "judge": settings.judge,
            "judges": list(settings.judges),  # the results of a key carry every one of them
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


def execution_job(problem: Problem, code: str, settings: EvaluationSettings) -> ExecutionJob:
    """The job that runs *code* on *problem*'s tests, judged by every judge of *settings*."""
    if problem.tests is None:
        raise ValueError(f"task {problem.task_id} has no tests")
    special = problem.special_judge if settings.corrected else None
    return ExecutionJob(problem.tests, code, settings.limits, settings.early_exit, special_judge=special)


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
                jobs[key] = (execution_job(problem, code, settings), cost)
                owners[key] = []
            owners[key].append((problem.task_id, sample))
    return [PlannedJob(key, job, tuple(owners[key]), cost) for key, (job, cost) in jobs.items()]


def cache_key(key: str) -> str:
    return key.split(":", 1)[0]  # --no-dedup keys carry the slot; the verdicts do not depend on it
