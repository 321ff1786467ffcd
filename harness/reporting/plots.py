"""The report's PNG plots from a ``ReportData``: pass@k by difficulty, the verdict mix, and the
timeline of a `harness run`.

matplotlib is imported when the first plot is drawn, not with this module, so importing the report
(and so the CLI) stays free of it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from harness.reporting.model import INFRA_GROUP, OTHER_GROUP, PLOTS, PlotImage, ReportData, percent

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 100

_GROUP_COLOURS = {
    "passed": "#2e9e44",
    "wrong answer": "#d62728",
    "timeout": "#ff8c1a",
    "runtime error": "#8e44ad",
    "compile error": "#8c564b",
    INFRA_GROUP: "#7f7f7f",
    OTHER_GROUP: "#17becf",
}


def _new_figure(image: PlotImage) -> Figure:
    # Imported here: importing this module (and so the CLI) stays free of matplotlib.  The Agg
    # canvas is attached explicitly instead of choosing a pyplot backend: no display is needed
    # and no global matplotlib state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(image.width_px / _DPI, image.height_px / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
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
        [row.name if row.tasks is None else f"{row.name}\n{row.tasks:,} task{'' if row.tasks == 1 else 's'}" for row in rows],
        fontsize=9,
    )
    axes.set_ylim(0, 110)
    axes.set_ylabel("pass@k (%)")
    axes.legend(loc="upper right")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    return _png(figure)


def plot_verdict_mix(data: ReportData, image: PlotImage = PLOTS.verdict_mix) -> bytes:
    """Horizontal bars: samples per verdict group, with count and share."""
    from matplotlib.ticker import MaxNLocator

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
    locator = axes.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default one (AutoLocator) is
        locator.set_params(integer=True)
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
