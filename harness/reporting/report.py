"""A human-readable report of one evaluation output directory: ``report.md``, ``report.html`` and
PNG plots beside ``metrics.json``.

Pure core, effects at the edges: ``model.build_report_data`` turns the parsed ``metrics.json`` (and
the optional ``run_stats.json``) into a ``ReportData``; ``render`` turns that into markdown and HTML
and ``plots`` into PNG images; only ``write_report``, here, reads files and writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.atomic import write_bytes_atomic
from harness.errors import ReportError
from harness.reporting.model import PLOTS, ReportImages, build_report_data
from harness.reporting.plots import plot_pass_at_k, plot_timeline, plot_verdict_mix
from harness.reporting.render import render_html, render_markdown


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]


def _read_json(path: Path) -> Any:
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
