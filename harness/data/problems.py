"""Loading TACO problems from every form the dataset comes in, and selecting a subset of them.

Forms: a hub id (``BAAI/TACO``, through ``datasets``), a ``save_to_disk`` directory, a directory of
the official arrow shards (``<dir>/<split>/*.arrow``) or parquet files, or one ``.json`` (list of
rows), ``.jsonl`` or ``.parquet`` file.  Rows may carry ``input_output``/``solutions``/``skill_types``
encoded as strings (as on the hub) or already decoded.

Selection looks only at what is cheap to read (task id, difficulty, skills); the tests of a row are
parsed when the row is selected, so a malformed row that is not selected does not stop a run.
"""

from __future__ import annotations

import ast
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from harness.data.special_judge import SpecialJudge, special_judge_of
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
    # What judging it needs beyond an exact comparison (TACO's Special-Judge flags: the row's own
    # fields, or the shipped table for TACO's test split); only the corrected judge reads it.
    special_judge: SpecialJudge = SpecialJudge.NONE


class Filterable(Protocol):
    """What a selection looks at: a problem, or a row whose tests are not parsed yet."""

    @property
    def task_id(self) -> int: ...

    @property
    def difficulty(self) -> str | None: ...

    @property
    def skills(self) -> tuple[str, ...]: ...


Item = TypeVar("Item", bound=Filterable)


@dataclass(frozen=True)
class Selection:
    """Which problems to keep.  Filters of different kinds combine with AND, values of one kind with OR.
    Difficulties and skills match regardless of case; ``ALL`` keeps every value."""

    difficulties: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    indices: tuple[int, ...] | None = None  # task ids
    limit: int | None = None  # the first N problems left after the other filters
    # The ids of ``indices`` that came from a range ('10-20' on the command line): those the split
    # lacks are skipped, since a subset file's ids are sparse; an id given alone must exist.  Not
    # compared: it decides what is an error, never which problems are kept.
    in_ranges: frozenset[int] = field(default=frozenset(), compare=False)

    def keeps(self, problem: Filterable) -> bool:
        difficulties = {d.casefold() for d in self.difficulties}
        if difficulties and "all" not in difficulties and str(problem.difficulty).casefold() not in difficulties:
            return False
        skills = {s.casefold() for s in self.skills}
        if skills and "all" not in skills and not skills & {s.casefold() for s in problem.skills}:
            return False
        return self.indices is None or problem.task_id in self.indices


@dataclass(frozen=True)
class _Row:
    """A dataset row before its tests are read: what selection needs."""

    index: int  # the row's position in the split
    task_id: int
    difficulty: str | None
    skills: tuple[str, ...]
    row: Any  # the row itself (an object, or whatever a malformed row holds)


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
    return [_problem(row, source, split, require_tests) for row in _split_rows(source, split)]


def select(problems: list[Item], selection: Selection, source: str | Path = "dataset") -> list[Item]:
    """The problems *selection* keeps, in dataset order; DatasetError for an id given alone that the
    split lacks, or when nothing is left (naming the values present)."""
    if selection.indices is not None:
        absent = sorted(set(selection.indices) - {p.task_id for p in problems} - selection.in_ranges)
        if absent:
            raise DatasetError(f"{source}: no task ids {', '.join(map(str, absent[:20]))} in the split")
    kept = [p for p in problems if selection.keeps(p)]
    if selection.limit is not None:
        kept = kept[: selection.limit]
    if not kept:
        raise DatasetError(
            f"{source}: no problems left after filtering ({_describe(selection)}){_values_present(problems, selection)}"
        )
    return kept


def load_problems(
    source: str | Path, split: str = "test", selection: Selection = Selection(), require_tests: bool = True
) -> list[Problem]:
    """The selected problems of the split; only their tests are parsed."""
    return load_selection(source, split, selection, require_tests)[0]


def load_selection(
    source: str | Path, split: str = "test", selection: Selection = Selection(), require_tests: bool = True
) -> tuple[list[Problem], set[int]]:
    """The selected problems of the split (only their tests parsed), and every task id of the split."""
    rows = _split_rows(source, split)
    chosen = select(rows, selection, source)
    return [_problem(row, source, split, require_tests) for row in chosen], {row.task_id for row in rows}


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


