"""``harness report``, and the report that ``evaluate`` and ``run`` write at their end."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import say
from harness.reporting.report import write_report


@click.command("report")
@click.argument("source", metavar="DIRECTORY|FILE", type=click.Path(exists=True, path_type=Path))
def report_command(source: Path) -> None:
    """Write report.md, report.html and PNG plots for an evaluation output DIRECTORY (its metrics.json
    and run_stats.json), or for one metrics FILE such as an official taco_metrics.json (beside it)."""
    files = write_report(source)
    click.echo(f"report: {files.html} {files.markdown}")


def write_report_or_warn(output: Path) -> None:
    """The report is a convenience on top of results.json and metrics.json, already written: any
    failure of it is a warning, never a lost or failed evaluation."""
    try:
        files = write_report(output)
    except Exception as exc:  # see the docstring
        first_line = next(iter(str(exc).splitlines()), "")
        say(f"warning: no report ({type(exc).__name__}: {first_line}); retry with `harness report {output}`")
        return
    click.echo(f"report: {files.html} {files.markdown}")
