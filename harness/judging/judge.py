"""Turning what the sandbox reports into TACO verdicts (pure: no I/O).

The sandbox reports, per test, what the program did; this module decides what that means.  The
stdin retry procedure and the all-``returncode:1`` second pass are run in the sandbox (they need no
expected output); the comparison, the early-exit rule and the final TACO shapes live here, and so
does the rule that tells a timeout of the program from one of a busy machine (``is_contended``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from harness.data.special_judge import SpecialJudge
from harness.data.testcases import Mode, TestSuite
from harness.judging import corrected, failures
from harness.judging.compare import compare_call_result, compare_stdout
from harness.judging.verdicts import (
    DIFFERENCE_TEXT_LIMIT,
    CorrectedVerdicts,
    Difference,
    FirstFailure,
    SampleResult,
    SampleStatus,
    Verdict,
    clip,
)
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

# A timeout is *contended* when the run lost at least this share of its limit waiting for a CPU.
# Measured on the 2-core CI machine (README, "Contended timeouts"): an endless loop alone waits 0.1-0.8%
# of a 4 s limit; two evaluations of --workers 4 side by side make a 2 s program wait 60-68% of it.
# 10% is far above the noise, and a program that needs more than 90% of the limit on an idle machine
# is at the limit anyway (TACO's own 4 s wall clock includes ~0.2 s of interpreter start-up that these
# runs do not pay).
CONTENDED_SHARE = 0.10


def seconds_lost_waiting(timed_out: TimedOut) -> float:
    """How much of a timed-out run the program spent waiting for a CPU its sandbox was entitled to.

    The run waited on a run queue (schedstat's run delay, summed over the program's tasks) and its
    cgroup may have been throttled; but waiting behind its own threads or processes, or behind the
    runner draining its output, in a sandbox of one CPU is its own doing.  So the wait counts only
    up to what the sandbox fell short of one whole CPU: the run's wall time less the program's and
    the runner's CPU time.  A program that sleeps waits for nothing; one that loops alone gets its
    CPU; neither loses time here.
    """
    waited = (timed_out.wait_ms or 0.0) + (timed_out.throttled_ms or 0.0)
    if timed_out.cpu_ms is not None:
        shortfall = timed_out.wall_ms - timed_out.cpu_ms - (timed_out.runner_cpu_ms or 0.0)
        waited = min(waited, max(0.0, shortfall))
    return waited / 1000


def is_contended(timed_out: TimedOut | None, limit_s: float) -> bool:
    """Whether a timeout is the machine's rather than the program's (``CONTENDED_SHARE``)."""
    return timed_out is not None and seconds_lost_waiting(timed_out) >= CONTENDED_SHARE * limit_s


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


def corrected_entry(
    mode: Mode, outcome: Outcome, expected: Any, taco: tuple[Verdict, str], special: SpecialJudge
) -> tuple[tuple[Verdict, str], Difference | None]:
    """The corrected judge's verdict and label for one test whose TACO entry is *taco*, and how the
    two differ (test index and pass left for the caller to fill).  Only an output that was produced
    (printed, or returned) is judged again; every other outcome keeps TACO's verdict."""
    if mode is Mode.STDIN and isinstance(outcome, Output):
        want = expected_text(expected)
        ok = corrected.accepts_stdout(outcome.text, want, special)
        reason = corrected.stdout_reason(outcome.text, want, special)
        shown = outcome.text
    elif mode is Mode.CALL and isinstance(outcome, ReturnValue):
        try:
            value = valuecodec.decode(outcome.encoded)
            ok = corrected.accepts_call(value, expected, special)
        except Exception:
            return (Verdict.COMPARE_ERROR, Verdict.COMPARE_ERROR.value), None
        reason = corrected.call_reason(value, expected, special)
        shown, want = repr(value), repr(expected)
    else:
        return taco, None
    entry = (Verdict.PASSED, "passed") if ok else (Verdict.WRONG_ANSWER, "false")
    if reason is None or ok == taco[0].passed:
        return entry, None
    limit = DIFFERENCE_TEXT_LIMIT
    return entry, Difference(reason, 0, 1, clip(shown, limit), clip(want, limit))


