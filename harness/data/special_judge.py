"""Which problems need more than an exact comparison: TACO's Special-Judge flags.

TACO published, for its 1,000 test problems, which ones a plain comparison misjudges
(``output_spj.jsonl``): several valid outputs, case-insensitive answers, answers within a float
tolerance.  Those facts ship with the package (``taco_test_special_judge.tsv``, keyed by test-split
index) and are applied to rows of a split named ``test`` whose question begins as the table
records; a row's own ``special_judge`` / ``spj_case`` fields (or ``_special_judge`` / ``_spj_case``,
as in files cut from the split) win over the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import Enum
from functools import lru_cache
from importlib import resources
from typing import Any

TABLE_FILE = "taco_test_special_judge.tsv"
_QUESTION_PREFIX = 80  # characters of the question (whitespace collapsed) behind the table's digest


class SpecialJudge(Enum):
    """What a problem needs beyond an exact comparison, by TACO's case numbers."""

    NONE = "none"  # not flagged: one right output, compared as tokens
    SEVERAL_VALID_OUTPUTS = "several_valid_outputs"  # case 1: only a checker can judge it
    CASE_INSENSITIVE = "case_insensitive"  # case 2
    FLOAT_TOLERANCE = "float_tolerance"  # case 3
    UNSPECIFIED = "unspecified"  # flagged with case 0 (an interactive problem, a free construction)

    @property
    def needs_checker(self) -> bool:
        """Whether no comparison with one expected output can judge the problem."""
        return self in (SpecialJudge.SEVERAL_VALID_OUTPUTS, SpecialJudge.UNSPECIFIED)


_BY_CASE = {
    0: SpecialJudge.UNSPECIFIED,
    1: SpecialJudge.SEVERAL_VALID_OUTPUTS,
    2: SpecialJudge.CASE_INSENSITIVE,
    3: SpecialJudge.FLOAT_TOLERANCE,
}


def from_flags(flagged: bool, case: int) -> SpecialJudge:
    """TACO's pair (``special_judge``, ``spj_case``) as one value; ValueError for a case it lacks."""
    if case not in _BY_CASE:
        raise ValueError(f"spj_case should be 0, 1, 2 or 3, got {case!r}")
    return _BY_CASE[case] if flagged else SpecialJudge.NONE


def question_digest(question: str) -> str:
    """The table's fingerprint of a question: its opening, whitespace runs collapsed."""
    return hashlib.sha256(" ".join(question.split())[:_QUESTION_PREFIX].encode("utf-8", "surrogatepass")).hexdigest()[:12]


@lru_cache(maxsize=1)
def taco_test_table() -> dict[int, tuple[SpecialJudge, str]]:
    """The shipped table: test-split index -> (flag, question digest)."""
    text = resources.files("harness.data").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    table: dict[int, tuple[SpecialJudge, str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        index, case, digest = line.split("\t")
        table[int(index)] = (from_flags(True, int(case)), digest)
    return table


def _own_flags(row: Mapping[str, Any]) -> SpecialJudge | None:
    """The row's own flags, when it carries them (``special_judge`` before ``_special_judge``)."""
    for prefix in ("", "_"):
        flagged, case = row.get(f"{prefix}special_judge"), row.get(f"{prefix}spj_case")
        if flagged is None and case is None:
            continue
        if flagged is not None and not isinstance(flagged, bool):
            raise ValueError(f"{prefix}special_judge should be true or false, got {flagged!r:.40}")
        if case is not None and (isinstance(case, bool) or not isinstance(case, int)):
            raise ValueError(f"{prefix}spj_case should be an integer, got {case!r:.40}")
        if flagged is None:  # only a case: flagged when it names one
            return from_flags(bool(case), case or 0)
        return from_flags(flagged, case or 0)
    return None


def special_judge_of(row: Mapping[str, Any], task_id: int, split: str) -> SpecialJudge:
    """The flag of one dataset row: its own fields, else the shipped table when the row is row
    *task_id* of TACO's test split (its question begins as the table records), else NONE.
    ValueError for fields of the wrong kind."""
    own = _own_flags(row)
    if own is not None:
        return own
    if split != "test":
        return SpecialJudge.NONE
    entry = taco_test_table().get(task_id)
    question = row.get("question")
    if entry is None or not isinstance(question, str) or question_digest(question) != entry[1]:
        return SpecialJudge.NONE
    return entry[0]
