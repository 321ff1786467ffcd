"""Reading generation files (the official ``generations.json``, or JSONL of the same objects) and
joining them to problems by task_id: never by position, which is how the official script pairs them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness.data.problems import Problem
from harness.errors import GenerationsError

# A .json file is parsed whole (several times its size in memory); larger ones must be JSONL.
MAX_JSON_BYTES = 1 << 30
# One JSONL line holds one task's samples: 200 samples of 2048 tokens are ~5 MB.
MAX_JSONL_LINE = 256 << 20


@dataclass(frozen=True)
class Generations:
    task_id: int
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class TaskSamples:
    """A problem with the samples to evaluate for it."""

    problem: Problem
    outputs: tuple[str, ...]


def load_generations(path: Path) -> list[Generations]:
    """The official ``generations.json`` (a list of {task_id, prompt?, output: [...]}) or JSONL of the same."""
    if not path.exists():
        raise GenerationsError(f"generations file not found: {path}")
    if path.is_dir():
        raise GenerationsError(f"generations path is a directory, expected a file: {path}")
    size = path.stat().st_size
    jsonl = path.suffix == ".jsonl"
    if not jsonl and size > MAX_JSON_BYTES:
        raise GenerationsError(
            f"{path}: {size / 2**30:.1f} GiB is too large for a .json generations file (limit {MAX_JSON_BYTES / 2**30:.0f} GiB: "
            "it is parsed whole); write JSONL (one {task_id, output} object per line), which is read line by line"
        )
    try:
        with path.open(encoding="utf-8") as handle:
            if jsonl:
                items = [_jsonl_item(path, number, line) for number, line in _lines(path, handle) if line.strip()]
            else:
                items = json.load(handle)
    except GenerationsError:
        raise
    except UnicodeDecodeError as exc:
        raise GenerationsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:
        raise GenerationsError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(items, list):
        raise GenerationsError(f"{path}: expected a JSON list of {{task_id, output}} objects")
    seen: set[int] = set()
    out = []
    for position, item in enumerate(items):
        generations = _entry(path, position, item)
        if generations.task_id in seen:
            raise GenerationsError(f"{path}: task_id {generations.task_id} appears more than once")
        seen.add(generations.task_id)
        out.append(generations)
    if not out:
        raise GenerationsError(f"{path}: no generations in the file")
    return out


def _lines(path: Path, handle: TextIO) -> Iterator[tuple[int, str]]:
    """(number, line) of a JSONL file, refusing a line longer than MAX_JSONL_LINE characters before
    it is held in memory (a file that is one huge line is not JSONL)."""
    number = 0
    while True:
        line = handle.readline(MAX_JSONL_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_JSONL_LINE and not line.endswith("\n"):
            raise GenerationsError(
                f"{path}:{number}: line longer than {MAX_JSONL_LINE >> 20} MB (one task's samples per line expected)"
            )
        yield number, line


def _jsonl_item(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise GenerationsError(f"{path}:{number}: not valid JSON ({exc})") from exc


def _entry(path: Path, position: int, item: Any) -> Generations:
    if not isinstance(item, dict) or "task_id" not in item or "output" not in item:
        raise GenerationsError(f"{path}: entry {position} needs 'task_id' and 'output'")
    task_id, outputs = item["task_id"], item["output"]
    if isinstance(task_id, str) and task_id.strip().isdigit():
        task_id = int(task_id)  # JSON object keys and some converters stringify ids
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise GenerationsError(f"{path}: entry {position}: task_id must be an integer, got {task_id!r}")
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise GenerationsError(f"{path}: task {task_id}: 'output' must be a list of strings")
    if not outputs:
        raise GenerationsError(f"{path}: task {task_id}: 'output' is empty (pass@k needs at least one sample)")
    return Generations(task_id, tuple(outputs))


@dataclass(frozen=True)
class JoinGaps:
    """What a join by task_id leaves out: selected problems without generations, and generations
    whose task id the split does not have (generations of problems a filter left out are neither)."""

    no_generations: tuple[int, ...]
    not_in_dataset: tuple[int, ...]


def join_gaps(problems: list[Problem], generations: list[Generations], split_task_ids: set[int] | None = None) -> JoinGaps:
    """The gaps of ``join_by_task_id`` with the same arguments."""
    selected = {p.task_id for p in problems}
    known = selected if split_task_ids is None else split_task_ids | selected
    have = {g.task_id for g in generations}
    return JoinGaps(no_generations=tuple(sorted(selected - have)), not_in_dataset=tuple(sorted(have - known)))


def join_by_task_id(
    problems: list[Problem],
    generations: list[Generations],
    allow_partial: bool = False,
    split_task_ids: set[int] | None = None,
) -> list[TaskSamples]:
    """Pair each selected problem with its samples by task_id, in task order.

    ``split_task_ids`` are all ids of the split before filtering: generations for problems that a
    filter left out are ignored, while ids the split does not have at all are an error, and so are
    selected problems without generations, unless ``allow_partial`` (``join_gaps`` says which).
    """
    by_id = {p.task_id: p for p in problems}
    gaps = join_gaps(problems, generations, split_task_ids)
    if not allow_partial:
        if gaps.not_in_dataset:
            raise GenerationsError(
                f"generations name task ids absent from the dataset: {format_ids(gaps.not_in_dataset)} (use --allow-partial)"
            )
        if gaps.no_generations:
            raise GenerationsError(f"dataset tasks without generations: {format_ids(gaps.no_generations)} (use --allow-partial)")
    joined = [TaskSamples(by_id[g.task_id], g.outputs) for g in generations if g.task_id in by_id]
    if not joined:
        raise GenerationsError("no generation matches a selected problem")
    return sorted(joined, key=lambda t: t.problem.task_id)


def format_ids(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" … ({len(ids)} in all)" if len(ids) > 20 else "")
