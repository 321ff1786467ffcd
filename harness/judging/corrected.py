"""The corrected judge (pure): what a right answer is, without TACO HEAD's comparison quirks.

TACO's comparisons (``compare``) are the benchmark's and stay the default, but they err both ways
(TACO_SEMANTICS §3.6): the set-of-characters and per-character float checks accept wrong answers,
and exact comparison rejects right ones on problems that need a special judge.  This module judges
the same outputs again:

* standard input: the output and the expected text are compared as token sequences (split on
  whitespace: the layout of spaces and lines does not matter, order and content do); on problems
  flagged case-insensitive the tokens are compared case-folded; on problems flagged for a float
  tolerance two numeric tokens match within an absolute or relative error of ``FLOAT_TOLERANCE``
  (two integers must still be equal: a count off by one is wrong however large it is);
* call-based: TACO's ``==`` on the returned value, less one quirk: the first element of a longer
  expected list is not accepted for the whole list (TACO accepts ``expected[0]`` to undo the one-element
  list that wraps every call's expected value; for a longer list it accepts a wrong answer).  Tuples
  are compared as lists at every depth (the expected values come from JSON, which has none; TACO turns
  only the outer one, and those of the first element, into lists), and the case and float flags apply to the
  strings and floats inside;
* problems with several valid outputs (and those flagged without a case) are not judged: no comparison
  with one expected output can (``SpecialJudge.needs_checker``).

Everything else (the runs, retries, TACO's second pass, timeouts, errors) is TACO's: only the
comparison of an output that was produced changes.  ``Reason`` names why the two judges differ on a test.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any

from harness.data.special_judge import SpecialJudge
from harness.judging.compare import TacoRule, compare_call_result, stdout_acceptance

# Absolute or relative error allowed between two numbers on problems flagged for a float tolerance,
# and the slack for the rounding of binary floats (1e-6 itself must pass).
FLOAT_TOLERANCE = 1e-6
_ROUNDING_SLACK = 1e-15

_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class Reason(Enum):
    """Why the judges differ on a test (``taco_accepts``: which side accepts)."""

    # TACO accepts, the corrected judge rejects (TACO's false accepts)
    SET_QUIRK = "set_quirk"  # sets of characters of output tokens equal sets of expected tokens
    ROUNDED_SET_QUIRK = "rounded_set_quirk"  # the same check over rounded numbers
    PER_CHARACTER_FLOAT_QUIRK = "per_character_float_quirk"  # each output character against each line
    FIRST_ELEMENT_QUIRK = "first_element_quirk"  # a call returned the first element of a longer expected list
    # The corrected judge accepts, TACO rejects (TACO's false rejects)
    WHITESPACE = "whitespace"  # the same tokens, laid out differently (inner spaces, line ends)
    CASE = "case"  # case-insensitive problem
    FLOAT_TOLERANCE = "float_tolerance"  # numbers within the tolerance
    TUPLES = "tuples"  # a call returned tuples inside where the expected value has lists
    # Not judged by the corrected judge
    SEVERAL_VALID_OUTPUTS = "several_valid_outputs"

    @property
    def taco_accepts(self) -> bool:
        return self in _TACO_ACCEPTS


_TACO_ACCEPTS = frozenset(
    {Reason.SET_QUIRK, Reason.ROUNDED_SET_QUIRK, Reason.PER_CHARACTER_FLOAT_QUIRK, Reason.FIRST_ELEMENT_QUIRK}
)
_QUIRK_OF_RULE = {
    TacoRule.PER_CHARACTER_FLOAT: Reason.PER_CHARACTER_FLOAT_QUIRK,
    TacoRule.CHARACTER_SETS: Reason.SET_QUIRK,
    TacoRule.ROUNDED_CHARACTER_SETS: Reason.ROUNDED_SET_QUIRK,
}


# -- standard input ------------------------------------------------------------------------------
def _numbers_match(got: str, want: str) -> bool:
    if not (_NUMBER.fullmatch(got) and _NUMBER.fullmatch(want)):
        return False
    if _INTEGER.fullmatch(got) and _INTEGER.fullmatch(want):
        try:
            return int(got) == int(want)
        except ValueError:  # more digits than int() converts here: as written, then
            return got.lstrip("+") == want.lstrip("+")
    return _within_tolerance(float(got), float(want))


def _within_tolerance(got: float, want: float) -> bool:
    if not (math.isfinite(got) and math.isfinite(want)):
        return False
    error = abs(got - want)
    return error <= FLOAT_TOLERANCE + _ROUNDING_SLACK or error <= FLOAT_TOLERANCE * abs(want) + _ROUNDING_SLACK


def _token_matches(got: str, want: str, special: SpecialJudge) -> bool:
    if got == want:
        return True
    if special is SpecialJudge.CASE_INSENSITIVE:
        return got.casefold() == want.casefold()
    if special is SpecialJudge.FLOAT_TOLERANCE:
        return _numbers_match(got, want)
    return False


def accepts_stdout(stdout: str, expected: str, special: SpecialJudge) -> bool:
    """Whether *stdout* is a right answer for *expected* (the whole texts) on a problem flagged *special*."""
    got, want = stdout.split(), expected.split()
    return len(got) == len(want) and all(_token_matches(g, w, special) for g, w in zip(got, want))


def stdout_reason(stdout: str, expected: str, special: SpecialJudge) -> Reason | None:
    """Why the judges differ on this output, or None when they agree."""
    taco_rule = stdout_acceptance(stdout, expected)
    corrected = accepts_stdout(stdout, expected, special)
    if (taco_rule is not None) == corrected:
        return None
    if taco_rule is not None:
        return _QUIRK_OF_RULE[taco_rule]  # (strip-equal texts have equal tokens: never here)
    if stdout.split() == expected.split():
        return Reason.WHITESPACE
    return Reason.CASE if special is SpecialJudge.CASE_INSENSITIVE else Reason.FLOAT_TOLERANCE


# -- call-based ----------------------------------------------------------------------------------
def _as_lists(value: Any) -> Any:
    """*value* with every tuple a list, at every depth (inside lists and dict values too)."""
    if isinstance(value, (tuple, list)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def _values_match(got: Any, want: Any, special: SpecialJudge) -> bool:
    """Python's ``==``, and on a flagged problem the same walk with the flag applied to strings and floats."""
    if got == want:
        return True
    if special is SpecialJudge.CASE_INSENSITIVE and isinstance(got, str) and isinstance(want, str):
        return got.casefold() == want.casefold()
    if special is SpecialJudge.FLOAT_TOLERANCE and _is_real(got) and _is_real(want) and float in (type(got), type(want)):
        return _within_tolerance(float(got), float(want))  # (two ints must be equal, as printed integers)
    if special in (SpecialJudge.CASE_INSENSITIVE, SpecialJudge.FLOAT_TOLERANCE):
        if isinstance(got, list) and isinstance(want, list):
            return len(got) == len(want) and all(_values_match(g, w, special) for g, w in zip(got, want))
        if isinstance(got, dict) and isinstance(want, dict):
            return got.keys() == want.keys() and all(_values_match(got[k], want[k], special) for k in want)
    return False


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def accepts_call(value: Any, expected: Any, special: SpecialJudge) -> bool:
    """Whether the returned *value* is right for *expected*.  May raise, as TACO's comparison may
    (the truth value of an array): the caller maps that to the same verdict as TACO's."""
    value = _as_lists(value)
    if _values_match(value, expected, special):
        return True
    # Every expected value of a call is stored wrapped in a one-element list: the element is the answer.
    return isinstance(expected, list) and len(expected) == 1 and _values_match(value, expected[0], special)


def call_reason(value: Any, expected: Any, special: SpecialJudge) -> Reason | None:
    """Why the judges differ on this returned value, or None when they agree (or a comparison raises)."""
    try:
        taco, corrected = compare_call_result(value, expected), accepts_call(value, expected, special)
    except Exception:
        return None
    if taco == corrected:
        return None
    if taco:
        return Reason.FIRST_ELEMENT_QUIRK
    plain = _as_lists(value)
    try:
        exact = bool(plain == expected) or (isinstance(expected, list) and len(expected) == 1 and bool(plain == expected[0]))
    except Exception:
        exact = False
    if exact:
        return Reason.TUPLES
    return Reason.CASE if special is SpecialJudge.CASE_INSENSITIVE else Reason.FLOAT_TOLERANCE
