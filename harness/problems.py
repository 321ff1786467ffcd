"""Loading TACO-format problems from local files (the forms that need no hub access)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .testcases import TestSuite, allow_long_int_strings, parse_input_output


@dataclass(frozen=True)
class Problem:
    task_id: int  # row index in the split, before any filtering
    tests: TestSuite
    difficulty: str | None
    row: dict[str, Any]


class DatasetError(ValueError):
    pass


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows from a ``.jsonl`` file or a ``.json`` list."""
    allow_long_int_strings()
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DatasetError(f"{path}:{number}: not valid JSON ({exc})") from exc
        return rows
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise DatasetError(f"{path}: expected a JSON list of problem rows")
    return rows


def load_problems(path: Path) -> list[Problem]:
    problems = []
    for index, row in enumerate(load_rows(path)):
        if not isinstance(row, dict) or "input_output" not in row:
            raise DatasetError(f"{path}: row {index} has no 'input_output'")
        try:
            tests = parse_input_output(row["input_output"])
        except ValueError as exc:
            raise DatasetError(f"{path}: row {index}: {exc}") from exc
        problems.append(Problem(task_id=index, tests=tests, difficulty=row.get("difficulty"), row=row))
    return problems
