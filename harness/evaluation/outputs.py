"""The evaluation's output files in TACO's layouts: ``results.json`` and ``metrics.json``."""

from __future__ import annotations

from pathlib import Path

from harness.data.atomic import write_json_atomic
from harness.evaluation.session import EvaluationOutcome
from harness.judging.verdicts import SampleResult, SampleStatus

RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.json"


def taco_results(results: dict[int, list[SampleResult]]) -> dict[str, list[list[bool | int] | None]]:
    """The official results.json layout.  An infrastructure failure is written as null: it is not a
    verdict, and TACO's scripts would otherwise score whatever stood in its place."""
    return {
        str(task): [r.taco() if r.status is SampleStatus.JUDGED else None for r in samples]
        for task, samples in sorted(results.items())
    }


def write_outputs(outcome: EvaluationOutcome, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / RESULTS_FILE, taco_results(outcome.results))
    write_json_atomic(directory / METRICS_FILE, outcome.metrics)
