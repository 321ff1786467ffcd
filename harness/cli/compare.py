"""``harness compare A B``: two evaluations side by side (``harness.reporting.comparison``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.reporting.comparison import compare_runs, comparison_record, comparison_text, read_run


@click.command("compare")
@click.argument("a", metavar="A", type=click.Path(exists=True, path_type=Path))
@click.argument("b", metavar="B", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Tasks that changed to list (0: all).")
def compare_command(a: Path, b: Path, as_json: bool, limit: int) -> None:
    """Compare two evaluations: output directories of `harness evaluate` or `run` (or their results.json).

    pass@k of each with a 95% bootstrap interval over tasks; over the tasks both scored, the pass@1
    difference (B - A) with a paired bootstrap interval and a paired sign-flip permutation test; and
    the tasks whose pass@1 differs.  Runs of different datasets or judges (as their metrics.json
    record them) are refused."""
    comparison = compare_runs(read_run(a), read_run(b))
    if as_json:
        click.echo(json.dumps(comparison_record(comparison), indent=2))
    else:
        click.echo(comparison_text(comparison, limit), nl=False)
