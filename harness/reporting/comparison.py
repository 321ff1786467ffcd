"""Two evaluations side by side (``harness compare A B``): pass@k of each with its bootstrap
confidence interval, the tasks whose pass@1 differs and which way, and a paired test of the pass@1
difference over the tasks both scored (``harness.scoring.confidence``: a paired bootstrap interval
of B - A and the paired sign-flip permutation test; why that test is said there).

A and B are output directories of ``harness evaluate`` or ``run`` (their ``results.json``, and
``metrics.json`` for what produced them), or ``results.json`` files.  Scores come from
``results.json``, as TACO's own scripts take them (a null sample is not scored); pass@k follows
TACO's rule (a k only when every task has k scored samples), as ``metrics.json`` does.  Two runs
that ``metrics.json`` says were produced on different datasets (split, or content digest) or by
different judges are refused with one line; other differences in the settings (the judge's code,
the time limit, the sandbox) are noted beside the figures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ReportError
from harness.scoring.confidence import (
    CONFIDENCE,
    RESAMPLES,
    SEED,
    Interval,
    PairedComparison,
    bootstrap_interval,
    paired_comparison,
)
from harness.scoring.passk import DEFAULT_KS, pass_at_k, reported_ks

METHOD = (
    f"pass@k intervals: {CONFIDENCE:.0%} percentile bootstrap over tasks ({RESAMPLES:,} resamples, seed {SEED}). "
    "Paired, over the tasks both runs scored: the difference of pass@1 (B - A) with a paired bootstrap interval "
    "(the same tasks drawn for both runs), and the two-sided paired sign-flip permutation test of no difference "
    "(each task's difference equally likely to have either sign): it tests the mean difference that pass@1 "
    "compares, needs no symmetric or continuous differences (unlike Wilcoxon's test: pass@1 differences are "
    "few discrete values with many ties), and is exact when few tasks differ."
)


@dataclass(frozen=True)
class RunScores:
    """One evaluation: each task's (scored samples, passed samples), and its metrics.json if any."""

    name: str
    counts: Mapping[int, tuple[int, int]]
    metrics: Mapping[str, Any] | None

    def pass_at_1(self, task: int) -> float:
        n, c = self.counts[task]
        return c / n


@dataclass(frozen=True)
class TaskChange:
    task_id: int
    a: float  # pass@1 in A
    b: float

    @property
    def difference(self) -> float:
        return self.b - self.a


