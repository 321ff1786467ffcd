"""TACO HEAD's output comparisons, pure functions on the host.

``compare_stdout`` is what ``compare_std_results`` effectively does when, as in HEAD, the program's
stdout arrives as one string: exact equality after stripping, plus the character-level float and
set quirks (which accept some wrong answers; they are the benchmark's semantics and are kept).
``compare_call_result`` is the comparison in ``execute_cb_code``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np


def _strip(text: str) -> str:
    return text.lstrip().rstrip()


class TacoRule(Enum):
    """Which of HEAD's checks accepted an output (TACO_SEMANTICS §3.6), in the order it tries them."""

    STRIP_EQUAL = "strip_equal"  # rule 1: equal after stripping both ends
    PER_CHARACTER_FLOAT = "per_character_float"  # rule 4: each output character against each expected line
    CHARACTER_SETS = "character_sets"  # rule 6: sets of characters of tokens against sets of tokens of lines
    ROUNDED_CHARACTER_SETS = "rounded_character_sets"  # rule 7: the same over rounded numbers


def compare_stdout(stdout: str, expected: str) -> bool:
    """True when TACO HEAD accepts *stdout* (the whole output) for the *expected* text."""
    return stdout_acceptance(stdout, expected) is not None


def stdout_acceptance(stdout: str, expected: str) -> TacoRule | None:
    """The first of HEAD's checks that accepts *stdout* for *expected*; None when it rejects it."""
    if _strip(stdout) == _strip(expected):
        return TacoRule.STRIP_EQUAL
    expected_lines = [line.strip() for line in expected.split("\n") if len(line) > 0]
    # Per-character float comparison: only digit-only outputs can get here.  The lengths are
    # compared first (same outcome): a 64 MB output must not become 64 M floats on the host.
    if len(stdout) == len(expected_lines):
        try:
            got = [float(ch) for ch in stdout]
            want = [float(line) for line in expected_lines]
            if np.allclose(got, want):
                return TacoRule.PER_CHARACTER_FLOAT
        except Exception:
            pass
    expected_sets = [set(line.split()) for line in expected_lines]
    stdout_tokens = set(stdout.split())
    try:  # sets of characters of each output token against sets of tokens of each expected line
        if {frozenset(t) for t in stdout_tokens} == {frozenset(s) for s in expected_sets}:
            return TacoRule.CHARACTER_SETS
    except Exception:
        pass
    try:
        # (over each token's distinct characters: the same sets, without a float per output byte)
        if {frozenset(round(float(ch), 3) for ch in frozenset(t)) for t in stdout_tokens} == {
            frozenset(round(float(x), 3) for x in s) for s in expected_sets
        }:
            return TacoRule.ROUNDED_CHARACTER_SETS
    except Exception:
        pass
    return None


def compare_call_result(value: Any, expected: Any) -> bool:
    """TACO's call-based check.  May raise (e.g. the truth value of an array): the caller maps that
    to TACO's "timeout" label (-1), as the official code does."""
    if isinstance(value, tuple):
        value = list(value)
    ok = value == expected
    if isinstance(expected, list) and expected:
        ok = ok or (value == expected[0])
    try:
        if isinstance(value[0], tuple):
            value = [list(x) for x in value]
            ok = ok or (value == expected[0])
    except Exception:
        pass
    return bool(ok)
