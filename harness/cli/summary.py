"""What ``evaluate`` and ``run`` print when they finish, from the metrics they wrote: pass@k as a small
table (all tasks, then each difficulty, with its number of tasks), the pass@k that TACO's rule leaves
out and why, and, for a partial run, the one warning line that says which tasks the figures lack.
Made to be read in 80 columns."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_COLUMNS = 80
_NAME_WIDTH = 20  # longer difficulty names are cut (TACO's longest, MEDIUM_HARD, fits)
_SHOWN_IDS = 5


def _ks(metrics: Mapping[str, Any]) -> list[str]:
    return sorted((k for k in metrics if re.fullmatch(r"pass@\d+", k)), key=lambda k: int(k[5:]))


def _percent(value: object) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def pass_at_k_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The pass@k table, then which pass@k are not reported and why (if any)."""
    ks = _ks(metrics)
    counts = metrics.get("counts", {})
    rows: list[tuple[str, object, Sequence[object]]] = [("all tasks", counts.get("tasks"), [metrics[k] for k in ks])]
    for level, entry in (metrics.get("by_difficulty") or {}).items():
        if level != "None":  # tasks without a difficulty (a dataset without the field): not a difficulty
            rows.append((f"  {level}", entry.get("tasks"), [entry.get(k) for k in ks]))
    width = min(_NAME_WIDTH, max(len(name) for name, _, _ in rows))
    lines = [f"{'pass@k':<{width}}  {'tasks':>6}" + "".join(f"  {k:>8}" for k in ks)]
    for name, tasks, values in rows:
        shown_tasks = f"{tasks:,}" if isinstance(tasks, int) else "-"
        lines.append(f"{name[:width]:<{width}}  {shown_tasks:>6}" + "".join(f"  {_percent(v):>8}" for v in values))
    missing = metrics.get("not_reported") or {}
    if missing:
        # The reason for the smallest k left out holds for every larger one.
        first = min(missing, key=lambda k: int(k[5:]) if k[5:].isdigit() else 0)
        line = f"{', '.join(missing)} not reported: {missing[first]}"
        lines += [line] if len(line) <= _COLUMNS else [f"{', '.join(missing)} not reported:", f"  {missing[first]}"]
    return lines + corrected_lines(metrics)


def corrected_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The corrected judge's pass@k beside TACO's on the same tasks (the problems that need a checker
    left out), and how often the two judges disagree; nothing when the corrected judge was off."""
    corrected = metrics.get("corrected")
    if not isinstance(corrected, Mapping):
        return []
    ks = [k for k in _ks(metrics) if corrected.get(k) is not None]
    same = corrected.get("taco_on_same_tasks") or {}
    shown = ", ".join(f"{k} {_percent(corrected[k])} (TACO {_percent(same.get(k))})" for k in ks)
    lines = [f"corrected judge on {corrected.get('tasks', 0):,} tasks: {shown or '-'}"]
    checker = corrected.get("needs_checker") or {}
    if checker.get("tasks"):
        lines.append(f"  {checker['tasks']:,} tasks with several valid outputs left out (they need a checker)")
    disagreements = metrics.get("disagreements") or {}
    taco_only = (disagreements.get("taco_accepts_corrected_rejects") or {}).get("total", 0)
    corrected_only = (disagreements.get("corrected_accepts_taco_rejects") or {}).get("total", 0)
    if taco_only or corrected_only:
        lines.append(f"  samples TACO accepts and the corrected judge rejects: {taco_only:,}; the reverse: {corrected_only:,}")
    return lines


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:_SHOWN_IDS]))
    return shown + (", …" if len(ids) > _SHOWN_IDS else "")


def partial_warning(metrics: Mapping[str, Any]) -> str | None:
    """One line for a partial run (``--allow-partial`` left tasks or generations out), else None."""
    coverage = metrics.get("coverage")
    if not isinstance(coverage, Mapping) or not coverage.get("partial"):
        return None
    parts = []
    no_generations = list(coverage.get("no_generations") or [])
    if no_generations:
        parts.append(
            f"{len(no_generations)} of {coverage.get('selected')} selected tasks have no generations "
            f"and are left out ({_ids(no_generations)}); pass@k is over {coverage.get('evaluated')} "
            f"task{'' if coverage.get('evaluated') == 1 else 's'}"
        )
    not_in_dataset = list(coverage.get("not_in_dataset") or [])
    if not_in_dataset:
        parts.append(
            f"generations of {len(not_in_dataset)} task id{'' if len(not_in_dataset) == 1 else 's'} "
            f"not in the dataset are ignored ({_ids(not_in_dataset)})"
        )
    return "warning: partial run: " + "; ".join(parts) + " (metrics.json: coverage)"
