"""The report's data: what ``metrics.json`` (and the optional ``run_stats.json``) say, checked and
grouped for people (``build_report_data`` -> ``ReportData``), the report's images, and how a value
is written in a table cell.  Pure: no file is read here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ReportError
from harness.judging.verdicts import Verdict
from harness.reporting.intervals import PassAtKInterval, pass_at_k_intervals
from harness.reporting.problems import ProblemsOverview

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
class JudgesRow:
    """One group's pass@k by both judges, side by side (``values`` of each: one per ReportData.ks)."""

    name: str
    taco_tasks: int | None
    taco: tuple[float | None, ...]
    corrected_tasks: int | None
    corrected: tuple[float | None, ...]


@dataclass(frozen=True)
class DisagreementRow:
    reason: str
    taco_accepts: int  # samples TACO accepts and the corrected judge rejects, first differing on this reason
    corrected_accepts: int


@dataclass(frozen=True)
class CorrectedSection:
    """metrics.json's ``corrected`` and ``disagreements`` blocks, for people."""

    overall: tuple[JudgesRow, ...]  # all tasks, then each difficulty
    by_skill: tuple[JudgesRow, ...]
    taco_same_tasks: tuple[float | None, ...]  # TACO's pass@k over the tasks the corrected judge judges
    tasks: int
    needs_checker: tuple[int, ...]  # task ids: several valid outputs, left out of the corrected pass@k
    needs_checker_samples: int
    needs_checker_taco_accepts: int
    compared: int  # samples both judges judged
    disagreements: tuple[DisagreementRow, ...]
    examples: tuple[tuple[str, ...], ...]  # (task, sample, accepted by, reason, test, output, expected)

    @property
    def totals(self) -> tuple[int, int]:
        return sum(r.taco_accepts for r in self.disagreements), sum(r.corrected_accepts for r in self.disagreements)


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
    # What produced the results (metrics.json's provenance), as (what, value) rows; None: not recorded.
    provenance: tuple[tuple[str, str], ...] | None = None
    # A partial run (metrics.json's coverage): the sentence that says so, and (why, tasks, task ids) rows.
    partial: str | None = None
    left_out: tuple[tuple[str, str, str], ...] = ()
    # (pass@k, why it is not reported) for each k that TACO's rule leaves out (metrics.json's not_reported).
    not_reported: tuple[tuple[str, str], ...] = ()
    # metrics.json's counts.contended_timeouts: (runs done again, samples not scored); None: not recorded.
    contended: tuple[int, int] | None = None
    # Bootstrap confidence intervals of each pass@k, from metrics.json's per-task detail (reporting.intervals).
    intervals: tuple[PassAtKInterval, ...] = ()
    # Per-problem results from samples.jsonl (reporting.problems); None: not recorded (write_report sets it).
    problems: ProblemsOverview | None = None
    # Both judges side by side and where they disagree; None: metrics.json has no ``corrected`` block.
    corrected: CorrectedSection | None = None

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


def _table(
    metrics: Mapping[Any, Any], key: str, ks: Sequence[str], leave_out: Sequence[str] = ()
) -> tuple[PassAtKRow, ...] | None:
    if key not in metrics:
        return None
    groups = _mapping(metrics[key], key)
    return tuple(
        _row(str(name), _mapping(entry, f"{key}[{name!r}]"), ks, f"{key}[{name!r}]")
        for name, entry in groups.items()
        if str(name) not in leave_out
    )


def flatten(value: object, prefix: str = "", cell: Callable[[str, object], str] | None = None) -> tuple[tuple[str, str], ...]:
    """Nested objects as (dotted key, text) rows, so a run_stats.json of any shape can be shown.
    ``cell(key, value)`` writes a scalar (default: ``format_value``)."""
    if isinstance(value, Mapping):
        if not value:
            return ((prefix, "{}"),) if prefix else ()
        return tuple(row for k, v in value.items() for row in flatten(v, f"{prefix}.{k}" if prefix else str(k), cell))
    if isinstance(value, list):
        if all(not isinstance(v, (Mapping, list)) for v in value):
            return ((prefix or "(value)", ", ".join(format_value(v) for v in value) or "[]"),)
        return tuple(row for i, v in enumerate(value) for row in flatten(v, f"{prefix}[{i}]", cell))
    key = prefix or "(value)"
    return ((key, format_value(value) if cell is None else cell(key, value)),)


