"""TACO HEAD's output comparisons, pure functions on the host.

``compare_stdout`` is what ``compare_std_results`` effectively does when, as in HEAD, the program's
stdout arrives as one string: exact equality after stripping, plus the character-level float and
set quirks (which accept some wrong answers; they are the benchmark's semantics and are kept).
``compare_call_result`` is the comparison in ``execute_cb_code``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _strip(text: str) -> str:
    return text.lstrip().rstrip()


def compare_stdout(stdout: str, expected: str) -> bool:
    """True when TACO HEAD accepts *stdout* (the whole output) for the *expected* text."""
    if _strip(stdout) == _strip(expected):
        return True
    expected_lines = [line.strip() for line in expected.split("\n") if len(line) > 0]
    # Per-character float comparison: only digit-only outputs can get here.  The lengths are
    # compared first (same outcome): a 64 MB output must not become 64 M floats on the host.
    if len(stdout) == len(expected_lines):
        try:
            got = [float(ch) for ch in stdout]
            want = [float(line) for line in expected_lines]
            if np.allclose(got, want):
                return True
        except Exception:
            pass
    expected_sets = [set(line.split()) for line in expected_lines]
    stdout_tokens = set(stdout.split())
    result = False
    try:  # sets of characters of each output token against sets of tokens of each expected line
        result = {frozenset(t) for t in stdout_tokens} == {frozenset(s) for s in expected_sets}
    except Exception:
        pass
    try:
        result = result or (
            # (over each token's distinct characters: the same sets, without a float per output byte)
            {frozenset(round(float(ch), 3) for ch in frozenset(t)) for t in stdout_tokens}
            == {frozenset(round(float(x), 3) for x in s) for s in expected_sets}
        )
    except Exception:
        pass
    return bool(result)


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
