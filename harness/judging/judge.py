"""Turning what the sandbox reports into TACO verdicts (pure: no I/O).

The sandbox reports, per test, what the program did; this module decides what that means.  The
stdin retry procedure and the all-``returncode:1`` second pass are run in the sandbox (they need no
expected output); the comparison, the early-exit rule and the final TACO shapes live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.data.testcases import Mode, TestSuite
from harness.judging.compare import compare_call_result, compare_stdout
from harness.judging.verdicts import SampleResult, SampleStatus, Verdict
from sandbox_image.taco_runner import valuecodec
from sandbox_image.taco_runner.protocol import (
    CheckerDied,
    CompileStatus,
    NonZeroExit,
    Outcome,
    Output,
    OutputOverflow,
    Raised,
    ReturnValue,
    TimedOut,
    Uncomparable,
)


def expected_text(output: Any) -> str:
    """TACO joins list outputs with newlines before comparing stdin programs."""
    return "\n".join(output) if isinstance(output, list) else output


def stdin_input_text(value: Any) -> str:
    return "\n".join(value) if isinstance(value, list) else value


def broken_stdin_tests(suite: TestSuite) -> bool:
    """TACO's checker dies (so the sample gets [-1]*n) when an input or output cannot be joined."""
    for case in suite.cases:
        try:
            if not isinstance(stdin_input_text(case.input), str) or not isinstance(expected_text(case.output), str):
                return True
        except TypeError:
            return True
    return False


def stdin_verdict(outcome: Outcome, expected: Any) -> tuple[Verdict, str]:
    """Verdict and TACO label for one stdin test outcome reported by the runner."""
    if isinstance(outcome, Output):
        ok = compare_stdout(outcome.text, expected_text(expected))
        return (Verdict.PASSED, "passed") if ok else (Verdict.WRONG_ANSWER, "false")
    if isinstance(outcome, TimedOut):
        return Verdict.TIMEOUT, "timeout"
    if isinstance(outcome, OutputOverflow):
        return Verdict.OUTPUT_LIMIT, "false"
    if isinstance(outcome, NonZeroExit):
        return Verdict.RUNTIME_ERROR, f"returncode:{outcome.returncode}"
    return Verdict.RUNTIME_ERROR, "runtime_error"


def call_verdict(outcome: Outcome, expected: Any) -> Verdict:
    if isinstance(outcome, ReturnValue):
        try:
            value = valuecodec.decode(outcome.encoded)
            return Verdict.PASSED if compare_call_result(value, expected) else Verdict.WRONG_ANSWER
        except Exception:
            return Verdict.COMPARE_ERROR
    if isinstance(outcome, Uncomparable):
        return Verdict.COMPARE_ERROR
    if isinstance(outcome, Raised):
        return Verdict.RUNTIME_ERROR
    if isinstance(outcome, TimedOut):
        return Verdict.CALL_TIMEOUT
    if isinstance(outcome, OutputOverflow):
        return Verdict.OUTPUT_LIMIT
    raise ValueError(f"unexpected call outcome {outcome.KIND!r}")


@dataclass
class SampleJudgement:
    """Accumulates the runner's events for one sample and says when evaluation can stop.

    Early exit (TACO_SEMANTICS §8): a failure settles the sample unless it is a ``returncode:1``
    failure, which the second pass may still turn into a pass; so we stop at the first other
    failure, or as soon as a ``returncode:1`` failure sits beside any other verdict.
    """

    suite: TestSuite
    early_exit: bool
    compiled: CompileStatus | None = None
    first: list[tuple[Verdict, str]] = field(default_factory=list)
    second: list[tuple[Verdict, str]] = field(default_factory=list)
    crashed: bool = False
    detail: str = ""

    def on_compiled(self, status: CompileStatus, error: str) -> None:
        self.compiled = status
        self.detail = error

    def on_test(self, pass_number: int, outcome: Outcome) -> bool:
        """Record one test; return True when the verdict is settled and the rest can be skipped."""
        if isinstance(outcome, CheckerDied):
            self.crashed = True
            return True
        index = len(self.first) if pass_number == 1 else len(self.second)
        expected = self.suite.cases[index].output
        if self.suite.mode is Mode.STDIN:
            entry = stdin_verdict(outcome, expected)
        else:
            verdict = call_verdict(outcome, expected)
            entry = (verdict, verdict.value)
        if entry[0] is Verdict.RUNTIME_ERROR and not self.detail:
            self.detail = _error_text(outcome)
        (self.first if pass_number == 1 else self.second).append(entry)
        return self.early_exit and self._settled(pass_number)

    def _settled(self, pass_number: int) -> bool:
        entries = self.first if pass_number == 1 else self.second
        last_verdict, last_label = entries[-1]
        if last_verdict is Verdict.PASSED:
            return pass_number == 1 and self._mixed_rc1()
        if pass_number == 2 or self.suite.mode is Mode.CALL:
            return True
        return last_label != "returncode:1" or self._mixed_rc1()

    def _mixed_rc1(self) -> bool:
        labels = {label for _, label in self.first}
        return "returncode:1" in labels and len(labels) > 1

    def result(self, stopped_early: bool) -> SampleResult:
        n = len(self.suite)
        if self.compiled is CompileStatus.ERROR:
            return SampleResult(SampleStatus.JUDGED, (Verdict.COMPILE_ERROR,), detail=self.detail)
        if self.compiled is CompileStatus.DIED or self.crashed:
            return SampleResult(SampleStatus.JUDGED, (Verdict.CRASHED,) * n, detail=self.detail or "checker died")
        entries = self.second if self.second else self.first
        verdicts = tuple(v for v, _ in entries)
        return SampleResult(SampleStatus.JUDGED, verdicts, stopped_early=stopped_early, detail=self.detail)


def _error_text(outcome: Outcome) -> str:
    """What a failed run said about its failure, for humans: its stderr, or the exception a call raised."""
    if isinstance(outcome, NonZeroExit):
        return outcome.stderr_tail
    if isinstance(outcome, Raised):
        return outcome.exception
    return ""
