"""The corrected judge (harness.judging.corrected) beside TACO's, on hand-made cases of every kind in
both directions, on real rows of the TACO test split where TACO's quirks flip a verdict, and inside
SampleJudgement: one set of runs, both judges, early exit safe for both, TACO's verdicts unchanged."""

from __future__ import annotations

import json
import random

import pytest

from harness.data import testcases
from harness.data.problems import Problem, load_problems
from harness.data.special_judge import SpecialJudge, from_flags, question_digest, special_judge_of, taco_test_table
from harness.data.testcases import Mode
from harness.judging.compare import compare_call_result, compare_stdout
from harness.judging.corrected import Reason, accepts_call, accepts_stdout, call_reason, stdout_reason
from harness.judging.judge import SampleJudgement
from harness.judging.verdicts import SampleStatus, Verdict, result_from_record, result_record
from harness.scoring.metrics import compute_metrics
from sandbox_image.taco_runner import valuecodec
from sandbox_image.taco_runner.protocol import CheckerDied, CompileStatus, NonZeroExit, Output, ReturnValue, TimedOut
from tests.conftest import shared_file

NONE, CASE, FLOAT, SEVERAL = (
    SpecialJudge.NONE,
    SpecialJudge.CASE_INSENSITIVE,
    SpecialJudge.FLOAT_TOLERANCE,
    SpecialJudge.SEVERAL_VALID_OUTPUTS,
)

# (output, expected, flag, TACO accepts, corrected accepts, reason when they differ)
STDIN_CASES = [
    # agreement
    ("3\n", "3\n", NONE, True, True, None),
    ("  3  \n\n", "3", NONE, True, True, None),  # both ends: TACO strips too
    ("4\n", "3\n", NONE, False, False, None),
    ("2 1\n", "1 2\n", NONE, False, False, None),  # order matters to both (here)
    # TACO accepts a wrong answer
    ("12\n", "1 2\n", NONE, True, False, Reason.SET_QUIRK),  # characters of a token = tokens of a line
    ("2\n1\n", "1\n2\n", NONE, True, False, Reason.SET_QUIRK),  # lines in the wrong order
    ("1\n1\n1\n", "1\n", NONE, True, False, Reason.SET_QUIRK),  # the answer three times
    ("0 1 0 0\n", "1\n0\n1\n1\n", NONE, True, False, Reason.SET_QUIRK),
    ("12", "1\n2", NONE, True, False, Reason.PER_CHARACTER_FLOAT_QUIRK),  # each character against each line
    ("5\n", "5.0000\n", NONE, True, False, Reason.ROUNDED_SET_QUIRK),
    ("12\n", "1 2\n", CASE, True, False, Reason.SET_QUIRK),  # a flag does not excuse a quirk
    # TACO rejects a right answer
    ("1  2\n3\n", "1 2\n3\n", NONE, False, True, Reason.WHITESPACE),  # inner spaces
    ("1 2\n3 4\n", "1 2 \n3 4\n", NONE, False, True, Reason.WHITESPACE),  # a trailing space inside the expected text
    ("1\n2\n3\n4\n", "1 2\n3 4\n", NONE, False, True, Reason.WHITESPACE),  # one token per line
    ("yes\n", "YES\n", CASE, False, True, Reason.CASE),
    ("Alice Bob\n", "alice bob\n", CASE, False, True, Reason.CASE),
    ("yes\n", "YES\n", NONE, False, False, None),  # case counts where the problem is not flagged
    ("0.5\n", "0.50000\n", FLOAT, False, True, Reason.FLOAT_TOLERANCE),
    ("0.3333333\n", "0.333333333\n", FLOAT, False, True, Reason.FLOAT_TOLERANCE),  # 3.3e-8 away
    ("1e-7\n", "0.0000000\n", FLOAT, False, True, Reason.FLOAT_TOLERANCE),  # absolute error
    ("1000000.5\n", "1000000.0\n", FLOAT, False, True, Reason.FLOAT_TOLERANCE),  # relative error 5e-7
    ("0.5\n", "0.50000\n", NONE, False, False, None),
    ("0.501\n", "0.5\n", FLOAT, False, False, None),
    ("1000001\n", "1000000\n", FLOAT, False, False, None),  # integers must be equal, however large
    ("inf\n", "1e308\n", FLOAT, False, False, None),
    ("nan\n", "nan\n", FLOAT, True, True, None),
    ("1_000\n", "1000\n", FLOAT, False, False, None),  # float() reads it; a judge does not
    ("0.5 2\n", "0.5000001 2\n", FLOAT, False, True, Reason.FLOAT_TOLERANCE),
]


