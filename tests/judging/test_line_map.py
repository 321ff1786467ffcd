"""Lines of the programs TACO runs mapped back to the sample as written (programs.line_map), the
traceback rewriting (failures.sample_error), and the first failure a judgement keeps (pure: no sandbox)."""

from __future__ import annotations

import random
import re

import pytest

from harness.data.testcases import parse_input_output
from harness.judging.failures import SAMPLE_FILE, TACO_FILE, sample_error
from harness.judging.judge import SampleJudgement
from harness.judging.programs import HEADER, RunProgram, call_program, line_map, sample_line, stdin_programs
from harness.judging.verdicts import FirstFailure, SampleResult, SampleStatus, Verdict, result_from_record, result_record
from sandbox_image.taco_runner.protocol import CompileStatus, NonZeroExit, Output, Raised, ReturnValue

LINE_BREAK = re.compile(r"\r\n|\r|\n")
HEADER_LINES = HEADER.count("\n")


def program_text(code: str, program: RunProgram) -> str:
    programs = stdin_programs(code)
    return {
        RunProgram.EXEC: programs.exec_program,
        RunProgram.COMPILE: programs.compile_program,
        RunProgram.SECOND: programs.second_program,
        RunProgram.CALL: call_program(code),
    }[program]


LINES = [
    "import os",
    "from math import *",
    "\tfrom heapq import *",
    "x = 1",
    "",
    "\tprint(x)",
    "  y = 2",
    "import re",
    "from a import b",
    "s = 'a\rb'",
    "z = 3\r",
    "def f():",
    "    return 1",
    "# comment",
]


def test_every_mapped_line_holds_that_line_of_the_sample():
    rng = random.Random(17)
    for _ in range(1500):
        code = "\n".join(rng.choice(LINES) for _ in range(rng.randint(0, 9))) + rng.choice(["", "\n"])
        sample_lines = LINE_BREAK.split(code)
        for program in RunProgram:
            text_lines = LINE_BREAK.split(program_text(code, program))
            lines = line_map(code, program)
            mapped = []
            for number, text in enumerate(text_lines, 1):
                origin = lines.sample_line(number)
                if origin is not None:
                    # TACO indents the body of `def code():` and strips tabs from hoisted `import *` lines.
                    assert text.lstrip("\t") == sample_lines[origin - 1].lstrip("\t"), (code, program, number)
                    mapped.append(origin)
            if program in (RunProgram.EXEC, RunProgram.CALL):
                # Every line of the sample is in the program once, in order (a last empty line may be TACO's).
                assert mapped in (list(range(1, len(sample_lines) + 1)), list(range(1, len(sample_lines)))), (code, program)


def test_two_line_sample_raises_at_its_own_line():
    code = "x = int(input())\nprint([][x])\n"
    # The run program has TACO's header and stream aliases first: its line 2 is far below.
    exec_lines = stdin_programs(code).exec_program.split("\n")
    assert exec_lines.index("print([][x])") + 1 == HEADER_LINES + 5
    assert sample_line(code, RunProgram.EXEC, HEADER_LINES + 5) == 2
    assert sample_line(code, RunProgram.EXEC, 1) is None  # TACO's `import sys`
    # Leading imports stay above the header; the second pass wraps the rest in def code().
    code = "import sys\nfrom math import *\nn = 1\nprint(n / 0)\n"
    assert sample_line(code, RunProgram.EXEC, 1) == 1
    assert sample_line(code, RunProgram.EXEC, 2) == 2
    assert sample_line(code, RunProgram.EXEC, 2 + HEADER_LINES + 5) == 4
    second = stdin_programs(code).second_program.split("\n")
    assert sample_line(code, RunProgram.SECOND, second.index("\tprint(n / 0)") + 1) == 4
    assert sample_line(code, RunProgram.SECOND, second.index("code()") + 1) is None
    assert sample_line(code, RunProgram.CALL, HEADER_LINES + 3) == 3


def test_tracebacks_and_syntax_errors_are_rewritten():
    code = "x = 1\ny = [][1]\n"
    run_line = HEADER_LINES + 5
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/opt/taco-runner/taco_runner/interpreter.py", line 146, in run_program_child\n'
        "    exec(code, main.__dict__)\n"
        f'  File "/tmp/work/solution.py", line {run_line}, in <module>\n'
        "    y = [][1]\n"
        "        ~~^^^\n"
        "IndexError: list index out of range\n"
    )
    shown = sample_error(traceback, code, RunProgram.EXEC)
    assert shown == (
        "Traceback (most recent call last):\n"
        f'  File "{SAMPLE_FILE}", line 2, in <module>\n'
        "    y = [][1]\n"
        "        ~~^^^\n"
        "IndexError: list index out of range\n"
    )
    second = f'  File "/tmp/work/solution.py", line {run_line + 3}, in <module>\n    code()\n'
    assert f'File "{TACO_FILE}", line {run_line + 3}' in sample_error(second, code, RunProgram.SECOND)
    compiled = f"SyntaxError: '(' was never closed (<string>, line {HEADER_LINES + 5})"
    assert sample_error(compiled, "print(\n", RunProgram.COMPILE) == f"SyntaxError: '(' was never closed ({SAMPLE_FILE}, line 1)"
    assert sample_error(compiled, None, RunProgram.COMPILE) == compiled  # the code unknown: left as it ran