@dataclass(frozen=True)
class Comparison:
    a: RunScores
    b: RunScores
    a_pass: Mapping[str, Interval]  # pass@k -> estimate and interval, for each k reported for A
    b_pass: Mapping[str, Interval]
    ks: tuple[str, ...]  # every k reported for either
    paired: PairedComparison | None  # None: no task that both scored
    changed: tuple[TaskChange, ...]  # tasks whose pass@1 differs, largest change first
    only_a: tuple[int, ...]  # tasks scored in A only
    only_b: tuple[int, ...]
    notes: tuple[str, ...]  # settings that differ without making the runs incomparable


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: not found ({what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}".replace("\n", " ")) from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _passed(verdicts: list) -> bool:
    """TACO's rule: every entry > 0 (True is the only such value in results.json)."""
    return all(v is True or (type(v) is int and v > 0) for v in verdicts)


def scores_of_results(results: object, name: str) -> dict[int, tuple[int, int]]:
    """{task: (scored samples, passed)} from a results.json layout (``{task_id: [[verdicts] | null, ...]}``)."""
    if not isinstance(results, Mapping):
        raise ReportError(f"{name}: results.json should be an object of task ids")
    counts: dict[int, tuple[int, int]] = {}
    for task, samples in results.items():
        try:
            task_id = int(task)
        except (TypeError, ValueError):
            raise ReportError(f"{name}: results.json has a task id that is not a number: {task!r:.40}") from None
        if not isinstance(samples, list) or not all(s is None or isinstance(s, list) for s in samples):
            raise ReportError(f"{name}: results.json task {task_id}: a list of verdict lists (or nulls) is expected")
        scored = [s for s in samples if s is not None]
        counts[task_id] = (len(scored), sum(_passed(s) for s in scored))
    return counts


def read_run(path: Path) -> RunScores:
    """An output directory (its results.json and, when there, metrics.json) or one results.json file."""
    path = Path(path)
    results_file = path / "results.json" if path.is_dir() else path
    metrics_file = results_file.parent / "metrics.json"
    results = _read_json(results_file, "an output directory of `harness evaluate` or `run`, or its results.json")
    metrics = _read_json(metrics_file, "") if metrics_file.exists() and results_file.name == "results.json" else None
    return RunScores(str(path), scores_of_results(results, str(path)), metrics if isinstance(metrics, Mapping) else None)


# --- what produced them ----------------------------------------------------------------------------


def _part(metrics: Mapping[str, Any] | None, *keys: str) -> Any:
    value: Any = metrics
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def incompatibility(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> str | None:
    """Why two runs cannot be compared, as far as their metrics.json record it; None when nothing says so."""
    da, db = _part(a, "provenance", "dataset"), _part(b, "provenance", "dataset")
    if isinstance(da, Mapping) and isinstance(db, Mapping):
        if da.get("split") and db.get("split") and da["split"] != db["split"]:
            return f"different dataset splits ({da['split']} and {db['split']})"
        same_kind = da.get("digest_of") is not None and da.get("digest_of") == db.get("digest_of")
        # A file's digest is of its bytes; rows' digest is of the selected rows, so it differs with the filters.
        comparable = same_kind and (da.get("digest_of") != "selected rows" or da.get("filters") == db.get("filters"))
        if comparable and da.get("digest") and db.get("digest") and da["digest"] != db["digest"]:
            return (
                f"different datasets ({da.get('source')}: {str(da['digest'])[:19]}…, "
                f"{db.get('source')}: {str(db['digest'])[:19]}…)"
            )
    ja, jb = _part(a, "settings", "judge"), _part(b, "settings", "judge")
    if ja is not None and jb is not None and ja != jb:
        return f"different judges ({ja} and {jb})"
    return None


def setting_notes(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Settings that differ between the runs but leave them comparable; and what could not be checked."""
    if a is None or b is None:
        missing = " and ".join(name for name, m in (("A", a), ("B", b)) if m is None)
        return (f"{missing} without metrics.json: datasets and judges not checked",)
    notes = []
    for key, what in (("judge_code", "judge code"), ("timeout_s", "time limit (s)"), ("sandbox", "sandbox")):
        va, vb = _part(a, "settings", key), _part(b, "settings", key)
        if va is not None and vb is not None and va != vb:
            notes.append(f"{what} differs: {va} (A), {vb} (B)")
    if not isinstance(_part(a, "provenance", "dataset"), Mapping) or not isinstance(_part(b, "provenance", "dataset"), Mapping):
        notes.append("the dataset is not recorded for both runs: not checked")
    return tuple(notes)


# --- the comparison ---------------------------------------------------------------------------------


def _pass_at_k(run: RunScores) -> dict[str, Interval]:
    counts = list(run.counts.values())
    table = {}
    for k in reported_ks([n for n, _ in counts], DEFAULT_KS):
        table[f"pass@{k}"] = bootstrap_interval([pass_at_k(n, c, k) for n, c in counts])
    return table


def compare_runs(a: RunScores, b: RunScores) -> Comparison:
    """Raises ReportError (one line) when the metrics say the runs are of different datasets or judges."""
    why = incompatibility(a.metrics, b.metrics)
    if why is not None:
        raise ReportError(f"cannot compare {a.name} and {b.name}: {why}")
    scored_a = {t for t, (n, _) in a.counts.items() if n > 0}
    scored_b = {t for t, (n, _) in b.counts.items() if n > 0}
    common = sorted(scored_a & scored_b)
    paired = None
    if common:
        paired = paired_comparison([a.pass_at_1(t) for t in common], [b.pass_at_1(t) for t in common])
    changed = [TaskChange(t, a.pass_at_1(t), b.pass_at_1(t)) for t in common]
    changed = sorted((c for c in changed if abs(c.difference) > 1e-12), key=lambda c: (-abs(c.difference), c.task_id))
    a_pass, b_pass = _pass_at_k(a), _pass_at_k(b)
    ks = tuple(sorted(set(a_pass) | set(b_pass), key=lambda k: int(k[5:])))
    return Comparison(
        a=a,
        b=b,
        a_pass=a_pass,
        b_pass=b_pass,
        ks=ks,
        paired=paired,
        changed=tuple(changed),
        only_a=tuple(sorted(scored_a - scored_b)),
        only_b=tuple(sorted(scored_b - scored_a)),
        notes=setting_notes(a.metrics, b.metrics),
    )


def comparison_record(comparison: Comparison) -> dict:
    """The comparison for machines (``harness compare --json``)."""

    def run(scores: RunScores, table: Mapping[str, Interval]) -> dict:
        return {
            "path": scores.name,
            "tasks": len(scores.counts),
            "samples_scored": sum(n for n, _ in scores.counts.values()),
            **{k: interval.record() for k, interval in table.items()},
        }

    return {
        "a": run(comparison.a, comparison.a_pass),
        "b": run(comparison.b, comparison.b_pass),
        "paired_pass@1": comparison.paired.record() if comparison.paired is not None else None,
        "changed": [
            {"task_id": c.task_id, "a": c.a, "b": c.b, "difference": c.difference, "better": "B" if c.difference > 0 else "A"}
            for c in comparison.changed
        ],
        "only_a": list(comparison.only_a),
        "only_b": list(comparison.only_b),
        "notes": list(comparison.notes),
        "method": METHOD,
    }


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _cell(interval: Interval | None) -> str:
    if interval is None:
        return "not reported"
    return f"{_percent(interval.estimate)} [{100 * interval.low:.2f}, {100 * interval.high:.2f}]"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def comparison_text(comparison: Comparison, limit: int = 20) -> str:
    """The comparison for people: a small table, the paired test, the tasks that changed (at most
    *limit* of them; 0: all)."""
    a, b = comparison.a, comparison.b
    rows = [["", f"A: {a.name}", f"B: {b.name}"], ["tasks", f"{len(a.counts):,}", f"{len(b.counts):,}"]]
    rows += [[k, _cell(comparison.a_pass.get(k)), _cell(comparison.b_pass.get(k))] for k in comparison.ks]
    if not comparison.ks:
        rows.append(["pass@1", "not reported", "not reported"])
    lines = _table(rows, set())
    lines.append(f"(pass@k [{CONFIDENCE:.0%} bootstrap interval over tasks])")
    paired = comparison.paired
    lines.append("")
    if paired is None:
        lines.append("No task was scored in both runs: no paired comparison.")
    else:
        d = paired.difference
        how = "exact" if paired.exact else f"{RESAMPLES:,} random sign assignments"
        lines.append(
            f"Paired over {paired.tasks:,} common tasks, pass@1 B - A: {_points(d.estimate)} points, "
            f"{d.confidence:.0%} interval [{_points(d.low)}, {_points(d.high)}] (paired bootstrap over tasks)"
        )
        lines.append(f"p = {paired.p_value:.4g} (two-sided paired sign-flip permutation test, {how})")
        lines.append(f"B better on {paired.b_better:,} tasks, worse on {paired.b_worse:,}, the same on {paired.same:,}")
    for name, tasks in (("A", comparison.only_a), ("B", comparison.only_b)):
        if tasks:
            shown = ", ".join(map(str, tasks[:20])) + (f", … ({len(tasks)} in all)" if len(tasks) > 20 else "")
            lines.append(f"Scored only in {name} (not paired): {shown}")
    if comparison.changed:
        shown_changes = comparison.changed if limit <= 0 else comparison.changed[:limit]
        lines += ["", f"Tasks where pass@1 differs ({len(comparison.changed):,}):"]
        rows = [["task", "A", "B", "B - A", ""]]
        rows += [
            [str(c.task_id), _percent(c.a), _percent(c.b), _points(c.difference), "B better" if c.difference > 0 else "A better"]
            for c in shown_changes
        ]
        lines += ["  " + line for line in _table(rows, {0, 1, 2, 3})]
        if len(shown_changes) < len(comparison.changed):
            lines.append(f"  … {len(comparison.changed) - len(shown_changes):,} more (--limit 0 lists all)")
    elif paired is not None:
        lines += ["", "pass@1 is the same on every common task."]
    lines += [f"note: {note}" for note in comparison.notes]
    return "\n".join(lines) + "\n"
