"""A human-readable report of one evaluation output directory: ``report.md``, ``report.html`` and
two PNG plots beside ``metrics.json``.

Pure core, effects at the edges: ``build_report_data`` turns the parsed ``metrics.json`` (and the
optional ``run_stats.json``) into a ``ReportData``; ``render_markdown`` and ``render_html`` turn that
into text; only ``write_report`` reads files, draws the plots and writes.  The HTML is one file
with inline CSS, no script and no network resource, and refers to the plots by relative path, so
the directory can be copied or served anywhere as it is.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness.data.atomic import write_bytes_atomic
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


_DPI = 100
PLOTS = ReportImages(
    pass_at_k=PlotImage("pass_at_k_by_difficulty.png", 800, 460, "pass@k by difficulty"),
    verdict_mix=PlotImage("verdict_mix.png", 800, 460, "verdict breakdown of the samples"),
    timeline=PlotImage("run_timeline.png", 800, 460, "samples generated and evaluated during the run"),
)


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]


# --- building the data (pure) -------------------------------------------------------------------


def _k_of(key: str) -> int:
    return int(key.removeprefix("pass@"))


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"metrics.json: {where} should be a number, got {value!r:.60}")
    return float(value)


def _mapping(value, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ReportError(f"metrics.json: {where} should be an object, got {type(value).__name__}")
    return value


def _row(name: str, entry: Mapping, ks: Sequence[str], where: str) -> PassAtKRow:
    tasks = entry.get("tasks")
    return PassAtKRow(
        name=name,
        tasks=None if tasks is None else int(_number(tasks, f"{where}.tasks")),
        values=tuple(None if entry.get(k) is None else _number(entry[k], f"{where}.{k}") for k in ks),
    )


def _table(metrics: Mapping, key: str, ks: Sequence[str]) -> tuple[PassAtKRow, ...] | None:
    if key not in metrics:
        return None
    groups = _mapping(metrics[key], key)
    return tuple(
        _row(str(name), _mapping(entry, f"{key}[{name!r}]"), ks, f"{key}[{name!r}]") for name, entry in groups.items()
    )


def format_value(value) -> str:
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


def flatten(value, prefix: str = "") -> tuple[tuple[str, str], ...]:
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
    metrics: Mapping,
    run_stats=None,
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

    groups = None
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
    timeline = None
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


def _timeline(value) -> tuple[tuple[float, float, float], ...] | None:
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


# --- rendering (pure) ---------------------------------------------------------------------------


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{100 * fraction:.2f}%"


def _summary(data: ReportData) -> str:
    parts = []
    if data.tasks is not None:
        parts.append(f"{data.tasks:,} tasks")
    if data.verdict_groups is not None:
        passed = next(g.samples for g in data.verdict_groups if g.label == "passed")
        infra = next(g.samples for g in data.verdict_groups if g.label == INFRA_GROUP)
        parts.append(f"{data.samples:,} samples ({passed:,} passed, {infra:,} infrastructure errors)")
    overall = ", ".join(f"{k} {percent(v)}" for k, v in zip(data.ks, data.overall.values))
    return "; ".join(parts + ([overall] if overall else [])) + "."


_INFRA_NOTE = (
    "Infrastructure errors (the sandbox failed on every retry) are not scored: they are left out of "
    "n for their task. Shares are of all samples."
)

# CommonMark backslash-escapes these; escaping them keeps a skill name from becoming markup.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&!{}])")


def md_text(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int]) -> list[str]:
    align = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _pass_numeric(data: ReportData) -> range:
    return range(1, 2 + len(data.ks))  # tasks and every pass@k: all columns after the name


def _pass_rows(rows: Sequence[PassAtKRow]) -> list[list[str]]:
    return [[r.name, format_value(r.tasks), *(percent(v) for v in r.values)] for r in rows]


def _group_rows(data: ReportData) -> list[list[str]]:
    return [
        [g.label, g.taco, f"{g.samples:,}", percent(data.share(g.samples)), ", ".join(o.outcome for o in g.outcomes) or "—"]
        for g in data.verdict_groups or ()
    ]


def _outcome_rows(data: ReportData) -> list[list[str]]:
    return [[o.outcome, o.group, f"{o.samples:,}", percent(data.share(o.samples))] for o in data.outcomes]


def render_markdown(data: ReportData, images: ReportImages = PLOTS) -> str:
    lines = [f"# {md_text(data.title)}", "", md_text(_summary(data)), ""]
    pass_header = ["", "tasks", *data.ks]
    lines += ["## pass@k", ""] + _md_table(pass_header, _pass_rows([data.overall]), _pass_numeric(data))
    lines += ["## Plots", ""]
    for image in _shown(data, images):
        lines += [f"![{md_text(image.alt)}]({quote(image.filename)})", ""]
    for heading, rows, name in (("By difficulty", data.by_difficulty, "difficulty"), ("By skill", data.by_skill, "skill")):
        lines += [f"### {heading}", ""]
        if rows is None:
            lines += ["Not recorded in metrics.json.", ""]
        else:
            lines += _md_table([name, "tasks", *data.ks], _pass_rows(rows), _pass_numeric(data))
    lines += ["## Verdicts", ""]
    if data.verdict_groups is None:
        lines += ["Not recorded in metrics.json (no counts.outcomes).", ""]
    else:
        lines += _md_table(["verdict", "TACO value", "samples", "share", "outcomes"], _group_rows(data), (2, 3))
        lines += [md_text(_INFRA_NOTE), "", "### Outcomes", ""]
        lines += _md_table(["outcome", "verdict", "samples", "share"], _outcome_rows(data), (2, 3))
    lines += ["## Evaluation settings", ""]
    lines += ["Not recorded in metrics.json.", ""] if data.settings is None else _md_table(["setting", "value"], data.settings, ())
    if data.run_stats is not None or data.run_stats_problem is not None:
        lines += ["## Run statistics", ""]
        if data.run_stats_problem is not None:
            lines += [md_text(data.run_stats_problem), ""]
        if data.run_stats is not None:
            lines += _md_table(["statistic", "value"], data.run_stats, ())
    return "\n".join(lines).rstrip("\n") + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
       background: #fff; max-width: 1160px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figure img { width: 560px; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; }
.note { color: #555; }
""".strip()


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int]) -> str:
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="num">{_e(v)}</{tag}>' if i in numeric else f"<{tag}>{_e(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<table id="{_e(table_id)}">\n<thead><tr>{cells("th", header)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _figure(image: PlotImage) -> str:
    return (
        f'<figure><img src="{_e(quote(image.filename))}" width="{image.width_px}" height="{image.height_px}" '
        f'alt="{_e(image.alt)}"><figcaption>{_e(image.alt)}</figcaption></figure>'
    )


