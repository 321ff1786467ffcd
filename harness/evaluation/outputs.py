"""The evaluation's output files in TACO's layouts: ``results.json`` and ``metrics.json``; and
``samples.jsonl``, one line per sample with its verdicts and its first failing test; and, when the
corrected judge ran beside TACO's, ``results_corrected.json`` (its verdicts in the layout of
``results.json``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from harness.data.atomic import write_bytes_atomic, write_json_atomic
from harness.data.problems import Problem
from harness.evaluation.session import EvaluationOutcome
from harness.judging.verdicts import SampleResult, SampleStatus
from harness.scoring.metrics import sample_outcome

RESULTS_FILE = "results.json"
CORRECTED_RESULTS_FILE = "results_corrected.json"
METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.jsonl"


def taco_results(results: dict[int, list[SampleResult]]) -> dict[str, list[list[bool | int] | None]]:
    """The official results.json layout.  An infrastructure failure is written as null: it is not a
    verdict, and TACO's scripts would otherwise score whatever stood in its place."""
    return {
        str(task): [r.taco() if r.status is SampleStatus.JUDGED else None for r in samples]
        for task, samples in sorted(results.items())
    }


def corrected_results(results: Mapping[int, Sequence[SampleResult]]) -> dict[str, list[list[bool | int] | None]]:
    """The corrected judge's verdicts in the layout of results.json.  null where it gave none: a
    sample not scored, and every sample of a problem that needs a checker (several valid outputs)."""
    return {
        str(task): [
            r.corrected.taco()
            if r.status is SampleStatus.JUDGED and r.corrected is not None and not r.corrected.needs_checker
            else None
            for r in samples
        ]
        for task, samples in sorted(results.items())
    }


def sample_records(results: Mapping[int, Sequence[SampleResult]], problems: Sequence[Problem] = ()) -> Iterator[dict]:
    """One record per sample, in task and sample order: ``task_id``, ``sample`` (its index in the
    generations file), ``difficulty`` (when *problems* are given), ``status``, ``verdicts`` (TACO's
    list as in results.json, null when not scored), ``stopped_early``, ``outcome`` (the word of
    ``metrics.sample_outcome``), ``failure`` (``FirstFailure.record()``: the first failing test, or
    null), for a sample that was not scored, ``reason``, and when a cluster ran it, ``host``."""
    difficulty = {p.task_id: p.difficulty for p in problems}
    for task, samples in sorted(results.items()):
        for index, result in enumerate(samples):
            judged = result.status is SampleStatus.JUDGED
            record: dict = {"task_id": task, "sample": index}
            if task in difficulty:
                record["difficulty"] = difficulty[task]
            record |= {
                "status": result.status.value,
                "verdicts": result.taco() if judged else None,
                "stopped_early": result.stopped_early,
                "outcome": sample_outcome(result),
                "failure": result.first_failure.record() if result.first_failure is not None else None,
            }
            if not judged:
                record["reason"] = result.detail
            if result.host:
                record["host"] = result.host  # the cluster node that ran it
            yield record


def write_samples(results: Mapping[int, Sequence[SampleResult]], path: Path, problems: Sequence[Problem] = ()) -> None:
    """``samples.jsonl`` (JSON Lines, ASCII: lone surrogates of test data survive)."""
    text = "".join(json.dumps(record) + "\n" for record in sample_records(results, problems))
    write_bytes_atomic(path, text.encode("ascii"))


def write_outputs(outcome: EvaluationOutcome, directory: Path, problems: Sequence[Problem] = ()) -> None:
    """results.json, samples.jsonl (with each task's difficulty when *problems* are given), metrics.json,
    and results_corrected.json when the corrected judge ran."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / RESULTS_FILE, taco_results(outcome.results))
    if any(r.corrected is not None for samples in outcome.results.values() for r in samples):
        write_json_atomic(directory / CORRECTED_RESULTS_FILE, corrected_results(outcome.results))
    else:  # the judge was off: no file of an earlier run left to be read as this one's
        (directory / CORRECTED_RESULTS_FILE).unlink(missing_ok=True)
    write_samples(outcome.results, directory / SAMPLES_FILE, problems)
    write_json_atomic(directory / METRICS_FILE, outcome.metrics)
