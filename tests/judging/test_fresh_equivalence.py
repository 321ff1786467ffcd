"""The warm fork must be indistinguishable from the official fresh `python` per test.  The runner's
``fresh_interpreter`` mode runs each stdin test the official way inside the same image: both modes
must give the same verdicts, test by test, on real programs and on programs probing the interpreter."""

from __future__ import annotations

import json

import pytest

from bench.variants import wrong_variants
from harness.data.problems import load_problems
from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob, RunLimits
from tests.conftest import shared_file

PROBES = [
    # What fast-I/O templates and careful programs look at on the standard streams.
    ("import sys\nprint(sys.stdin.mode, sys.stdout.mode, sys.stderr.mode)", "r w w"),
    ("import sys\nprint(sys.stdin.buffer.name, sys.stdout.buffer.raw.name, sys.stdout.name)", "<stdin> <stdout> <stdout>"),
    ("import sys\nprint(sys.stdin.errors, sys.stdout.errors, sys.stderr.errors)", "strict strict backslashreplace"),
    ("import sys\nprint(sys.stdout.line_buffering, sys.stderr.line_buffering, sys.stdin.buffer.mode)", "False True rb"),
    ("import sys, os\nprint(__name__, os.path.basename(sys.argv[0]), len(sys.argv))", "__main__ solution.py 1"),
    ("import os\nprint(os.getcwd(), open(__file__).read().count('getcwd'))", "/tmp/work 2"),
    ("import sys\nsys.stdout.write(sys.stdin.read().upper())", "ABC"),
    ("import os, io\nclass F(io.IOBase):\n  pass\nprint('x' in os.fdopen(1, 'w', closefd=False).mode)", "False"),
]


# The probes take milliseconds; a fresh interpreter adds its start-up, up to 1.3 s per run on a loaded
# 2-core machine: a third of TACO's 4 s, so the default limit stays.
@pytest.mark.parametrize("program, expected", PROBES)
def test_interpreter_probe_same_in_fork_and_fresh(pool, program, expected):
    suite = parse_input_output({"inputs": ["abc"], "outputs": [expected + "\n"]})
    warm = pool.run(ExecutionJob(suite, program))
    fresh = pool.run(ExecutionJob(suite, program, fresh_interpreter=True))
    assert fresh.taco() == [True], fresh.detail  # the oracle: a new interpreter in the same image
    assert warm.taco() == fresh.taco(), warm.detail


# The real programs end by themselves, but not all quickly: task 65 needs 1.3-3.6 s per run in a warm
# fork and 1.4-4.3 s in a fresh interpreter (which also pays Python's start-up and the header's imports
# on every run: up to 1.3 s) on a 2-core machine loaded with two busy loops and other test suites; at
# TACO's 4 s a timeout decided by the load in one mode and not the other would fail a test about the
# modes, not the limit.  20 s is over 4.6 times the worst measured; nothing here is meant to time out.
ROOMY_LIMITS = RunLimits(timeout_s=20.0)


def test_real_programs_same_verdicts_in_fork_and_fresh(pool):
    problems = load_problems(shared_file("taco_test_examples.jsonl"))[:40]
    jobs = []
    for problem in problems:
        reference = json.loads(problem.row["solutions"])[0]
        for code in [reference, *wrong_variants(reference, problem.tests)]:
            jobs.append(ExecutionJob(problem.tests, code, ROOMY_LIMITS))
            jobs.append(ExecutionJob(problem.tests, code, ROOMY_LIMITS, fresh_interpreter=True))
    results = pool.map(jobs)
    pairs = list(zip(results[0::2], results[1::2]))
    assert all(w.status.value == f.status.value == "judged" for w, f in pairs)
    differing = [(i // 5, w.taco(), f.taco(), w.detail[-200:]) for i, (w, f) in enumerate(pairs) if w.taco() != f.taco()]
    assert not differing
    assert sum(w.passed for w, _ in pairs) >= 40  # the references do pass (the corpus is not trivially failing)