STDIN_SUITE = parse_input_output({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
CALL_SUITE = parse_input_output({"fn_name": "f", "inputs": [[1], [2]], "outputs": [[2], [3]]})


def judged(suite, code, events, compiled=CompileStatus.OK, error=""):
    judgement = SampleJudgement(suite, early_exit=True, code=code)
    judgement.on_compiled(compiled, error)
    for pass_number, outcome in events:
        if judgement.on_test(pass_number, outcome):
            break
    return judgement.result(stopped_early=False)


def test_judgement_keeps_the_first_failing_test_without_changing_a_verdict():
    wrong = judged(STDIN_SUITE, "print(3)\n", [(1, Output("3\n")), (1, Output("3\n"))])
    assert wrong.taco() == [True, False]
    assert wrong.first_failure == FirstFailure(Verdict.WRONG_ANSWER, 1, 1, "3 4\n", "7\n", "3\n", "")
    # Every test exits 1: TACO's second pass decides, so its failure is the one kept.
    code = "x = 1\ny = [][1]\n"
    tail = '  File "/tmp/work/solution.py", line {}, in <module>\n    y = [][1]\nIndexError: list index out of range\n'
    first_pass = NonZeroExit(1, tail.format(HEADER_LINES + 5))
    second = stdin_programs(code).second_program.split("\n").index("\ty = [][1]") + 1
    result = judged(STDIN_SUITE, code, [(1, first_pass), (1, first_pass), (2, NonZeroExit(1, tail.format(second)))])
    assert result.taco() == [-3]
    failure = result.first_failure
    assert failure is not None and (failure.verdict, failure.test, failure.pass_number) == (Verdict.RUNTIME_ERROR, 0, 2)
    assert f'File "{SAMPLE_FILE}", line 2, in <module>' in failure.error
    # The same events without the code: the same verdicts; the error keeps the run program's lines.
    unmapped = SampleJudgement(STDIN_SUITE, early_exit=True)
    unmapped.on_compiled(CompileStatus.OK, "")
    for event in [(1, first_pass), (1, first_pass), (2, NonZeroExit(1, tail.format(second)))]:
        unmapped.on_test(*event)
    assert unmapped.result(False) == result and f"line {second}" in unmapped.result(False).first_failure.error
    # Call-based: the returned value as Python writes it; the exception as the checker reports it.
    call = judged(CALL_SUITE, "def f(x):\n    return x\n", [(1, ReturnValue(1))])
    assert call.first_failure == FirstFailure(Verdict.WRONG_ANSWER, 0, 1, "[1]", "[2]", "1", "")
    raised = judged(CALL_SUITE, "def f(x):\n    return x[0]\n", [(1, Raised("TypeError: 'int' object is not subscriptable"))])
    assert raised.first_failure.error == "TypeError: 'int' object is not subscriptable"
    # The compile step: its syntax error, at the sample's line.
    error = f"SyntaxError: invalid syntax (<string>, line {HEADER_LINES + 2})"
    compiled = judged(CALL_SUITE, "def f(x):\n    return x +\n", [], CompileStatus.ERROR, error)
    assert compiled.taco() == [-2] and compiled.first_failure.test is None
    assert compiled.first_failure.error == f"SyntaxError: invalid syntax ({SAMPLE_FILE}, line 2)"
    passed = judged(STDIN_SUITE, "print(3)\n", [(1, Output("3\n")), (1, Output("7\n"))])
    assert passed.passed and passed.first_failure is None


def test_first_failure_round_trips_through_the_journal_record_and_is_not_a_verdict():
    failure = FirstFailure(Verdict.RUNTIME_ERROR, 3, 2, "in\udcff", "out", "", 'File "<sample>", line 2')
    result = SampleResult(SampleStatus.JUDGED, (Verdict.PASSED, Verdict.RUNTIME_ERROR), first_failure=failure)
    back = result_from_record(result_record(result))
    assert back == result and back.first_failure == failure
    assert result == SampleResult(SampleStatus.JUDGED, (Verdict.PASSED, Verdict.RUNTIME_ERROR))  # never part of equality
    compile_error = SampleResult(SampleStatus.JUDGED, (Verdict.COMPILE_ERROR,), first_failure=FirstFailure(Verdict.COMPILE_ERROR))
    assert result_from_record(result_record(compile_error)).first_failure == FirstFailure(Verdict.COMPILE_ERROR)
    assert result_from_record({"status": "judged", "verdicts": ["passed"]}).first_failure is None  # an older record
    with pytest.raises((ValueError, KeyError, TypeError)):
        result_from_record({"status": "judged", "verdicts": [], "first_failure": {"test": 1}})