# Units of run_stats.json's figures, from their names: (name ending, unit, divisor).
_UNITS = (
    ("tokens_per_s", "tok/s", 1),
    ("_per_s", "/s", 1),  # samples_per_s -> samples/s, and so on
    ("seconds", "s", 1),
    ("_bytes", "MiB", 2**20),
)


def with_unit(key: str, value: object) -> str:
    """A run statistic with its unit, from the name of the figure (or of the object holding it, as
    for per-device peaks): seconds in s, bytes in MiB, rates per second."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return format_value(value)
    for name in reversed(key.split(".")[-2:]):
        for ending, unit, divisor in _UNITS:
            if name.endswith(ending):
                if unit == "/s":
                    return f"{format_value(value)} {name.removesuffix(ending)}/s"
                if divisor != 1:
                    return f"{value / divisor:,.1f} {unit}"
                return f"{format_value(value)} {unit}"
    return format_value(value)


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
        # The provenance is shown at the top of the report, from metrics.json.
        run_stats = {k: v for k, v in run_stats.items() if k not in ("timeline", "provenance")}
    partial, left_out = _coverage(metrics.get("coverage"))
    return ReportData(
        title=title,
        ks=ks,
        overall=overall,
        # Tasks without a difficulty (a dataset without the field) are grouped as "None": not a difficulty.
        by_difficulty=_table(metrics, "by_difficulty", ks, leave_out=("None",)),
        by_skill=_table(metrics, "by_skill", ks),
        tasks=tasks,
        samples=samples,
        verdict_groups=groups,
        settings=None if settings is None else flatten(settings),
        run_stats=None if run_stats is None else flatten(run_stats, cell=with_unit),
        run_stats_problem=run_stats_problem,
        timeline=timeline,
        provenance=provenance_rows(metrics.get("provenance")),
        partial=partial,
        left_out=left_out,
        not_reported=tuple((str(k), str(why)) for k, why in _mapping(metrics.get("not_reported", {}), "not_reported").items()),
        contended=_contended(counts.get("contended_timeouts")),
        intervals=pass_at_k_intervals(metrics),
        corrected=_corrected_section(metrics, ks),
    )


def _judges_rows(metrics: Mapping[Any, Any], corrected: Mapping[Any, Any], key: str, ks: Sequence[str]) -> tuple[JudgesRow, ...]:
    """TACO's and the corrected judge's rows of table *key*, matched by name (a group only one judge has
    shows dashes on the other side)."""
    taco = {r.name: r for r in _table(metrics, key, ks, leave_out=("None",)) or ()}
    mine = {r.name: r for r in _table(corrected, key, ks, leave_out=("None",)) or ()}
    blank = PassAtKRow("", None, tuple(None for _ in ks))
    return tuple(
        JudgesRow(name, taco.get(name, blank).tasks, taco.get(name, blank).values, mine.get(name, blank).tasks,
                  mine.get(name, blank).values)
        for name in [*taco, *(n for n in mine if n not in taco)]
    )  # fmt: skip


def _corrected_section(metrics: Mapping[Any, Any], ks: Sequence[str]) -> CorrectedSection | None:
    if "corrected" not in metrics:
        return None
    corrected = _mapping(metrics["corrected"], "corrected")
    counts = _mapping(metrics.get("counts", {}), "counts")
    tasks = corrected.get("tasks")
    taco_tasks = counts.get("tasks")

    def values(source: Mapping[Any, Any], where: str) -> tuple[float | None, ...]:
        return tuple(None if source.get(k) is None else _number(source[k], f"{where}.{k}") for k in ks)

    overall = JudgesRow(
        "all tasks",
        None if taco_tasks is None else int(_number(taco_tasks, "counts.tasks")),
        values(metrics, "the top level"),
        None if tasks is None else int(_number(tasks, "corrected.tasks")),
        values(corrected, "corrected"),
    )
    checker = _mapping(corrected.get("needs_checker", {}), "corrected.needs_checker")
    block = _mapping(metrics.get("disagreements", {}), "disagreements")
    ways = [
        _mapping(_mapping(block.get(way, {}), f"disagreements.{way}").get("by_reason", {}), f"disagreements.{way}.by_reason")
        for way in ("taco_accepts_corrected_rejects", "corrected_accepts_taco_rejects")
    ]
    reasons = [*ways[0], *(r for r in ways[1] if r not in ways[0])]
    several = _mapping(block.get("several_valid_outputs", {}), "disagreements.several_valid_outputs")
    examples = tuple(
        (
            _text(e.get("task_id")), _text(e.get("sample")), _text(e.get("accepted_by")), _text(e.get("reason")),
            _text(e.get("test")), _cell_text(e.get("output")), _cell_text(e.get("expected")),
        )
        for e in block.get("examples", []) if isinstance(e, Mapping)
    )  # fmt: skip
    return CorrectedSection(
        overall=(overall, *_judges_rows(metrics, corrected, "by_difficulty", ks)),
        by_skill=_judges_rows(metrics, corrected, "by_skill", ks),
        taco_same_tasks=values(_mapping(corrected.get("taco_on_same_tasks", {}), "corrected.taco_on_same_tasks"), "taco"),
        tasks=0 if tasks is None else int(_number(tasks, "corrected.tasks")),
        needs_checker=tuple(int(_number(t, "corrected.needs_checker.task_ids")) for t in checker.get("task_ids", [])),
        needs_checker_samples=int(_number(checker.get("samples", 0), "corrected.needs_checker.samples")),
        needs_checker_taco_accepts=int(_number(several.get("taco_accepts", 0), "disagreements.several_valid_outputs")),
        compared=int(_number(block.get("samples_compared", 0), "disagreements.samples_compared")),
        disagreements=tuple(
            DisagreementRow(str(r), int(_number(ways[0].get(r, 0), r)), int(_number(ways[1].get(r, 0), r))) for r in reasons
        ),
        examples=examples,
    )


def _cell_text(value: object, limit: int = 80) -> str:
    """An output or expected text in one table cell: newlines shown as ⏎, cut at *limit* characters."""
    text = "" if value is None else str(value).replace("\n", "⏎")
    return text if len(text) <= limit else text[:limit] + "…"


def _contended(value: object) -> tuple[int, int] | None:
    """counts.contended_timeouts (timeouts that came from waiting for a CPU) as (re-runs, unresolved)."""
    if value is None:
        return None
    entry = _mapping(value, "counts.contended_timeouts")
    return (
        int(_number(entry.get("reruns", 0), "counts.contended_timeouts.reruns")),
        int(_number(entry.get("unresolved", 0), "counts.contended_timeouts.unresolved")),
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


# --- provenance and coverage ---------------------------------------------------------------------

NOT_RECORDED = "not recorded"
# The generation settings in the order people read them, with their labels.
_GENERATION_LABELS = (
    ("n", "samples per task (n)"),
    ("temperature", "temperature"),
    ("top_p", "top-p"),
    ("top_k", "top-k"),
    ("max_new_tokens", "max new tokens"),
    ("dtype", "dtype"),
    ("seed", "seed"),
)


def _short_name(name: str) -> str:
    """A model or dataset for a title: a path by its last part, a hub id as it is."""
    return name.rstrip("/").rsplit("/", 1)[-1] if name.startswith(("/", ".", "~")) else name


def report_title(metrics: Mapping[Any, Any], fallback: str) -> str:
    """The report's title: the model and the dataset when metrics.json records them, else *fallback*."""
    provenance = metrics.get("provenance") if isinstance(metrics, Mapping) else None
    if not isinstance(provenance, Mapping):
        return fallback
    model, dataset = provenance.get("model"), provenance.get("dataset")
    model_name = _short_name(model) if isinstance(model, str) and model != NOT_RECORDED else None
    dataset_name = None
    if isinstance(dataset, Mapping) and isinstance(dataset.get("source"), str):
        dataset_name = f"{_short_name(dataset['source'])} ({dataset.get('split', '?')})"
    if model_name and dataset_name:
        return f"TACO evaluation: {model_name} on {dataset_name}"
    if dataset_name:
        return f"TACO evaluation: {dataset_name}, model not recorded"
    return f"TACO evaluation: {model_name}" if model_name else fallback