def _shown(data: ReportData, images: ReportImages) -> tuple[PlotImage, ...]:
    """The plots of this report: the timeline only for a run that recorded one."""
    return (images.pass_at_k, images.verdict_mix) + ((images.timeline,) if data.timeline else ())


def render_html(data: ReportData, images: ReportImages = PLOTS) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.title)}</title>",
        f"<style>\n{_CSS}\n</style></head>",
        "<body>",
        f"<h1>{_e(data.title)}</h1>",
        f'<p id="summary">{_e(_summary(data))}</p>',
        '<h2 id="pass-at-k">pass@k</h2>',
        _html_table("pass-at-k-overall", ["", "tasks", *data.ks], _pass_rows([data.overall]), _pass_numeric(data)),
        f'<div class="figures">{"".join(_figure(image) for image in _shown(data, images))}</div>',
    ]
    for heading, rows, name, table_id in (
        ("By difficulty", data.by_difficulty, "difficulty", "pass-at-k-by-difficulty"),
        ("By skill", data.by_skill, "skill", "pass-at-k-by-skill"),
    ):
        parts.append(f"<h3>{heading}</h3>")
        if rows is None:
            parts.append('<p class="note">Not recorded in metrics.json.</p>')
        else:
            parts.append(_html_table(table_id, [name, "tasks", *data.ks], _pass_rows(rows), _pass_numeric(data)))
    parts.append('<h2 id="verdicts-heading">Verdicts</h2>')
    if data.verdict_groups is None:
        parts.append('<p class="note">Not recorded in metrics.json (no counts.outcomes).</p>')
    else:
        parts.append(_html_table("verdicts", ["verdict", "TACO value", "samples", "share", "outcomes"], _group_rows(data), (2, 3)))
        parts.append(f'<p class="note">{_e(_INFRA_NOTE)}</p>')
        parts.append("<h3>Outcomes</h3>")
        parts.append(_html_table("outcomes", ["outcome", "verdict", "samples", "share"], _outcome_rows(data), (2, 3)))
    parts.append("<h2>Evaluation settings</h2>")
    if data.settings is None:
        parts.append('<p class="note">Not recorded in metrics.json.</p>')
    else:
        parts.append(_html_table("settings", ["setting", "value"], data.settings, ()))
    if data.run_stats is not None or data.run_stats_problem is not None:
        parts.append("<h2>Run statistics</h2>")
        if data.run_stats_problem is not None:
            parts.append(f'<p class="note">{_e(data.run_stats_problem)}</p>')
        if data.run_stats is not None:
            parts.append(_html_table("run-stats", ["statistic", "value"], data.run_stats, ()))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# --- plots and files (effects) ------------------------------------------------------------------

_GROUP_COLOURS = {
    "passed": "#2e9e44",
    "wrong answer": "#d62728",
    "timeout": "#ff8c1a",
    "runtime error": "#8e44ad",
    "compile error": "#8c564b",
    INFRA_GROUP: "#7f7f7f",
    OTHER_GROUP: "#17becf",
}