@pytest.mark.parametrize(("output", "expected", "flag", "taco", "corrected", "reason"), STDIN_CASES)
def test_stdin_cases(output, expected, flag, taco, corrected, reason):
    assert compare_stdout(output, expected) is taco
    assert accepts_stdout(output, expected, flag) is corrected
    assert stdout_reason(output, expected, flag) == reason
    if reason is not None:
        assert reason.taco_accepts is taco


def test_every_stdin_reason_is_exercised_both_ways():
    reasons = {case[5] for case in STDIN_CASES} - {None}
    assert {r for r in reasons if r.taco_accepts} and {r for r in reasons if not r.taco_accepts}
    assert reasons >= {Reason.SET_QUIRK, Reason.ROUNDED_SET_QUIRK, Reason.PER_CHARACTER_FLOAT_QUIRK}
    assert reasons >= {Reason.WHITESPACE, Reason.CASE, Reason.FLOAT_TOLERANCE}


# (returned value, expected, flag, TACO accepts, corrected accepts, reason)
CALL_CASES = [
    (3, [3], NONE, True, True, None),  # the one-element list that wraps every expected value
    ([3], [3], NONE, True, True, None),
    ((1, 2), [[1, 2]], NONE, True, True, None),
    (True, [1], NONE, True, True, None),  # Python's equality, kept
    (1, [1, 2, 3], NONE, True, False, Reason.FIRST_ELEMENT_QUIRK),  # the first element of a list answer
    (((1, 2),), [(1, 2), [3]], NONE, False, False, None),
    ([[(1, 2)]], [[[[1, 2]]]], NONE, False, True, Reason.TUPLES),  # a tuple deeper than TACO converts
    ({"a": (1, 2)}, [{"a": [1, 2]}], NONE, False, True, Reason.TUPLES),
    ("hello", ["Hello"], CASE, False, True, Reason.CASE),
    (["a", "B"], [["A", "b"]], CASE, False, True, Reason.CASE),
    ("hello", ["Hello"], NONE, False, False, None),
    (0.1 + 0.2, [0.3], FLOAT, False, True, Reason.FLOAT_TOLERANCE),
    ([0.1 + 0.2, 2], [[0.3, 2]], FLOAT, False, True, Reason.FLOAT_TOLERANCE),
    (0.1 + 0.2, [0.3], NONE, False, False, None),
    (0.31, [0.3], FLOAT, False, False, None),
    (4, [3], FLOAT, False, False, None),  # two ints: equal or wrong
]


@pytest.mark.parametrize(("value", "expected", "flag", "taco", "corrected", "reason"), CALL_CASES)
def test_call_cases(value, expected, flag, taco, corrected, reason):
    assert compare_call_result(value, expected) is taco
    assert accepts_call(value, expected, flag) is corrected
    assert call_reason(value, expected, flag) == reason


# -- the flags ------------------------------------------------------------------------------------
def test_the_shipped_table_matches_the_official_flags():
    """The table in the package says what FlagOpen/TACO's output_spj.jsonl says (as joined into the
    official prompts file), and applies to a TACO test row only when its question matches."""
    rows = [json.loads(line) for line in shared_file("taco_test_official_prompts_no_tests.jsonl").read_text().splitlines()]
    table = taco_test_table()
    assert len(table) == 218
    for row in rows:
        flag = from_flags(row["_special_judge"], row["_spj_case"])
        question = row["prompt"].removeprefix("\nQUESTION:\n")
        assert special_judge_of({"question": question}, row["task_id"], "test") is flag
        if flag is not NONE:
            assert table[row["task_id"]] == (flag, question_digest(question))
            # another split, or another question at the same index: no flag
            assert special_judge_of({"question": question}, row["task_id"], "train") is NONE
            assert special_judge_of({"question": "Another problem. " + question}, row["task_id"], "test") is NONE
    counts = {flag: sum(f is flag for f, _ in table.values()) for flag in SpecialJudge}
    assert counts == {NONE: 0, SEVERAL: 137, CASE: 42, FLOAT: 37, SpecialJudge.UNSPECIFIED: 2}


