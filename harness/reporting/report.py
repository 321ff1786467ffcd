"""A human-readable report of one evaluation output directory: ``report.md``, ``report.html`` and
PNG plots beside ``metrics.json``.

Pure core, effects at the edges: ``model.build_report_data`` turns the parsed ``metrics.json`` (and
the optional ``run_stats.json``) into a ``ReportData``; ``render`` turns that into markdown and HTML
and ``plots`` into PNG images; only ``write_report``, here, reads files and writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.data.atomic import write_bytes_atomic
from harness.errors import ReportError
from harness.reporting.model import PLOTS, ReportImages, build_report_data, report_title
from harness.reporting.plots import plot_pass_at_k, plot_timeline, plot_verdict_mix
from harness.reporting.problems import problem_pages, read_problems
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


def write_report(source: Path, images: ReportImages = PLOTS) -> ReportFiles:
    """Read DIRECTORY/metrics.json (and run_stats.json when present), or one metrics FILE (such as an
    official taco_metrics.json); write the report in that directory (for a file: beside it)."""
    source = Path(source)
    directory, metrics_file = (source, source / "metrics.json") if source.is_dir() else (source.parent, source)
    metrics = _read_json(metrics_file)
    run_stats, problem = None, None
    stats_file = directory / "run_stats.json"
    # Beside another file than metrics.json, a run_stats.json may be of another run: not shown.
    if metrics_file.name == "metrics.json" and stats_file.exists():
        # Run statistics are an extra: a damaged file is noted in the report, not fatal to it.
        try:
            run_stats = _read_json(stats_file)
        except ReportError as exc:
            problem = f"run_stats.json could not be shown: {exc}"
    name = directory.resolve().name if metrics_file.name == "metrics.json" else metrics_file.name
    # The model and the dataset when metrics.json records them (else the file's or directory's name).
    title = report_title(metrics, f"TACO evaluation report: {name}")
    data = build_report_data(metrics, run_stats, title, problem)
    # Per-problem results: samples.jsonl of the same run (beside metrics.json), when it was written.
    if metrics_file.name == "metrics.json":
        data = replace(data, problems=read_problems(directory))
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
        *((directory / name, text.encode("utf-8")) for name, text in problem_pages(data.title, data.problems)),
        (markdown, render_markdown(data, images).encode("utf-8")),
        (page, render_html(data, images).encode("utf-8")),
    )
    for path, content in outputs:
        try:
            write_bytes_atomic(path, content)
        except OSError as exc:
            raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return ReportFiles(markdown, page, tuple(path for path, _ in plots))