def _text(value: object) -> str:
    return NOT_RECORDED if value is None else format_value(value)


def _filters(filters: object) -> str:
    if not isinstance(filters, Mapping):
        return _text(filters)
    parts = []
    for key, label in (("difficulties", "difficulty"), ("skills", "skill")):
        if filters.get(key):
            parts.append(f"{label} {' | '.join(map(str, filters[key]))}")
    indices = filters.get("indices")
    if isinstance(indices, list):
        shown = ", ".join(map(str, indices[:10])) + (f", … ({len(indices)} ids)" if len(indices) > 10 else "")
        parts.append(f"task ids {shown}")
    if filters.get("limit") is not None:
        parts.append(f"limit {filters['limit']}")
    return "; ".join(parts) or "none (every problem of the split)"


def provenance_rows(value: object) -> tuple[tuple[str, str], ...] | None:
    """metrics.json's provenance as (what, value) rows for people; keys this version does not know
    are shown too, flattened.  None when there is no provenance (an older or official file)."""
    if not isinstance(value, Mapping):
        return None
    rows: list[tuple[str, str]] = [("model", _text(value.get("model")))]
    known = {"model", "generation", "dataset", "generations", "evaluation", "harness", "sandbox", "python", "date", "command"}
    generation = value.get("generation")
    if isinstance(generation, Mapping):
        labels = dict(_GENERATION_LABELS)
        rows += [(label, _text(generation.get(key))) for key, label in _GENERATION_LABELS if key in generation]
        rows += [(str(k).replace("_", " "), _text(v)) for k, v in generation.items() if k not in labels and k != "from"]
        rows.append(("generation settings from", _text(generation.get("from"))))
    else:
        rows.append(("generation settings", _text(generation)))
    dataset = value.get("dataset")
    if isinstance(dataset, Mapping):
        split, size = _text(dataset.get("split")), _text(dataset.get("rows"))
        rows.append(("dataset", f"{_text(dataset.get('source'))} (split {split}, {size} rows)"))
        rows.append(("dataset digest", f"{_text(dataset.get('digest'))} (of the {_text(dataset.get('digest_of'))})"))
        rows.append(("filters", _filters(dataset.get("filters"))))
    else:
        rows.append(("dataset", _text(dataset)))
    generations = value.get("generations")
    if isinstance(generations, Mapping):
        rows.append(("generations file", _text(generations.get("path"))))
        rows.append(("generations digest", _text(generations.get("digest"))))
        rows.append(
            ("generations", f"{_text(generations.get('tasks'))} tasks, {_text(generations.get('samples_per_task'))} samples each")
        )
    else:
        rows.append(("generations file", _text(generations)))
    harness = value.get("harness")
    if isinstance(harness, Mapping):
        commit = harness.get("commit")
        where = f" (commit {str(commit)[:12]}{', modified' if harness.get('modified') else ''})" if commit else ""
        rows.append(("harness", f"{_text(harness.get('version'))}{where}"))
    sandbox = value.get("sandbox")
    if isinstance(sandbox, Mapping):
        image = sandbox.get("image")
        shown = f"{image} ({str(sandbox.get('image_id'))[:19]})" if image and sandbox.get("image_id") else image
        rows.append(("sandbox", f"{_text(sandbox.get('kind'))}: {shown or _text(sandbox.get('identity'))}"))
    python = value.get("python")
    if isinstance(python, Mapping):
        rows.append(("Python", f"host {_text(python.get('host'))}, sandbox {_text(python.get('sandbox'))}"))
    rows.append(("command", f"harness {_text(value.get('command'))}"))
    rows.append(("date", _text(value.get("date"))))
    # The evaluation settings have their own section; anything newer is shown as it is.
    rows += [row for key, item in value.items() if key not in known for row in flatten(item, str(key))]
    return tuple(rows)


