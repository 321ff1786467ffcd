"""Loading TACO problems from every form the dataset comes in, and selecting a subset of them.

Forms: a hub id (``BAAI/TACO``, through ``datasets``), a ``save_to_disk`` directory, a directory of
the official arrow shards (``<dir>/<split>/*.arrow``) or parquet files, or one ``.json`` (list of
rows), ``.jsonl`` or ``.parquet`` file.  Rows may carry ``input_output``/``solutions``/``skill_types``
encoded as strings (as on the hub) or already decoded.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.testcases import TestSuite, allow_long_int_strings, parse_input_output
from harness.errors import DatasetError, TestDataError

DIFFICULTIES = ("EASY", "MEDIUM", "MEDIUM_HARD", "HARD", "VERY_HARD")


@dataclass(frozen=True)
class Problem:
    # The row index in the split before any filtering, as in the official generation.py.  A row
    # that carries its own integer ``task_id`` (or ``_task_id``: subset files keep the index of the
    # split they were cut from) keeps that id instead.
    task_id: int
    tests: TestSuite | None  # None only for rows without tests, when the caller allows them
    difficulty: str | None
    skills: tuple[str, ...]
    row: Mapping[str, Any]


@dataclass(frozen=True)
class Selection:
    """Which problems to keep.  Filters of different kinds combine with AND, values of one kind with OR."""

    difficulties: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    indices: tuple[int, ...] | None = None  # task ids
    limit: int | None = None  # the first N problems left after the other filters

    def keeps(self, problem: Problem) -> bool:
        if self.difficulties and "ALL" not in self.difficulties and problem.difficulty not in self.difficulties:
            return False
        if self.skills and "ALL" not in self.skills and not set(self.skills) & set(problem.skills):
            return False
        return self.indices is None or problem.task_id in self.indices


def read_rows(source: str | Path, split: str = "test") -> list[dict[str, Any]]:
    """The split's rows in dataset order, from any supported form."""
    allow_long_int_strings()
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if path.is_dir():
        return _read_directory(path, split)
    text = str(source)
    if _looks_like_hub_id(text):
        return _read_hub(text, split)
    raise DatasetError(f"dataset not found: {source}")


def load_split(source: str | Path, split: str = "test", require_tests: bool = True) -> list[Problem]:
    """Every problem of the split, in dataset order."""
    problems = [_problem(index, row, source, require_tests) for index, row in enumerate(read_rows(source, split))]
    seen: dict[int, int] = {}
    for index, problem in enumerate(problems):
        if problem.task_id in seen:
            raise DatasetError(f"{source}: rows {seen[problem.task_id]} and {index} both have task_id {problem.task_id}")
        seen[problem.task_id] = index
    return problems


def select(problems: list[Problem], selection: Selection, source: str | Path = "dataset") -> list[Problem]:
    if selection.indices is not None:
        absent = sorted(set(selection.indices) - {p.task_id for p in problems})
        if absent:
            raise DatasetError(f"{source}: no task ids {', '.join(map(str, absent[:20]))} in the split")
    kept = [p for p in problems if selection.keeps(p)]
    if selection.limit is not None:
        kept = kept[: selection.limit]
    if not kept:
        raise DatasetError(f"{source}: no problems left after filtering ({_describe(selection)})")
    return kept


def load_problems(
    source: str | Path, split: str = "test", selection: Selection = Selection(), require_tests: bool = True
) -> list[Problem]:
    return select(load_split(source, split, require_tests), selection, source)


def parse_skills(value: Any) -> tuple[str, ...]:
    """``skill_types`` is a Python-literal list string on the hub (the card says to eval it)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)


def _problem(index: int, row: Any, source: str | Path, require_tests: bool) -> Problem:
    if not isinstance(row, dict):
        raise DatasetError(f"{source}: row {index} is not an object")
    task_id = index
    for key in ("task_id", "_task_id"):
        value = row.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            task_id = value
            break
    tests = None
    if "input_output" in row and row["input_output"] not in (None, ""):
        try:
            tests = parse_input_output(row["input_output"])
        except TestDataError as exc:
            raise DatasetError(f"{source}: row {index}: {exc}") from exc
    elif require_tests:
        raise DatasetError(f"{source}: row {index} has no 'input_output' (tests)")
    difficulty = row.get("difficulty")
    return Problem(
        task_id=task_id,
        tests=tests,
        difficulty=str(difficulty) if difficulty is not None else None,
        skills=parse_skills(row.get("skill_types")),
        row=row,
    )


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet([path])
    if suffix == ".arrow":
        return _read_arrow([path])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DatasetError(f"{path}:{number}: not valid JSON ({exc})") from exc
        return rows
    if suffix != ".json":
        raise DatasetError(f"{path}: unsupported dataset file (use .json, .jsonl, .parquet or .arrow)")
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise DatasetError(f"{path}: expected a JSON list of problem rows")
    return rows


def _read_directory(path: Path, split: str) -> list[dict[str, Any]]:
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return _read_saved(path, split)
    for folder in (path / split, path):
        arrows = sorted(folder.glob("*.arrow"))
        if arrows:
            return _read_arrow(arrows)
    parquets = sorted(p for p in path.rglob("*.parquet") if p.name.startswith(f"{split}-") or p.parent.name == split)
    if parquets:
        return _read_parquet(parquets)
    raise DatasetError(f"{path}: no '{split}' split found (expected a save_to_disk directory, arrow shards or parquet files)")


def _read_saved(path: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many kinds; all mean "cannot read this directory"
        raise DatasetError(f"{path}: cannot load saved dataset ({exc})") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DatasetError(f"{path}: no split {split!r} (has {', '.join(loaded)})")
        loaded = loaded[split]
    return loaded.to_list()


def _read_arrow(files: Iterable[Path]) -> list[dict[str, Any]]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            with pa.memory_map(str(file)) as source:
                try:
                    table = pa.ipc.open_stream(source).read_all()  # what datasets writes
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_file(source).read_all()
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{file}: not a readable arrow file ({exc})") from exc
        rows.extend(table.to_pylist())
    return rows


def _read_parquet(files: Iterable[Path]) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            rows.extend(pq.read_table(str(file)).to_pylist())
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{file}: not a readable parquet file ({exc})") from exc
    return rows


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/")) and "." not in parts[1][-8:]


def _read_hub(name: str, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        return datasets.load_dataset(name, split=split).to_list()
    except Exception as exc:  # network, auth, missing split: one clear line either way
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"cannot load {name!r} split {split!r} from the Hugging Face hub: {first_line}") from exc


def _describe(selection: Selection) -> str:
    parts = []
    if selection.difficulties:
        parts.append("difficulty " + "|".join(selection.difficulties))
    if selection.skills:
        parts.append("skill " + "|".join(selection.skills))
    if selection.indices is not None:
        parts.append(f"{len(selection.indices)} indices")
    if selection.limit is not None:
        parts.append(f"limit {selection.limit}")
    return ", ".join(parts) or "no filter"
