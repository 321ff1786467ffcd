"""Samples for the cluster tests from real TACO rows (../shared/data): each problem's first reference
solution and its wrong variants (bench/variants.py), so that verdicts of every kind come back."""

from __future__ import annotations

import json
from pathlib import Path

from bench.variants import wrong_variants
from harness.data.generations import TaskSamples
from harness.data.problems import Problem, load_problems
from tests.conftest import shared_file

EXAMPLES = "taco_test_examples.jsonl"


def example_problems(count: int, most_tests: int = 4) -> list[Problem]:
    """The first *count* test-split examples with at most *most_tests* tests (quick to run)."""
    problems = load_problems(shared_file(EXAMPLES))
    return [p for p in problems if p.tests is not None and len(p.tests) <= most_tests][:count]


def samples_of(problem: Problem, sleep_s: float = 0.0) -> tuple[str, ...]:
    """The first reference solution and its wrong variants; with *sleep_s*, each program first sleeps
    (so that a run lasts long enough to be interrupted), which changes no verdict."""
    solutions = problem.row["solutions"]
    solutions = json.loads(solutions) if isinstance(solutions, str) else solutions
    code = solutions[0]
    assert problem.tests is not None
    programs = [code, *wrong_variants(code, problem.tests)]
    if sleep_s:
        programs = [f"import time\ntime.sleep({sleep_s})\n{program}" for program in programs]
    return tuple(programs)


def corpus(count: int, sleep_s: float = 0.0) -> list[TaskSamples]:
    return [TaskSamples(p, samples_of(p, sleep_s)) for p in example_problems(count)]


def write_generations(tasks: list[TaskSamples], path: Path) -> Path:
    """The official generations.json layout for *tasks*."""
    path.write_text(json.dumps([{"task_id": t.problem.task_id, "output": list(t.outputs)} for t in tasks]))
    return path