def _split_rows(source: str | Path, split: str) -> list[_Row]:
    """The split's rows with their task ids (checked to be unique), difficulties and skills."""
    rows = [_row(index, row) for index, row in enumerate(read_rows(source, split))]
    seen: dict[int, int] = {}
    for row in rows:
        if row.task_id in seen:
            raise DatasetError(f"{source}: rows {seen[row.task_id]} and {row.index} both have task_id {row.task_id}")
        seen[row.task_id] = row.index
    return rows


def _row(index: int, row: Any) -> _Row:
    if not isinstance(row, dict):
        return _Row(index, index, None, (), row)
    task_id = index
    for key in ("task_id", "_task_id"):
        value = row.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            task_id = value
            break
    difficulty = row.get("difficulty")
    try:
        skills = parse_skills(row.get("skill_types"))
    except (TypeError, ValueError, RecursionError, MemoryError):
        skills = ()  # unreadable skills select nothing; the rest of the row may still be used
    return _Row(index, task_id, str(difficulty) if difficulty is not None else None, skills, row)


def _problem(row: _Row, source: str | Path, split: str, require_tests: bool) -> Problem:
    where = f"{source}: task {row.task_id}" + (f" (row {row.index})" if row.task_id != row.index else "")
    if not isinstance(row.row, dict):
        raise DatasetError(f"{where} is not an object")
    tests = None
    value = row.row.get("input_output")
    if value not in (None, ""):
        try:
            tests = parse_input_output(value)
        except TestDataError as exc:
            raise DatasetError(f"{where}: {exc}") from exc
    elif require_tests:
        raise DatasetError(f"{where} has no 'input_output' (tests)")
    try:
        special = special_judge_of(row.row, row.task_id, split)
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from exc
    return Problem(
        task_id=row.task_id, tests=tests, difficulty=row.difficulty, skills=row.skills, row=row.row, special_judge=special
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


# -- the Hugging Face hub ----------------------------------------------------------------------------
HUB_OFFLINE_HINT = "if it is in the local Hugging Face cache, set HF_HUB_OFFLINE=1 to use it from there"


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) asks for the local cache only."""
    return any(
        os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached, or None when it answers (or a proxy
    is configured, which this check cannot judge).  One TCP connection, so an offline machine learns
    it in seconds instead of after the libraries' retries."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    try:
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"cannot reach the Hugging Face hub at {host} ({reason})"


def _read_hub(name: str, split: str) -> list[dict[str, Any]]:
    offline = hub_offline()
    if not offline:
        unreachable = hub_unreachable()
        if unreachable is not None:
            raise DatasetError(f"cannot load {name!r}: {unreachable}; {HUB_OFFLINE_HINT}, or pass a local path")
    import datasets

    try:
        return datasets.load_dataset(name, split=split).to_list()
    except Exception as exc:  # network, auth, missing split: one clear line either way
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = " (HF_HUB_OFFLINE is set: only the local cache was looked at)" if offline else ""
        raise DatasetError(f"cannot load {name!r} split {split!r} from the Hugging Face hub{where}: {first_line}") from exc


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


def _values_present(problems: list[Item], selection: Selection) -> str:
    """What the split has, for the filters that left nothing: its difficulties, skills or task ids."""
    parts = []
    if selection.difficulties:
        order = {level: i for i, level in enumerate(DIFFICULTIES)}
        levels = sorted({p.difficulty for p in problems if p.difficulty is not None}, key=lambda d: (order.get(d, 99), d))
        parts.append("difficulties present: " + (", ".join(levels) or "none"))
    if selection.skills:
        skills = sorted({s for p in problems for s in p.skills})
        shown = ", ".join(skills[:40]) + (f", … ({len(skills)} in all)" if len(skills) > 40 else "")
        parts.append("skills present: " + (shown or "none"))
    if selection.indices is not None:
        parts.append("task ids present: " + _id_ranges(sorted(p.task_id for p in problems)))
    return "".join(f"; {part}" for part in parts)


def _id_ranges(ids: list[int]) -> str:
    """Sorted ids as ranges: '0-4, 7, 10-12' (the first 20 ranges)."""
    ranges: list[list[int]] = []
    for task_id in ids:
        if ranges and task_id == ranges[-1][1] + 1:
            ranges[-1][1] = task_id
        else:
            ranges.append([task_id, task_id])
    shown = ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges[:20])
    return (shown + (", …" if len(ranges) > 20 else "")) or "none"