def _new_figure(image: PlotImage):
    # Imported here: importing this module (and so the CLI) stays free of matplotlib.  The Agg
    # canvas is attached explicitly instead of choosing a pyplot backend: no display is needed
    # and no global matplotlib state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(image.width_px / _DPI, image.height_px / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def plot_pass_at_k(data: ReportData, image: PlotImage = PLOTS.pass_at_k) -> bytes:
    """Grouped bars: one group per difficulty, one bar per k."""
    figure = _new_figure(image)
    axes = figure.add_subplot()
    rows = data.by_difficulty or ()
    axes.set_title("pass@k by difficulty")
    if not rows or not data.ks:
        axes.text(0.5, 0.5, "no pass@k by difficulty in metrics.json", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return _png(figure)
    width = 0.8 / len(data.ks)
    for i, k in enumerate(data.ks):
        xs = [group + (i - (len(data.ks) - 1) / 2) * width for group in range(len(rows))]
        heights = [100 * (row.values[i] or 0.0) for row in rows]
        bars = axes.bar(xs, heights, width, label=k, color=f"C{i}")
        axes.bar_label(bars, labels=[f"{h:.1f}" for h in heights], fontsize=8, padding=2)
    axes.set_xticks(range(len(rows)))
    axes.set_xticklabels(
        [row.name if row.tasks is None else f"{row.name}\n{row.tasks:,} task{'' if row.tasks == 1 else 's'}" for row in rows], fontsize=9
    )
    axes.set_ylim(0, 110)
    axes.set_ylabel("pass@k (%)")
    axes.legend(loc="upper right")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    return _png(figure)


def plot_verdict_mix(data: ReportData, image: PlotImage = PLOTS.verdict_mix) -> bytes:
    """Horizontal bars: samples per verdict group, with count and share."""
    figure = _new_figure(image)
    axes = figure.add_subplot()
    groups = data.verdict_groups or ()
    axes.set_title(f"Sample verdicts ({data.samples:,} samples)")
    if not groups:
        axes.text(0.5, 0.5, "no counts.outcomes in metrics.json", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return _png(figure)
    labels = [f"{g.label} ({g.taco})" for g in groups]
    counts = [g.samples for g in groups]
    bars = axes.barh(labels, counts, color=[_GROUP_COLOURS[g.label] for g in groups])
    axes.bar_label(bars, labels=[f"{n:,} ({percent(data.share(n))})" for n in counts], fontsize=9, padding=3)
    axes.invert_yaxis()  # the first group on top, as in the tables
    axes.set_xlim(0, max(max(counts), 1) * 1.25)  # room for the labels
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("samples")
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    return _png(figure)


def plot_timeline(data: ReportData, image: PlotImage = PLOTS.timeline) -> bytes:
    """Samples generated and evaluated against time: the gap between the lines is the evaluation
    backlog, and where the evaluated line ends after the generated one is the run's tail."""
    figure = _new_figure(image)
    axes = figure.add_subplot()
    points = data.timeline or ()
    seconds = [p[0] for p in points]
    axes.plot(seconds, [p[1] for p in points], label="generated", color="C0")
    axes.plot(seconds, [p[2] for p in points], label="evaluated", color="C2")
    axes.set_title("harness run: samples over time")
    axes.set_xlabel("seconds since the run started")
    axes.set_ylabel("samples")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return _png(figure)


def _read_json(path: Path):
    """Parsed JSON; ReportError (one line) for a missing, unreadable or invalid file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: not found (write it with `harness evaluate --output {path.parent}`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}".replace("\n", " ")) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def write_report(directory: Path, images: ReportImages = PLOTS) -> ReportFiles:
    """Read DIRECTORY/metrics.json (and run_stats.json when present); write the report there."""
    directory = Path(directory)
    metrics = _read_json(directory / "metrics.json")
    run_stats, problem = None, None
    if (directory / "run_stats.json").exists():
        # Run statistics are an extra: a damaged file is noted in the report, not fatal to it.
        try:
            run_stats = _read_json(directory / "run_stats.json")
        except ReportError as exc:
            problem = f"run_stats.json could not be shown: {exc}"
    title = f"TACO evaluation report: {directory.resolve().name}"
    data = build_report_data(metrics, run_stats, title, problem)
    try:
        plots = (
            (directory / images.pass_at_k.filename, plot_pass_at_k(data, images.pass_at_k)),
            (directory / images.verdict_mix.filename, plot_verdict_mix(data, images.verdict_mix)),
        ) + (((directory / images.timeline.filename, plot_timeline(data, images.timeline)),) if data.timeline else ())
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("matplotlib"):
            raise
        raise ReportError("the plots need matplotlib: pip install 'matplotlib>=3.7'") from None
    markdown, page = directory / "report.md", directory / "report.html"
    # The HTML last: once it exists, the images it refers to do too.
    outputs = (
        *plots,
        (markdown, render_markdown(data, images).encode("utf-8")),
        (page, render_html(data, images).encode("utf-8")),
    )
    for path, content in outputs:
        try:
            write_bytes_atomic(path, content)
        except OSError as exc:
            raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return ReportFiles(markdown, page, tuple(path for path, _ in plots))
