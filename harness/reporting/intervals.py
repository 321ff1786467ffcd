"""The report's confidence intervals of pass@k, from ``metrics.json``'s per-task ``detail`` (which
an official ``taco_metrics.json`` has too), and how they are written (pure)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.scoring.confidence import CONFIDENCE, RESAMPLES, SEED, Interval, bootstrap_interval

METHOD = (
    f"{CONFIDENCE:.0%} confidence intervals: percentile bootstrap over tasks ({RESAMPLES:,} resamples, seed {SEED}). "
    "The tasks are drawn with replacement, each with its pass@k as estimated from its samples, and the mean "
    f"recomputed; the interval is the middle {CONFIDENCE:.0%} of those means. It assumes independent tasks and is too "
    "narrow when there are few."
)


@dataclass(frozen=True)
class PassAtKInterval:
    k: str  # "pass@1"
    tasks: int
    interval: Interval


def pass_at_k_intervals(metrics: Mapping[object, object]) -> tuple[PassAtKInterval, ...]:
    """An interval for each pass@k that ``detail`` has per-task values for; () when it has none
    usable (a metrics file without ``detail``, or of another shape)."""
    detail = metrics.get("detail")
    if not isinstance(detail, Mapping):
        return ()
    rows = []
    ks = sorted((k for k in detail if isinstance(k, str) and re.fullmatch(r"pass@\d+", k)), key=lambda k: int(k[5:]))
    for k in ks:
        per_task = detail[k]
        if not isinstance(per_task, Mapping) or not per_task:
            continue
        values = list(per_task.values())
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            continue
        rows.append(PassAtKInterval(k, len(values), bootstrap_interval(values)))
    return tuple(rows)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def interval_text(interval: Interval) -> str:
    """``[41.20%, 58.75%]``"""
    return f"[{_percent(interval.low)}, {_percent(interval.high)}]"


def _rows(intervals: tuple[PassAtKInterval, ...]) -> list[list[str]]:
    return [[row.k, f"{row.tasks:,}", _percent(row.interval.estimate), interval_text(row.interval)] for row in intervals]


HEADER = ["pass@k", "tasks", "estimate", f"{CONFIDENCE:.0%} interval"]
HEADING = "Confidence intervals"


def intervals_markdown(intervals: tuple[PassAtKInterval, ...]) -> list[str]:
    """The markdown lines of the section (a heading of its own: a table under a heading is one table)."""
    lines = [f"### {HEADING}", ""]
    if not intervals:
        return [*lines, "No per-task pass@k in metrics.json (no `detail`): no intervals.", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "| --- | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(intervals)]
    return [*lines, "", METHOD, ""]


def intervals_html(intervals: tuple[PassAtKInterval, ...]) -> str:
    heading = f'<h3 id="confidence-heading">{html.escape(HEADING)}</h3>'
    if not intervals:
        return heading + '\n<p class="note">No per-task pass@k in metrics.json (no <code>detail</code>): no intervals.</p>'
    head = "".join(f"<th{' class=num' if i else ''}>{html.escape(h)}</th>" for i, h in enumerate(HEADER))
    body = "\n".join(
        "<tr>" + "".join(f"<td{' class=num' if i else ''}>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in _rows(intervals)
    )
    table = f'<table id="pass-at-k-ci">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'
    return f'{heading}\n{table}\n<p class="note" id="confidence-method">{html.escape(METHOD)}</p>'