def test_a_rows_own_fields_win():
    lines = shared_file("taco_test_official_prompts_no_tests.jsonl").read_text().splitlines()
    text = json.loads(lines[5])["prompt"].removeprefix("\nQUESTION:\n")
    assert special_judge_of({"question": text}, 5, "test") is SEVERAL  # from the table
    assert special_judge_of({"question": text, "special_judge": False}, 5, "test") is NONE
    assert special_judge_of({"question": text, "special_judge": True, "spj_case": 3}, 5, "test") is FLOAT
    assert special_judge_of({"_special_judge": True, "_spj_case": 2}, 900, "train") is CASE
    assert special_judge_of({"spj_case": 2}, 0, "test") is CASE
    with pytest.raises(ValueError, match="spj_case"):
        special_judge_of({"special_judge": True, "spj_case": 7}, 0, "test")
    with pytest.raises(ValueError, match="special_judge"):
        special_judge_of({"special_judge": "yes"}, 0, "test")


# -- real rows where TACO's quirks flip a verdict --------------------------------------------------
def _examples() -> list[Problem]:
    return load_problems(shared_file("taco_test_examples.jsonl"))


def test_real_rows_where_taco_accepts_a_wrong_answer():
    """On real TACO test rows whose expected lines hold one character each, printing the lines in
    another order (a wrong answer) is accepted by TACO and rejected by the corrected judge."""
    flipped = []
    for problem in _examples():
        assert problem.tests is not None
        for case in problem.tests.cases:
            expected = case.output if isinstance(case.output, str) else "\n".join(case.output)
            lines = [line.strip() for line in expected.strip().split("\n")]
            if len(lines) >= 2 and all(len(t) == 1 for t in lines) and len(set(lines)) > 1 and lines != sorted(lines):
                wrong = "\n".join(sorted(lines)) + "\n"
                assert compare_stdout(wrong, expected)
                assert not accepts_stdout(wrong, expected, problem.special_judge)
                assert stdout_reason(wrong, expected, problem.special_judge) is Reason.SET_QUIRK
                flipped.append(problem.task_id)
    assert len(set(flipped)) >= 5, flipped


def test_real_rows_where_taco_rejects_a_right_answer():
    """The official flags: a case-insensitive problem's answer in other letters, and a float problem's
    answer with more digits, are right; TACO rejects both."""
    problems = _examples()
    case_rows = [p for p in problems if p.special_judge is CASE]
    float_rows = [p for p in problems if p.special_judge is FLOAT]
    assert len(case_rows) == 30 and len(float_rows) == 3
    flipped_case = 0
    for problem in case_rows:
        assert problem.tests is not None
        case = problem.tests.cases[0]
        expected = case.output if isinstance(case.output, str) else "\n".join(case.output)
        other = expected.swapcase()
        if other != expected:
            assert not compare_stdout(other, expected)
            assert accepts_stdout(other, expected, CASE)
            assert stdout_reason(other, expected, CASE) is Reason.CASE
            flipped_case += 1
    assert flipped_case >= 20
    for problem in float_rows:
        assert problem.tests is not None
        case = problem.tests.cases[0]
        expected = case.output if isinstance(case.output, str) else "\n".join(case.output)
        longer = " ".join(t + "0001" if "." in t else t for t in expected.split())
        assert not compare_stdout(longer, expected)
        assert accepts_stdout(longer, expected, FLOAT)
        assert stdout_reason(longer, expected, FLOAT) is Reason.FLOAT_TOLERANCE