@dataclass
class SampleJudgement:
    """Accumulates the runner's events for one sample and says when evaluation can stop.

    Early exit (TACO_SEMANTICS §8): a failure settles the sample unless it is a ``returncode:1``
    failure, which the second pass may still turn into a pass; so we stop at the first other
    failure, or as soon as a ``returncode:1`` failure sits beside any other verdict.

    With ``special_judge`` set (the problem's flag; None: the corrected judge is off) the corrected
    judge (``corrected``) judges the same outcomes: the sample stops only when both judges have
    decided it, and each judge's list ends where its own early exit would have ended it, so TACO's
    verdicts are the same as without the corrected judge.  The rule is the same for both: only an
    output's comparison differs, never a ``returncode:1`` label that decides TACO's second pass.

    A contended timeout (``is_contended``: in a run, a TACO retry or the compile step) marks the
    result ``contended`` and changes nothing else: the verdicts are TACO's for what the runs did, and
    whoever runs the sample (the evaluation session) decides what a contended result is worth.
    """

    suite: TestSuite
    early_exit: bool
    timeout_s: float = 4.0  # the per-run limit the runs had (the contention rule is relative to it)
    compiled: CompileStatus | None = None
    first: list[tuple[Verdict, str]] = field(default_factory=list)
    second: list[tuple[Verdict, str]] = field(default_factory=list)
    crashed: bool = False
    detail: str = ""
    contended: bool = False
    # The sample as written: the first failure's line numbers are mapped to it (None: left as they ran).
    code: str | None = None
    # First failures, for people (``failures``): of the compile step, of each pass (by pass number),
    # and the test where the checker died.  They never change a verdict.
    compile_failure: FirstFailure | None = None
    test_failures: dict[int, FirstFailure] = field(default_factory=dict)
    crash_failure: FirstFailure | None = None
    # The corrected judge: the problem's flag (None: off), its entries of each pass, the first
    # difference from TACO in each pass, and how long each judge's lists are when it decided.
    special_judge: SpecialJudge | None = None
    corrected_first: list[tuple[Verdict, str]] = field(default_factory=list)
    corrected_second: list[tuple[Verdict, str]] = field(default_factory=list)
    differences: dict[int, Difference] = field(default_factory=dict)
    taco_decided: tuple[int, int] | None = None  # (pass, entries) when TACO's early exit would stop
    corrected_decided: tuple[int, int] | None = None
    corrected_crashed: bool = False  # the checker died before the corrected judge had decided

    @property
    def judges_corrected(self) -> bool:
        """Whether the corrected judge compares this sample's outputs (on, and not a problem for a checker)."""
        return self.special_judge is not None and not self.special_judge.needs_checker

    def on_compiled(self, status: CompileStatus, error: str, timed_out: TimedOut | None = None) -> None:
        self.compiled = status
        self.detail = error
        self.contended = self.contended or is_contended(timed_out, self.timeout_s)
        if status is not CompileStatus.OK and self.compile_failure is None:
            died = status is CompileStatus.DIED
            self.compile_failure = failures.compile_failure(error, self.suite.mode, self.code, died)

    def on_test(self, pass_number: int, outcome: Outcome, retry_timeout: TimedOut | None = None) -> bool:
        """Record one test; return True when the verdict is settled and the rest can be skipped."""
        if is_contended(retry_timeout, self.timeout_s) or (
            isinstance(outcome, TimedOut) and is_contended(outcome, self.timeout_s)
        ):
            self.contended = True
        if isinstance(outcome, CheckerDied):
            # It dies for a judge still deciding: one that had decided stopped before it (early exit).
            if self.taco_decided is None:
                self.crashed = True
                if self.crash_failure is None:
                    self.crash_failure = failures.crash_failure(len(self.first) if pass_number == 1 else len(self.second))
            if self.corrected_decided is None:
                self.corrected_crashed = True
            return True
        index = len(self.first) if pass_number == 1 else len(self.second)
        expected = self.suite.cases[index].output
        if self.suite.mode is Mode.STDIN:
            entry = stdin_verdict(outcome, expected)
        else:
            verdict = call_verdict(outcome, expected)
            entry = (verdict, verdict.value)
        taco_open = self.taco_decided is None
        if taco_open and entry[0] is Verdict.RUNTIME_ERROR and not self.detail:
            self.detail = _error_text(outcome)
        if taco_open and not entry[0].passed and pass_number not in self.test_failures:
            case, mode = self.suite.cases[index], self.suite.mode
            self.test_failures[pass_number] = failures.failure_of_test(
                entry[0], outcome, case, mode, index, pass_number, self.code, self.timeout_s
            )
        entries = self.first if pass_number == 1 else self.second
        entries.append(entry)
        if taco_open and self.early_exit and self._settled(pass_number, entries):
            self.taco_decided = (pass_number, len(entries))
        if self.judges_corrected:
            assert self.special_judge is not None
            centry, difference = corrected_entry(self.suite.mode, outcome, expected, entry, self.special_judge)
            centries = self.corrected_first if pass_number == 1 else self.corrected_second
            centries.append(centry)
            if difference is not None and pass_number not in self.differences:
                self.differences[pass_number] = replace(difference, test=index, pass_number=pass_number)
            if self.corrected_decided is None and self.early_exit and self._settled(pass_number, centries):
                self.corrected_decided = (pass_number, len(centries))
            decided = self.taco_decided is not None and self.corrected_decided is not None
        else:
            decided = self.taco_decided is not None
        return self.early_exit and decided

    def _settled(self, pass_number: int, entries: list[tuple[Verdict, str]]) -> bool:
        """Whether a judge whose entries of this pass are *entries* has decided the sample (the labels
        that decide TACO's second pass are the same for both judges: those of ``first``)."""
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
        """The sample's verdicts (``_verdicts``), with the failure that decided them (``first_failure``)
        and the corrected judge's verdicts (``corrected_verdicts``)."""
        taco = replace(self._verdicts(stopped_early), first_failure=self.first_failure())
        return replace(taco, corrected=self.corrected_verdicts(taco, stopped_early))

    def data_broken(self) -> SampleResult:
        """TACO's result when the test data cannot be joined (its checker dies: ``[-1]*n``); both
        judges give it, as neither compared anything."""
        crashed = (Verdict.CRASHED,) * len(self.suite)
        return SampleResult(SampleStatus.JUDGED, crashed, detail="test data cannot be joined", corrected=self._same_as(crashed))

    def _same_as(self, verdicts: tuple[Verdict, ...]) -> CorrectedVerdicts | None:
        if self.special_judge is None:
            return None
        if self.special_judge.needs_checker:
            return CorrectedVerdicts(needs_checker=True)
        return CorrectedVerdicts(verdicts)

    def corrected_verdicts(self, taco: SampleResult, stopped_early: bool) -> CorrectedVerdicts | None:
        """The corrected judge's verdicts (None when it is off): TACO's where nothing was compared
        (compile step, a dead checker), else its own entries of the pass that counts, cut where its
        own early exit would have stopped."""
        if not self.judges_corrected or self.compiled in (CompileStatus.ERROR, CompileStatus.DIED):
            return self._same_as(taco.verdicts)
        if self.corrected_crashed:
            return CorrectedVerdicts((Verdict.CRASHED,) * len(self.suite))
        second = bool(self.second)
        entries = self.corrected_second if second else self.corrected_first
        verdicts = tuple(v for v, _ in entries[: _cut(self.corrected_decided, second, len(entries))])
        result = CorrectedVerdicts(verdicts, stopped_early=self.corrected_decided is not None)
        difference = self.differences.get(2 if second else 1)
        if difference is not None and result.passed != taco.passed:
            result = replace(result, difference=difference)
        return result

    def first_failure(self) -> FirstFailure | None:
        """The compile step's failure, or the test where the checker died, or else the first failing
        test of the pass whose verdicts count (TACO's second pass, when it ran); None when none failed."""
        if self.compiled is CompileStatus.ERROR or self.compiled is CompileStatus.DIED:
            return self.compile_failure
        if self.crashed:
            return self.crash_failure
        return self.test_failures.get(2 if self.second else 1)

    def _verdicts(self, stopped_early: bool) -> SampleResult:
        n = len(self.suite)
        if self.compiled is CompileStatus.ERROR:
            return SampleResult(SampleStatus.JUDGED, (Verdict.COMPILE_ERROR,), detail=self.detail, contended=self.contended)
        if self.compiled is CompileStatus.DIED or self.crashed:
            return SampleResult(
                SampleStatus.JUDGED, (Verdict.CRASHED,) * n, detail=self.detail or "checker died", contended=self.contended
            )
        entries = self.second if self.second else self.first
        # Cut where TACO's own early exit stopped (the runs the corrected judge still needed came
        # after), and stopped early whenever it decided: what TACO alone would have sent a stop for.
        verdicts = tuple(v for v, _ in entries[: _cut(self.taco_decided, bool(self.second), len(entries))])
        early = stopped_early or self.taco_decided is not None
        return SampleResult(SampleStatus.JUDGED, verdicts, stopped_early=early, detail=self.detail, contended=self.contended)


def _cut(decided: tuple[int, int] | None, second: bool, length: int) -> int:
    """How many entries of the pass that counts a judge keeps: up to where it decided the sample."""
    if decided is None or decided[0] != (2 if second else 1):
        return length  # undecided, or decided in a pass whose entries do not count (no second pass ran then)
    return decided[1]


def _error_text(outcome: Outcome) -> str:
    """What a failed run said about its failure, for humans: its stderr, or the exception a call raised."""
    if isinstance(outcome, NonZeroExit):
        return outcome.stderr_tail
    if isinstance(outcome, Raised):
        return outcome.exception
    return ""
