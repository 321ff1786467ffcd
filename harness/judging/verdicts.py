"""Per-test verdicts, by meaning, each with the value TACO writes for it in ``results.json``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum


class Verdict(Enum):
    PASSED = "passed"
    WRONG_ANSWER = "wrong_answer"
    OUTPUT_LIMIT = "output_limit"  # more output than the cap: cannot be the answer
    TIMEOUT = "timeout"  # stdin test over its wall-clock limit
    CALL_TIMEOUT = "call_timeout"  # call-based test over its limit: TACO scores it as a runtime error
    RUNTIME_ERROR = "runtime_error"  # exception, non-zero exit, undecodable output
    COMPARE_ERROR = "compare_error"  # comparing a call's result raised: TACO labels it "timeout"
    CRASHED = "crashed"  # the checker process died (SystemExit, segfault, OOM kill): TACO [-1]*n
    COMPILE_ERROR = "compile_error"  # TACO [-2], a single entry for the whole sample

    @property
    def taco(self) -> bool | int:
        """The value in TACO's result lists: True, False, -1, -2 or -3."""
        return _TACO_VALUE[self]

    @property
    def passed(self) -> bool:
        return self is Verdict.PASSED


_TACO_VALUE: dict[Verdict, bool | int] = {
    Verdict.PASSED: True,
    Verdict.WRONG_ANSWER: False,
    Verdict.OUTPUT_LIMIT: False,
    Verdict.TIMEOUT: -1,
    Verdict.CALL_TIMEOUT: -3,
    Verdict.RUNTIME_ERROR: -3,
    Verdict.COMPARE_ERROR: -1,
    Verdict.CRASHED: -1,
    Verdict.COMPILE_ERROR: -2,
}


class SampleStatus(Enum):
    JUDGED = "judged"
    INFRA_ERROR = "infra_error"  # the sandbox failed on every retry: not a verdict on the code


@dataclass(frozen=True)
class SampleResult:
    """Verdicts of one program on one problem's tests.

    ``verdicts`` follows TACO's shapes: one entry per test; a single COMPILE_ERROR for a program
    that does not compile; shorter than the suite when evaluation stopped early at a failure.
    """

    status: SampleStatus
    verdicts: tuple[Verdict, ...]
    stopped_early: bool = False
    detail: str = ""  # first error text, for humans
    # Seconds the program's runs took inside the sandbox (all tests and retries), for reports only.
    program_seconds: float = field(default=0.0, compare=False)

    def with_program_seconds(self, seconds: float) -> SampleResult:
        return replace(self, program_seconds=seconds)

    @property
    def passed(self) -> bool:
        """TACO's rule: every entry > 0 (so an empty list passes)."""
        return self.status is SampleStatus.JUDGED and all(v.passed for v in self.verdicts)

    def taco(self) -> list[bool | int]:
        return [v.taco for v in self.verdicts]


def result_record(result: SampleResult) -> dict:
    """A JSON-ready form of *result* for the journal and the verdict cache."""
    record: dict = {"status": result.status.value, "verdicts": [v.value for v in result.verdicts]}
    if result.stopped_early:
        record["stopped_early"] = True
    if result.detail:
        record["detail"] = result.detail[:2000]
    return record


def result_from_record(record: dict) -> SampleResult:
    """Inverse of ``result_record``; raises ValueError/KeyError/TypeError on a damaged record."""
    return SampleResult(
        status=SampleStatus(record["status"]),
        verdicts=tuple(Verdict(v) for v in record["verdicts"]),
        stopped_early=bool(record.get("stopped_early", False)),
        detail=str(record.get("detail", "")),
    )