# -- inside SampleJudgement -------------------------------------------------------------------------
STDIN_SUITE = testcases.TestSuite(
    Mode.STDIN, None, tuple(testcases.TestCase(f"{i}\n", f"{i} {i + 1}\n{i + 2} {i + 3}\n") for i in range(6))
)
# Outcomes of test i (expected ``i i+1 / i+2 i+3``): right; right but one token per line (TACO rejects
# it); wrong but accepted by TACO's set quirk (``i i+1`` run together); wrong; and failures (TACO's
# second pass hangs on returncode 1).
_OUTCOMES = {
    "right": lambda i: Output(f"{i} {i + 1}\n{i + 2} {i + 3}\n"),
    "layout": lambda i: Output(f"{i}\n{i + 1}\n{i + 2}\n{i + 3}\n"),
    "quirk": lambda i: Output(f"{i}{i + 1}\n{i + 2}{i + 3}\n"),
    "wrong": lambda i: Output(f"{i}\n"),
    "rc1": lambda i: NonZeroExit(1, "Traceback"),
    "rc2": lambda i: NonZeroExit(2, ""),
    "timeout": lambda i: TimedOut(wall_ms=4000.0),
    "died": lambda i: CheckerDied(),  # the checker died: TACO's [-1] * n, unless a judge had decided before
}


def _run(kinds: list[str], second: list[str] | None, early_exit: bool, special: SpecialJudge | None):
    """Feed the outcomes as run_job would (stopping when told; TACO's second pass when every first-pass
    test exited with status 1) and return the result."""
    judgement = SampleJudgement(STDIN_SUITE, early_exit, special_judge=special)
    judgement.on_compiled(CompileStatus.OK, "")
    stop = False
    for i, kind in enumerate(kinds):
        if judgement.on_test(1, _OUTCOMES[kind](i)):
            stop = True
            break
    if not stop and second is not None and all(k == "rc1" for k in kinds):
        for i, kind in enumerate(second):
            if judgement.on_test(2, _OUTCOMES[kind](i)):
                stop = True
                break
    return judgement.result(stopped_early=stop)


def test_early_exit_is_safe_for_both_judges_and_leaves_taco_unchanged():
    rng = random.Random(16)
    kinds = list(_OUTCOMES)
    disagreements = 0
    for _ in range(3000):
        weights = [8, 3, 3, 1, 1, 1, 1, 1]
        first = rng.choices(kinds, weights, k=len(STDIN_SUITE))
        if rng.random() < 0.15:
            first = ["rc1"] * len(STDIN_SUITE)
        second = rng.choices(kinds, weights, k=len(STDIN_SUITE))
        alone = _run(first, second, True, None)
        early = _run(first, second, True, NONE)
        full = _run(first, second, False, NONE)
        # TACO's verdicts, early-exit flag and decisive failure are those of TACO alone.
        assert early == alone and early.stopped_early == alone.stopped_early
        assert early.first_failure == alone.first_failure and early.detail == alone.detail
        assert alone.corrected is None
        # Each judge's early verdict list is a prefix of its full list, and decides the same way.
        assert early.corrected is not None and full.corrected is not None
        assert early.passed == full.passed
        assert early.corrected.passed == full.corrected.passed
        if "died" not in first + second:
            assert full.corrected.verdicts[: len(early.corrected.verdicts)] == early.corrected.verdicts
            assert full.verdicts[: len(early.verdicts)] == early.verdicts
        if early.passed != early.corrected.passed:
            disagreements += 1
            assert early.corrected.difference == full.corrected.difference
            assert early.corrected.difference is not None
            assert early.corrected.difference.reason in (Reason.SET_QUIRK, Reason.WHITESPACE)
            assert early.corrected.difference.reason.taco_accepts is early.passed
    assert disagreements > 50


def test_the_corrected_judge_keeps_taco_verdicts_where_nothing_was_compared():
    judgement = SampleJudgement(STDIN_SUITE, True, special_judge=NONE)
    judgement.on_compiled(CompileStatus.ERROR, "SyntaxError")
    result = judgement.result(stopped_early=False)
    assert result.verdicts == (Verdict.COMPILE_ERROR,)
    assert result.corrected is not None and result.corrected.verdicts == (Verdict.COMPILE_ERROR,)
    broken = SampleJudgement(STDIN_SUITE, True, special_judge=NONE).data_broken()
    assert broken.corrected is not None and broken.corrected.verdicts == broken.verdicts == (Verdict.CRASHED,) * 6


