"""Every reference solution of the 10 real TACO train problems passes all its tests, except the
hackerearth problem whose test data is known to be wrong (its verdicts are asserted too)."""

from __future__ import annotations

import json

import pytest

from harness.data.problems import load_problems
from harness.evaluation.execution import ExecutionJob
from tests.conftest import shared_file


# At TACO's 4 s per test: the slowest reference took 0.74 s per test (of 244 programs, all their tests)
# on a 2-core machine loaded with two busy loops and other test suites, so no verdict here is the load's.
@pytest.fixture(scope="module")
def evaluated(pool):
    problems = load_problems(shared_file("taco_train_sample_original_fields.jsonl"))
    jobs, keys = [], []
    for problem in problems:
        solutions = problem.row["solutions"]
        solutions = json.loads(solutions) if isinstance(solutions, str) else solutions
        for index, code in enumerate(solutions):
            jobs.append(ExecutionJob(problem.tests, code))
            keys.append((problem, index))
    return list(zip(keys, pool.map(jobs)))


# Solution 33 of the codechef problem (row 1) is itself wrong on 4 of the 102 tests: run the
# official way (fresh `python` on TACO's exec program) it prints "0\n0\n" where "3\n0\n" is
# expected.  TACO's own data, so its verdicts are asserted rather than excused.
KNOWN_WRONG_REFERENCE = {(1, 33): {40, 43, 44, 97}}


def test_all_reference_solutions_pass(evaluated):
    failures = []
    for (problem, index), result in evaluated:
        if problem.row["source"] == "hackerearth":
            continue
        assert result.status.value == "judged", result.detail
        failing = {i for i, v in enumerate(result.taco()) if v is not True}
        if failing != KNOWN_WRONG_REFERENCE.get((problem.task_id, index), set()):
            failures.append((problem.task_id, index, result.taco(), result.detail[-300:]))
    assert not failures
    assert sum(problem.row["source"] != "hackerearth" for (problem, _), _ in evaluated) == 239


def test_known_bad_hackerearth_problem(evaluated):
    verdicts = [result.taco() for (problem, _), result in evaluated if problem.row["source"] == "hackerearth"]
    assert len(verdicts) == 5
    for taco in verdicts:  # the data is wrong: each solution passes exactly one of the 9 tests
        assert len(taco) == 9
        assert taco.count(True) == 1 and taco.count(False) == 8
