"""A sample's first failing test, for people (``verdicts.FirstFailure``): its input, the expected
output and what the program printed or returned, or its traceback or syntax error with the line
numbers of the sample as written.  Built by ``judge.SampleJudgement`` where the verdict is decided,
from what the runner reported; it never changes a verdict.

Line numbers.  TACO runs a rewritten program (its import header and stream aliases before the
sample's first statement; for the compile step and the second pass, the sample wrapped in
``def code():``), so a traceback's ``line 20`` of a two-line sample is its line 2.  Frames of the
program are rewritten as ``File "<sample>", line N`` (``programs.line_map``); a line of TACO's own
text is shown as ``File "<TACO's code>", line N`` (the line of the program that ran); the runner's
own frame (``exec(code, ...)``) is left out.
"""

from __future__ import annotations

import re
from typing import Any

from harness.data.testcases import Mode, TestCase
from harness.judging.programs import RunProgram, line_map
from harness.judging.verdicts import FirstFailure, Verdict, clip
from sandbox_image.taco_runner import valuecodec
from sandbox_image.taco_runner.protocol import (
    NonZeroExit,
    Outcome,
    Output,
    OutputOverflow,
    Raised,
    ReturnValue,
    RuntimeFailure,
    TimedOut,
    Uncomparable,
)

SAMPLE_FILE = "<sample>"
TACO_FILE = "<TACO's code>"

# The runner's frame at the bottom of every traceback (interpreter.py's `exec(code, ...)`), with its
# source and caret lines.
_RUNNER_FRAME = re.compile(r'^  File "[^"\n]*/taco_runner/[^"\n]*", line \d+[^\n]*\n(?:    [^\n]*\n)*', re.MULTILINE)
# A frame of the program that ran (written to solution.py in the sandbox).
_PROGRAM_FRAME = re.compile(r'File "[^"\n]*\bsolution\.py", line (\d+)')
# Where a compile step's SyntaxError points (the program is exec'd from a string).
_COMPILED_AT = re.compile(r"\(<string>, line (\d+)\)")


def sample_error(text: str, code: str | None, program: RunProgram) -> str:
    """*text* (a traceback, or a compile step's error) with the line numbers of *program*, built from
    the sample *code*, turned into the sample's own; unchanged where *code* is unknown (None)."""
    text = _RUNNER_FRAME.sub("", text)
    if code is None:
        return text
    lines = line_map(code, program)

    def frame(match: re.Match[str]) -> str:
        line = int(match.group(1))
        mapped = lines.sample_line(line)
        return f'File "{SAMPLE_FILE}", line {mapped}' if mapped is not None else f'File "{TACO_FILE}", line {line}'

    def compiled_at(match: re.Match[str]) -> str:
        line = int(match.group(1))
        mapped = lines.sample_line(line)
        return f"({SAMPLE_FILE}, line {mapped})" if mapped is not None else f"({TACO_FILE}, line {line})"

    return _COMPILED_AT.sub(compiled_at, _PROGRAM_FRAME.sub(frame, text))


def _shown(value: Any, mode: Mode) -> str:
    """A test's input or expected output as text: stdin text as TACO joins it, a call's values as Python writes them."""
    try:
        if mode is Mode.STDIN:
            if isinstance(value, str):
                return value
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return "\n".join(value)
        return repr(value)
    except Exception:  # a value whose repr raises: display only
        return f"<{type(value).__name__}>"


def _returned(outcome: ReturnValue) -> str:
    try:
        return repr(valuecodec.decode(outcome.encoded))
    except Exception:
        return repr(outcome.encoded)


def _what_happened(outcome: Outcome, verdict: Verdict, code: str | None, program: RunProgram, timeout_s: float) -> str:
    if isinstance(outcome, NonZeroExit):
        return sample_error(outcome.stderr_tail, code, program) or f"exited with status {outcome.returncode}"
    if isinstance(outcome, Raised):
        return outcome.exception  # a call's exception: "TypeName: message" (the runner sends no traceback)
    if isinstance(outcome, RuntimeFailure | Uncomparable):
        return outcome.reason
    if isinstance(outcome, TimedOut):
        return f"timed out: ran past the {timeout_s:g} s limit (wall clock)"
    if isinstance(outcome, OutputOverflow):
        return "more output than the limit (it cannot be the answer)"
    if isinstance(outcome, Output) and outcome.from_output_file:
        return "read from output.txt (TACO's last retry, after the program exited non-zero on stdin)"
    if verdict is Verdict.COMPARE_ERROR:
        return "comparing the returned value with the expected one raised (TACO scores this -1)"
    return ""


def failure_of_test(
    verdict: Verdict,
    outcome: Outcome,
    case: TestCase,
    mode: Mode,
    test: int,
    pass_number: int,
    code: str | None,
    timeout_s: float,
) -> FirstFailure:
    """The failure of test *test* (its verdict *verdict*, what the runner reported as *outcome*)."""
    stdin_program = RunProgram.SECOND if pass_number == 2 else RunProgram.EXEC
    program = RunProgram.CALL if mode is Mode.CALL else stdin_program
    output = ""
    if isinstance(outcome, Output):
        output = outcome.text
    elif isinstance(outcome, ReturnValue):
        output = _returned(outcome)
    return FirstFailure(
        verdict=verdict,
        test=test,
        pass_number=pass_number,
        input=clip(_shown(case.input, mode)),
        expected=clip(_shown(case.output, mode)),
        output=clip(output),
        error=clip(_what_happened(outcome, verdict, code, program, timeout_s)),
    )


def compile_failure(error: str, mode: Mode, code: str | None, died: bool) -> FirstFailure:
    """TACO's compile step failed (``[-2]``), or its checker died (``[-1]`` for every test)."""
    program = RunProgram.CALL if mode is Mode.CALL else RunProgram.COMPILE
    verdict = Verdict.CRASHED if died else Verdict.COMPILE_ERROR
    return FirstFailure(verdict=verdict, test=None, error=clip(sample_error(error, code, program)))


def crash_failure(test: int) -> FirstFailure:
    """The checker process died during test *test* (TACO's ``[-1]`` for every test)."""
    return FirstFailure(verdict=Verdict.CRASHED, test=test, error="the checker process died (TACO scores every test -1)")
