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
