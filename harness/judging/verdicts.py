"""Per-test verdicts, by meaning, each with the value TACO writes for it in ``results.json``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from harness.judging.corrected import Reason


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


# Characters kept of each text of a ``FirstFailure`` (the input, the expected output, the output, the error).
FAILURE_TEXT_LIMIT = 2000


def clip(text: str, limit: int = FAILURE_TEXT_LIMIT) -> str:
    """*text* cut to *limit* characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit:,} more characters]"


@dataclass(frozen=True)
class FirstFailure:
    """A sample's first failing test, for people: what went in, what was expected, what came out.

    ``test`` is the test's index in the suite (0-based); None for the compile step (``COMPILE_ERROR``)
    and for a checker that died while compiling.  ``pass_number`` 2 is TACO's second pass (the
    sample wrapped in ``def code():``, run when every test exited with status 1).  ``output`` is
    what the program printed (stdin) or returned (``repr``, call-based); ``error`` is its traceback
    or syntax error with the line numbers of the sample as written (``programs.line_map``), or what
    happened instead (a timeout, output over the limit).  Each text is cut by ``clip``.
    """

    verdict: Verdict
    test: int | None = None
    pass_number: int = 1
    input: str = ""
    expected: str = ""
    output: str = ""
    error: str = ""

    def record(self) -> dict:
        record: dict = {"verdict": self.verdict.value, "test": self.test}
        if self.pass_number != 1:
            record["pass"] = self.pass_number
        for key in ("input", "expected", "output", "error"):
            if getattr(self, key):
                record[key] = getattr(self, key)
        return record


def failure_from_record(record: object) -> FirstFailure | None:
    """Inverse of ``FirstFailure.record`` (None stays None); raises ValueError/KeyError/TypeError."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise TypeError(f"a first failure should be an object, got {type(record).__name__}")
    test = record.get("test")
    if test is not None and (isinstance(test, bool) or not isinstance(test, int)):
        raise TypeError(f"a first failure's test should be an index, got {test!r:.40}")
    return FirstFailure(
        verdict=Verdict(record["verdict"]),
        test=test,
        pass_number=int(record.get("pass", 1)),
        input=str(record.get("input", "")),
        expected=str(record.get("expected", "")),
        output=str(record.get("output", "")),
        error=str(record.get("error", "")),
    )


# Characters kept of the output and expected text of a ``Difference`` (a report shows a few of them).
DIFFERENCE_TEXT_LIMIT = 300


@dataclass(frozen=True)
class Difference:
    """The first test where the two judges differ on a sample whose verdicts they disagree on."""

    reason: Reason
    test: int
    pass_number: int = 1
    output: str = ""  # what the program printed, or the value it returned (``repr``), clipped
    expected: str = ""

    def record(self) -> dict:
        return {
            "reason": self.reason.value,
            "test": self.test,
            "pass": self.pass_number,
            "output": self.output,
            "expected": self.expected,
        }


def difference_from_record(record: object) -> Difference | None:
    if record is None:
        return None
    if not isinstance(record, dict):
        raise TypeError(f"a difference should be an object, got {type(record).__name__}")
    return Difference(
        Reason(record["reason"]),
        int(record["test"]),
        int(record.get("pass", 1)),
        str(record.get("output", "")),
        str(record.get("expected", "")),
    )


@dataclass(frozen=True)
class CorrectedVerdicts:
    """The corrected judge's verdicts on a sample (``harness.judging.corrected``), from the same runs
    as TACO's.  ``needs_checker``: the problem has several valid outputs, so no comparison judges it
    (no verdicts; left out of the corrected pass@k).  ``difference``: when the two judges disagree
    on the sample, the first test where they differ and why."""

    verdicts: tuple[Verdict, ...] = ()
    stopped_early: bool = False
    needs_checker: bool = False
    difference: Difference | None = None

    @property
    def passed(self) -> bool:
        return not self.needs_checker and all(v.passed for v in self.verdicts)

    def taco(self) -> list[bool | int]:
        return [v.taco for v in self.verdicts]

    def record(self) -> dict:
        if self.needs_checker:
            return {"needs_checker": True}
        record: dict = {"verdicts": [v.value for v in self.verdicts]}
        if self.stopped_early:
            record["stopped_early"] = True
        if self.difference is not None:
            record["difference"] = self.difference.record()
        return record


def corrected_from_record(record: object) -> CorrectedVerdicts | None:
    if record is None:
        return None
    if not isinstance(record, dict):
        raise TypeError(f"corrected verdicts should be an object, got {type(record).__name__}")
    if record.get("needs_checker"):
        return CorrectedVerdicts(needs_checker=True)
    return CorrectedVerdicts(
        verdicts=tuple(Verdict(v) for v in record["verdicts"]),
        stopped_early=bool(record.get("stopped_early", False)),
        difference=difference_from_record(record.get("difference")),
    )


class SampleStatus(Enum):
    JUDGED = "judged"
    INFRA_ERROR = "infra_error"  # the sandbox failed on every retry: not a verdict on the code


@dataclass(frozen=True)
class SampleResult:
    """Verdicts of one program on one problem's tests.

    ``verdicts`` follows TACO's shapes: one entry per test; a single COMPILE_ERROR for a program
    that does not compile; shorter than the suite when evaluation stopped early at a failure.

    ``contended`` says that some run of this sample ran past its deadline while it waited for a CPU
    for a material part of the limit (``judge.is_contended``): its verdicts may be the machine's, not
    the program's, so such a result is run again and never journaled or cached.  A sample that
    stays contended on every attempt is not scored (``SampleStatus.INFRA_ERROR``, ``contended``
    kept true).
    """

    status: SampleStatus
    verdicts: tuple[Verdict, ...]
    stopped_early: bool = False
    detail: str = ""  # first error text, for humans
    contended: bool = False
    # Seconds the program's runs took inside the sandbox (all tests and retries), for reports only.
    program_seconds: float = field(default=0.0, compare=False)
    # Attempts of this job that ended contended and were run again before this result (bookkeeping).
    contended_reruns: int = field(default=0, compare=False)
    # The first failing test (input, expected, output, or the error with the sample's line numbers),
    # for people: never part of a verdict.
    first_failure: FirstFailure | None = field(default=None, compare=False)
    # The machine whose sandbox produced the verdicts, when a cluster ran it (harness.cluster); empty on
    # a single machine.  Bookkeeping: never part of a verdict.
    host: str = field(default="", compare=False)
    # The corrected judge's verdicts from the same runs; None when it did not judge (turned off, or
    # not scored).  Not compared: TACO's verdicts are the result's identity.
    corrected: CorrectedVerdicts | None = field(default=None, compare=False)

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
    if result.first_failure is not None:
        record["first_failure"] = result.first_failure.record()
    if result.host:
        record["host"] = result.host
    if result.corrected is not None:
        record["corrected"] = result.corrected.record()
    return record


def result_from_record(record: dict) -> SampleResult:
    """Inverse of ``result_record``; raises ValueError/KeyError/TypeError on a damaged record."""
    return SampleResult(
        status=SampleStatus(record["status"]),
        verdicts=tuple(Verdict(v) for v in record["verdicts"]),
        stopped_early=bool(record.get("stopped_early", False)),
        detail=str(record.get("detail", "")),
        first_failure=failure_from_record(record.get("first_failure")),
        host=str(record.get("host", "")),
        corrected=corrected_from_record(record.get("corrected")),
    )
