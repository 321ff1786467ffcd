"""Evaluating TACO generations: join by task_id, run through the pool, write TACO-format results."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .execution import ExecutionJob, RunLimits
from .passk import pass_at_k_table
from .pool import SandboxPool
from .problems import Problem
from .verdicts import SampleResult, SampleStatus


class GenerationsError(ValueError):
    pass


@dataclass(frozen=True)
class Generations:
    task_id: int
    outputs: tuple[str, ...]


def load_generations(path: Path) -> list[Generations]:
    """The official ``generations.json`` (a list of {task_id, prompt?, output: [...]}) or JSONL of the same."""
    if not path.exists():
        raise GenerationsError(f"generations file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenerationsError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(items, list):
        raise GenerationsError(f"{path}: expected a list of {{task_id, output}} objects")
    seen: set[int] = set()
    out = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or "task_id" not in item or "output" not in item:
            raise GenerationsError(f"{path}: entry {position} needs 'task_id' and 'output'")
        task_id, outputs = item["task_id"], item["output"]
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise GenerationsError(f"{path}: entry {position}: task_id must be an integer, got {task_id!r}")
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise GenerationsError(f"{path}: task {task_id}: 'output' must be a list of strings")
        if task_id in seen:
            raise GenerationsError(f"{path}: task_id {task_id} appears twice")
        seen.add(task_id)
        out.append(Generations(task_id, tuple(outputs)))
    return out


def join_by_task_id(
    problems: list[Problem], generations: list[Generations], allow_partial: bool = False
) -> list[tuple[Problem, Generations]]:
    by_id = {p.task_id: p for p in problems}
    unknown = sorted(g.task_id for g in generations if g.task_id not in by_id)
    if unknown:
        raise GenerationsError(f"generations name task ids absent from the dataset: {_ids(unknown)}")
    have = {g.task_id for g in generations}
    missing = sorted(t for t in by_id if t not in have)
    if missing and not allow_partial:
        raise GenerationsError(f"dataset tasks without generations: {_ids(missing)} (use --allow-partial)")
    return [(by_id[g.task_id], g) for g in sorted(generations, key=lambda g: g.task_id)]


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" … ({len(ids)} in all)" if len(ids) > 20 else "")


@dataclass(frozen=True)
class EvaluationSettings:
    limits: RunLimits = RunLimits()
    early_exit: bool = True
    dedup: bool = True


@dataclass(frozen=True)
class EvaluationOutcome:
    results: dict[int, list[SampleResult]]
    metrics: dict
    seconds: float


def evaluate(
    pairs: list[tuple[Problem, Generations]],
    pool: SandboxPool,
    settings: EvaluationSettings = EvaluationSettings(),
    on_result: Callable[[int, int, SampleResult], None] = lambda task, sample, result: None,
) -> EvaluationOutcome:
    started = time.monotonic()
    jobs: list[ExecutionJob] = []
    owners: list[list[tuple[int, int]]] = []  # job -> the (task, sample) slots it answers
    unique: dict[tuple[int, str], int] = {}
    for problem, gens in pairs:
        for sample, code in enumerate(gens.outputs):
            key = (problem.task_id, code)
            if settings.dedup and key in unique:
                owners[unique[key]].append((problem.task_id, sample))
                continue
            unique[key] = len(jobs)
            jobs.append(ExecutionJob(problem.tests, code, settings.limits, settings.early_exit))
            owners.append([(problem.task_id, sample)])
    results: dict[int, list[SampleResult | None]] = {p.task_id: [None] * len(g.outputs) for p, g in pairs}
    for index, result in pool.map_unordered(jobs):
        for task_id, sample in owners[index]:
            results[task_id][sample] = result
            on_result(task_id, sample, result)
    final = {task: [r for r in rs if r is not None] for task, rs in results.items()}
    return EvaluationOutcome(final, metrics_for(pairs, final, settings), time.monotonic() - started)


def metrics_for(pairs, results: dict[int, list[SampleResult]], settings: EvaluationSettings) -> dict:
    counts = {task: (len(rs), sum(r.passed for r in rs)) for task, rs in results.items()}
    metrics = pass_at_k_table(counts)
    by_difficulty: dict[str, list[int]] = {}
    for problem, _ in pairs:
        by_difficulty.setdefault(str(problem.difficulty), []).append(problem.task_id)
    metrics["by_difficulty"] = {
        level: {
            "tasks": len(tasks),
            **{k: sum(metrics["detail"][k][t] for t in tasks) / len(tasks) for k in metrics["detail"]},
        }
        for level, tasks in sorted(by_difficulty.items())
    }
    metrics["counts"] = {
        "tasks": len(results),
        "samples": sum(len(rs) for rs in results.values()),
        "infra_errors": sum(r.status is SampleStatus.INFRA_ERROR for rs in results.values() for r in rs),
    }
    metrics["settings"] = {
        "timeout_s": settings.limits.timeout_s,
        "early_exit": settings.early_exit,
        "dedup": settings.dedup,
        "judge": "taco",
    }
    return metrics


def write_outputs(outcome: EvaluationOutcome, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    taco_results = {str(task): [r.taco() for r in rs] for task, rs in sorted(outcome.results.items())}
    _write_json(directory / "results.json", taco_results)
    _write_json(directory / "metrics.json", outcome.metrics)


def _write_json(path: Path, data) -> None:
    # Written whole, then renamed: a reader never sees a half-written file as if it were complete.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=4), encoding="utf-8")
    tmp.replace(path)