def _coverage(value: object) -> tuple[str | None, tuple[tuple[str, str, str], ...]]:
    """(the sentence that says a run is partial, the (why, tasks, task ids) rows), or (None, ())."""
    if not isinstance(value, Mapping) or not value.get("partial"):
        return None, ()
    no_generations = [int(_number(t, "coverage.no_generations")) for t in value.get("no_generations") or ()]
    not_in_dataset = [int(_number(t, "coverage.not_in_dataset")) for t in value.get("not_in_dataset") or ()]
    evaluated = value.get("evaluated")
    sentences = []
    if no_generations:
        sentences.append(
            f"{len(no_generations):,} of {_text(value.get('selected'))} selected tasks had no generations and were left out, "
            f"so pass@k is over {_text(evaluated)} task{'' if evaluated == 1 else 's'}."
        )
    if not_in_dataset:
        one = len(not_in_dataset) == 1
        sentences.append(
            f"{len(not_in_dataset):,} task id{'' if one else 's'} of the generations file "
            f"{'is' if one else 'are'} not in the dataset: {'its' if one else 'their'} generations were ignored."
        )
    rows = []
    reasons = (("no generations (selected, left out)", no_generations), ("not in the dataset (ignored)", not_in_dataset))
    for why, ids in reasons:
        if ids:
            shown = ", ".join(map(str, ids[:50])) + (f", … ({len(ids)} in all)" if len(ids) > 50 else "")
            rows.append((why, f"{len(ids):,}", shown))
    return "Partial run: " + " ".join(sentences), tuple(rows)


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
