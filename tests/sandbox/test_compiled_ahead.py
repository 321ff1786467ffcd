"""A stdin job's script is compiled once, ahead, in the compile-step child, and every test's fork runs
that code: it must behave exactly as a script compiled in its own run (and as a fresh `python`).
Where compiling ahead fails (a syntax error only the exec program has) or warns (a SyntaxWarning
belongs on each run's stderr), every run compiles for itself, as before.  Real containers; each job
goes to the runner as the evaluator sends it, and every message back is kept."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob
from harness.judging.verdicts import Verdict
from harness.sandbox.interface import Sandbox
from sandbox_image.taco_runner.protocol import (
    CaseFinished,
    Compiled,
    CompileStatus,
    NonZeroExit,
    Output,
    RunnerMessage,
)
from tests.support.raw_jobs import run_stdin_job


@dataclass
class RawStdinJob:
    """A SandboxTask that sends one RunStdinJob and keeps every message of that job."""

    code: str
    inputs: tuple[str, ...]
    fresh: bool = False
    messages: list[RunnerMessage] = field(default_factory=list)

    def run(self, sandbox: Sandbox) -> list[RunnerMessage]:
        return run_stdin_job(sandbox, self.code, self.inputs, fresh=self.fresh)

    def infrastructure_error(self, reason: str) -> list[RunnerMessage]:
        raise AssertionError(f"no sandbox could run the job: {reason}")


def _cases(messages: list[RunnerMessage]) -> list[tuple[int, int, object]]:
    return [(m.pass_number, m.case_index, m.outcome) for m in messages if isinstance(m, CaseFinished)]


def _verdict_parts(messages: list[RunnerMessage]) -> list[tuple[int, int, object]]:
    """What of each outcome a verdict can depend on (stderr is for people)."""
    return [(p, i, replace(o, stderr_tail="") if isinstance(o, NonZeroExit) else o) for p, i, o in _cases(messages)]


def _both_modes(pool, code: str, inputs: tuple[str, ...]) -> tuple[list, list]:
    warm, fresh = pool.map([RawStdinJob(code, inputs), RawStdinJob(code, inputs, fresh=True)])
    assert isinstance(warm[0], Compiled) and warm[0].status is CompileStatus.OK
    return warm, fresh


def test_every_test_runs_pristine_code_named_after_the_script(pool):
    # State a run leaves in its code objects (a mutable default, a function attribute) is its own.
    code = (
        "import sys\n"
        "def seen(a=[]):\n    a.append(1)\n    return len(a)\n"
        "seen.calls = getattr(seen, 'calls', 0) + 1\n"
        "n = int(input())\n"
        "print(n, seen(), seen.calls, seen.__code__.co_filename, __file__, open(__file__).read().count('seen'))\n"
    )
    inputs = tuple(f"{i}\n" for i in range(4))
    warm, fresh = _both_modes(pool, code, inputs)
    expected = [(1, i, Output(f"{i} 1 1 /tmp/work/solution.py /tmp/work/solution.py 7\n")) for i in range(4)]
    assert _cases(warm) == expected
    assert _cases(fresh) == expected


def test_a_compile_warning_reaches_every_run_s_stderr(pool):
    code = "x = 1 is 1\nraise SystemExit(3)\n"
    warm, fresh = _both_modes(pool, code, ("a\n", "b\n"))
    for messages in (warm, fresh):
        cases = _cases(messages)
        assert [(p, i) for p, i, _ in cases] == [(1, 0), (1, 1)]
        for _, _, outcome in cases:
            assert isinstance(outcome, NonZeroExit) and outcome.returncode == 3
            assert "SyntaxWarning" in outcome.stderr_tail, outcome.stderr_tail


@pytest.mark.parametrize("inputs", [("2\n",), ("2\n", "5\n")])
def test_an_exec_program_that_does_not_compile_fails_in_every_run_then_pass_two_runs(pool, inputs):
    # `return` at the top level: valid inside TACO's `def code():` (the compile step and pass 2), a
    # SyntaxError in the exec program that pass 1 runs.
    code = "n = int(input())\nprint(2 * n)\nreturn\n"
    warm, fresh = _both_modes(pool, code, inputs)
    assert _verdict_parts(warm) == _verdict_parts(fresh)  # stderr differs (the warm fork's traceback shows the runner)
    cases = _cases(warm)
    first = [outcome for p, _, outcome in cases if p == 1]
    assert len(first) == len(inputs)
    assert all(isinstance(o, NonZeroExit) and o.returncode == 1 and "SyntaxError" in o.stderr_tail for o in first)
    assert [outcome for p, _, outcome in cases if p == 2] == [Output(f"{2 * int(i)}\n") for i in inputs]


def test_annotations_are_evaluated_as_under_taco_s_python(pool):
    # The runner's modules postpone annotations (``from __future__ import annotations``); a program
    # must not inherit that: under a fresh `python` an annotation naming nothing is a NameError.
    code = "def twice(x: Undefined):\n    return 2 * x\nprint(twice(int(input())))\n"
    warm, fresh = _both_modes(pool, code, ("2\n",))
    assert _verdict_parts(warm) == _verdict_parts(fresh)
    first = [outcome for p, _, outcome in _cases(warm) if p == 1]
    assert len(first) == 1 and isinstance(first[0], NonZeroExit) and "NameError" in first[0].stderr_tail


def test_a_call_based_program_s_annotations_are_evaluated_too(pool):
    suite = parse_input_output({"fn_name": "twice", "inputs": [[2]], "outputs": [4]})
    undefined, defined = pool.map(
        [
            ExecutionJob(suite, "def twice(x: Undefined) -> int:\n    return 2 * x\n"),
            ExecutionJob(suite, "def twice(x: int) -> int:\n    return 2 * x\n"),
        ]
    )
    assert undefined.verdicts == (Verdict.COMPILE_ERROR,)  # the compile step's exec raises NameError, as in TACO
    assert defined.verdicts == (Verdict.PASSED,)
