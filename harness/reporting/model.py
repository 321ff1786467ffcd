"""The report's data: what ``metrics.json`` (and the optional ``run_stats.json``) say, checked and
grouped for people (``build_report_data`` -> ``ReportData``), the report's images, and how a value
is written in a table cell.  Pure: no file is read here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ReportError
from harness.judging.verdicts import Verdict

# Verdict groups as TACO scores them: the value it writes in results.json decides the group, so a
# verdict added to the enum lands in the right group without a change here.
_GROUP_BY_TACO_VALUE: dict[bool | int, tuple[str, str]] = {
    True: ("passed", "True"),
    False: ("wrong answer", "False"),
    -1: ("timeout", "-1"),
    -3: ("runtime error", "-3"),
    -2: ("compile error", "-2"),
}
INFRA_GROUP = "infrastructure error"
OTHER_GROUP = "other"  # an outcome word this version does not know (a newer metrics.json)
GROUP_ORDER = ("passed", "wrong answer", "timeout", "runtime error", "compile error", INFRA_GROUP)
_GROUP_TACO = {label: taco for label, taco in _GROUP_BY_TACO_VALUE.values()} | {
    INFRA_GROUP: "not scored",
    OTHER_GROUP: "?",
}


def outcome_group(outcome: str) -> str:
    """The verdict group of one outcome word of ``harness.scoring.metrics.sample_outcome``."""
    if outcome == "infra_error":
        return INFRA_GROUP
    try:
        verdict = Verdict(outcome)
    except ValueError:
        return OTHER_GROUP
    return _GROUP_BY_TACO_VALUE[verdict.taco][0]


@dataclass(frozen=True)
class PassAtKRow:
    name: str
    tasks: int | None
    values: tuple[float | None, ...]  # one per ReportData.ks; None where the metrics lack that k


@dataclass(frozen=True)
class OutcomeCount:
    outcome: str
    group: str
    samples: int


@dataclass(frozen=True)
class VerdictGroup:
    label: str
    taco: str  # the value TACO writes for these samples, or "not scored"
    samples: int
    outcomes: tuple[OutcomeCount, ...]  # every outcome word of the group, zero counts included


@dataclass(frozen=True)
class ReportData:
    title: str
    ks: tuple[str, ...]  # "pass@1", "pass@10", ... in increasing k
    overall: PassAtKRow
    by_difficulty: tuple[PassAtKRow, ...] | None  # None: not in metrics.json (an official TACO file)
    by_skill: tuple[PassAtKRow, ...] | None
    tasks: int | None
    samples: int  # the sum of the outcome counts: the denominator of every share
    verdict_groups: tuple[VerdictGroup, ...] | None  # None: metrics.json has no counts.outcomes
    settings: tuple[tuple[str, str], ...] | None
    run_stats: tuple[tuple[str, str], ...] | None  # None: no run_stats.json
    run_stats_problem: str | None = None  # why run_stats.json could not be shown
    # (seconds, samples generated, samples evaluated) from run_stats.json of `harness run`: plotted,
    # not tabled (it has up to a thousand points).
    timeline: tuple[tuple[float, float, float], ...] | None = None

    @property
    def outcomes(self) -> tuple[OutcomeCount, ...]:
        return tuple(o for g in self.verdict_groups or () for o in g.outcomes)

    def share(self, samples: int) -> float:
        return samples / self.samples if self.samples else 0.0


@dataclass(frozen=True)
class PlotImage:
    filename: str  # relative to the report, so the directory can be moved
    width_px: int
    height_px: int
    alt: str


@dataclass(frozen=True)
class ReportImages:
    pass_at_k: PlotImage
    verdict_mix: PlotImage
    timeline: PlotImage


PLOTS = ReportImages(
    pass_at_k=PlotImage("pass_at_k_by_difficulty.png", 800, 460, "pass@k by difficulty"),
    verdict_mix=PlotImage("verdict_mix.png", 800, 460, "verdict breakdown of the samples"),
    timeline=PlotImage("run_timeline.png", 800, 460, "samples generated and evaluated during the run"),
)


# --- building the data ---------------------------------------------------------------------------


def _k_of(key: str) -> int:
    return int(key.removeprefix("pass@"))


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"metrics.json: {where} should be a number, got {value!r:.60}")
    return float(value)


def _mapping(value: object, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ReportError(f"metrics.json: {where} should be an object, got {type(value).__name__}")
    return value


def _row(name: str, entry: Mapping[Any, Any], ks: Sequence[str], where: str) -> PassAtKRow:
    tasks = entry.get("tasks")
    return PassAtKRow(
        name=name,
        tasks=None if tasks is None else int(_number(tasks, f"{where}.tasks")),
        values=tuple(None if entry.get(k) is None else _number(entry[k], f"{where}.{k}") for k in ks),
    )


def _table(metrics: Mapping[Any, Any], key: str, ks: Sequence[str]) -> tuple[PassAtKRow, ...] | None:
    if key not in metrics:
        return None
    groups = _mapping(metrics[key], key)
    return tuple(_row(str(name), _mapping(entry, f"{key}[{name!r}]"), ks, f"{key}[{name!r}]") for name, entry in groups.items())


def flatten(value: object, prefix: str = "") -> tuple[tuple[str, str], ...]:
    """Nested objects as (dotted key, text) rows, so a run_stats.json of any shape can be shown."""
    if isinstance(value, Mapping):
        if not value:
            return ((prefix, "{}"),) if prefix else ()
        return tuple(row for k, v in value.items() for row in flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    if isinstance(value, list):
        if all(not isinstance(v, (Mapping, list)) for v in value):
            return ((prefix or "(value)", ", ".join(format_value(v) for v in value) or "[]"),)
        return tuple(row for i, v in enumerate(value) for row in flatten(v, f"{prefix}[{i}]"))
    return ((prefix or "(value)", format_value(value)),)


def build_report_data(
    metrics: Mapping[Any, Any],
    run_stats: object = None,
    title: str = "TACO evaluation report",
    run_stats_problem: str | None = None,
) -> ReportData:
    """``metrics``: the parsed metrics.json; ``run_stats``: the parsed run_stats.json or None.

    Raises ReportError when metrics.json has the wrong shape.  Sections that an official TACO
    metrics file lacks (by_difficulty, by_skill, counts, settings) come out as None.
    """
    metrics = _mapping(metrics, "the top level")
    ks = tuple(sorted((k for k in metrics if re.fullmatch(r"pass@\d+", k)), key=_k_of))
    counts = _mapping(metrics.get("counts", {}), "counts")
    tasks = counts.get("tasks")
    if tasks is None and isinstance(metrics.get("detail"), Mapping) and ks:
        tasks = len(_mapping(metrics["detail"].get(ks[0], {}), f"detail.{ks[0]}"))
    tasks = None if tasks is None else int(_number(tasks, "counts.tasks"))
    overall = PassAtKRow("all tasks", tasks, tuple(_number(metrics[k], k) for k in ks))

    groups: tuple[VerdictGroup, ...] | None = None
    samples = 0
    if "outcomes" in counts:
        outcomes = {
            str(word): int(_number(n, f"counts.outcomes.{word}"))
            for word, n in _mapping(counts["outcomes"], "counts.outcomes").items()
        }
        samples = sum(outcomes.values())
        # Every known word is listed, zeros too, so the tables say what each group is made of.
        known = [v.value for v in Verdict] + ["infra_error"]
        members: dict[str, list[OutcomeCount]] = {label: [] for label in GROUP_ORDER}
        for word in known + sorted(set(outcomes) - set(known)):
            group = outcome_group(word)
            members.setdefault(group, []).append(OutcomeCount(word, group, outcomes.get(word, 0)))
        groups = tuple(
            VerdictGroup(label, _GROUP_TACO[label], sum(o.samples for o in found), tuple(found))
            for label, found in members.items()
        )

    settings = metrics.get("settings")
    timeline: tuple[tuple[float, float, float], ...] | None = None
    if isinstance(run_stats, Mapping):
        timeline = _timeline(run_stats.get("timeline"))
        run_stats = {k: v for k, v in run_stats.items() if k != "timeline"}
    return ReportData(
        title=title,
        ks=ks,
        overall=overall,
        by_difficulty=_table(metrics, "by_difficulty", ks),
        by_skill=_table(metrics, "by_skill", ks),
        tasks=tasks,
        samples=samples,
        verdict_groups=groups,
        settings=None if settings is None else flatten(settings),
        run_stats=None if run_stats is None else flatten(run_stats),
        run_stats_problem=run_stats_problem,
        timeline=timeline,
    )


def _timeline(value: object) -> tuple[tuple[float, float, float], ...] | None:
    """The points of run_stats.json's timeline, or None when absent or not as `harness run` writes it."""
    if not isinstance(value, Mapping) or value.get("columns") != ["seconds", "generated", "evaluated"]:
        return None
    points = value.get("points")
    if not isinstance(points, list) or not points:
        return None
    try:
        return tuple((float(t), float(g), float(e)) for t, g, e in points)
    except (TypeError, ValueError):
        return None


# --- values as table cells -----------------------------------------------------------------------


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{100 * fraction:.2f}%"


def format_value(value: object) -> str:
    """A scalar from a JSON file, for a table cell."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    return str(value)