def test_several_valid_outputs_are_left_to_a_checker():
    result = _run(["quirk"] * 6, None, True, SEVERAL)
    assert result.passed  # TACO's verdicts as ever
    assert result.corrected is not None and result.corrected.needs_checker and not result.corrected.passed
    assert len(result.verdicts) == 6  # the corrected judge waits for nothing


def test_call_based_judgement():
    suite = testcases.TestSuite(Mode.CALL, "f", (testcases.TestCase([1], [[1, 2, 3]]), testcases.TestCase([2], [0.3])))
    judgement = SampleJudgement(suite, True, special_judge=FLOAT)
    judgement.on_compiled(CompileStatus.OK, "")
    assert not judgement.on_test(1, ReturnValue(valuecodec.encode((1, 2, 3))))
    assert not judgement.on_test(1, ReturnValue(valuecodec.encode(0.1 + 0.2)))
    result = judgement.result(stopped_early=False)
    assert result.verdicts == (Verdict.PASSED, Verdict.WRONG_ANSWER)
    assert result.corrected is not None and result.corrected.passed
    assert result.corrected.difference is not None and result.corrected.difference.reason is Reason.FLOAT_TOLERANCE
    assert result.corrected.difference.test == 1


def test_records_carry_the_corrected_verdicts():
    for kinds in (["right"] * 6, ["quirk", "right", "right", "right", "right", "right"], ["layout"] * 6):
        result = _run(kinds, None, True, NONE)
        again = result_from_record(json.loads(json.dumps(result_record(result))))
        assert again == result and again.corrected == result.corrected
    checker = _run(["right"] * 6, None, True, SEVERAL)
    assert result_from_record(result_record(checker)).corrected == checker.corrected


def test_metrics_count_disagreements_and_leave_out_problems_for_a_checker():
    def problem(task_id: int, special: SpecialJudge, difficulty: str) -> Problem:
        return Problem(task_id, STDIN_SUITE, difficulty, ("Math",), {}, special)

    problems = [problem(0, NONE, "EASY"), problem(1, CASE, "HARD"), problem(2, SEVERAL, "HARD")]
    results = {
        0: [_run(["quirk"] * 6, None, True, NONE), _run(["right"] * 6, None, True, NONE)],
        1: [_run(["layout"] * 6, None, True, CASE), _run(["wrong"] * 6, None, True, CASE)],
        2: [_run(["right"] * 6, None, True, SEVERAL), _run(["quirk"] * 6, None, True, SEVERAL)],
    }
    metrics = compute_metrics(problems, results)
    assert metrics["pass@1"] == pytest.approx((2 / 2 + 0 / 2 + 2 / 2) / 3)
    corrected = metrics["corrected"]
    assert corrected["pass@1"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert corrected["taco_on_same_tasks"]["pass@1"] == pytest.approx((2 / 2 + 0 / 2) / 2)
    assert corrected["needs_checker"] == {"tasks": 1, "samples": 2, "task_ids": [2]}
    assert set(corrected["by_difficulty"]) == {"EASY", "HARD"} and corrected["by_difficulty"]["HARD"]["tasks"] == 1
    assert corrected["by_skill"]["Math"]["tasks"] == 2
    block = metrics["disagreements"]
    assert block["samples_compared"] == 4
    assert block["taco_accepts_corrected_rejects"] == {"total": 1, "by_reason": {"set_quirk": 1}}
    assert block["corrected_accepts_taco_rejects"] == {"total": 1, "by_reason": {"whitespace": 1}}
    assert block["several_valid_outputs"] == {"samples": 2, "taco_accepts": 2}
    assert [(e["task_id"], e["sample"], e["accepted_by"], e["reason"]) for e in block["examples"]] == [
        (0, 0, "taco", "set_quirk"),
        (1, 0, "corrected", "whitespace"),
    ]
    assert all(r.status is SampleStatus.JUDGED for rs in results.values() for r in rs)
