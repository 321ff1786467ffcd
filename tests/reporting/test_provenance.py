"""The report's top: a title naming the model and the dataset, the provenance table, the partial-run
warning and its table of tasks left out, and why a pass@k is not reported; from synthetic metrics.json
files (no sandbox), including ones without these blocks (older files, TACO's own)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from tests.reporting.test_report import PageParts, html_tables, records, report_cli, synthetic_metrics

PROVENANCE = {
    "command": "run",
    "date": "2026-11-30T00:50:00+00:00",
    "model": "/models/Qwen2.5-Coder-1.5B-Instruct",
    "generation": {
        "n": 20,
        "max_new_tokens": 2048,
        "temperature": 0.2,
        "top_k": 50,
        "top_p": 0.95,
        "seed": 0,
        "dtype": "bfloat16",
        "chat_template": True,
        "from": "harness run",
    },
    "dataset": {
        "source": "BAAI/TACO",
        "split": "test",
        "rows": 1000,
        "digest": "sha256:" + "ab" * 32,
        "digest_of": "selected rows",
        "filters": {"difficulties": ["EASY", "HARD"], "skills": [], "indices": None, "limit": 2},
    },
    "generations": {"path": "/runs/q/generations.json", "digest": "sha256:" + "cd" * 32, "tasks": 2, "samples_per_task": 20},
    "evaluation": {"judge": "taco", "timeout_s": 4.0},
    "harness": {"version": "0.1.0", "commit": "34a3036e17d46b43ff9ac738ece360d2bdcf729d", "modified": False},
    "sandbox": {"kind": "docker", "image": "taco-harness-sandbox:6fa8", "image_id": "sha256:" + "ef" * 32, "identity": "x"},
    "python": {"host": "3.11.7", "sandbox": "3.11.2"},
}
COVERAGE = {"partial": True, "selected": 5, "evaluated": 2, "left_out": 3, "no_generations": [1, 3, 4], "not_in_dataset": []}
NOT_REPORTED = {"pass@100": "2 tasks have fewer than 100 scored samples (smallest: 20)"}


def html_provenance(page: str) -> dict[str, str]:
    return {row["what"]: row["value"] for row in records(PageParts(page).tables["provenance"])}


def markdown_provenance(markdown: str) -> dict[str, str]:
    section = markdown.split("\n## Provenance\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    cells = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in lines]
    return {re.sub(r"\\(.)", r"\1", what.strip()): re.sub(r"\\(.)", r"\1", value.strip()) for what, value in cells}


def write(directory: Path, metrics: dict, run_stats: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(metrics))
    if run_stats is not None:
        (directory / "run_stats.json").write_text(json.dumps(run_stats))
    report_cli(directory)
    return directory


def recorded() -> dict:
    return {**synthetic_metrics(), "provenance": copy.deepcopy(PROVENANCE), "coverage": COVERAGE, "not_reported": NOT_REPORTED}


def test_title_and_provenance_come_first(tmp_path):
    directory = write(tmp_path / "out", recorded(), {"wall_seconds": 3.0, "provenance": PROVENANCE})
    markdown = (directory / "report.md").read_text()
    page = (directory / "report.html").read_text()
    title = "TACO evaluation: Qwen2.5-Coder-1.5B-Instruct on BAAI/TACO (test)"  # a path by its last part, a hub id whole
    assert markdown.startswith(f"# {title}\n") and f"<h1>{title}</h1>" in page
    rows = html_provenance(page)
    assert rows == markdown_provenance(markdown)
    assert rows["model"] == PROVENANCE["model"]
    assert (rows["samples per task (n)"], rows["temperature"], rows["top-p"], rows["top-k"]) == ("20", "0.2", "0.95", "50")
    assert (rows["max new tokens"], rows["dtype"], rows["seed"], rows["chat template"]) == ("2,048", "bfloat16", "0", "true")
    assert rows["generation settings from"] == "harness run"
    assert rows["dataset"] == "BAAI/TACO (split test, 1,000 rows)"
    assert rows["dataset digest"] == f"sha256:{'ab' * 32} (of the selected rows)"
    assert rows["filters"] == "difficulty EASY | HARD; limit 2"
    assert rows["generations file"] == "/runs/q/generations.json" and rows["generations"] == "2 tasks, 20 samples each"
    assert rows["harness"] == "0.1.0 (commit 34a3036e17d4)"
    assert rows["sandbox"] == f"docker: taco-harness-sandbox:6fa8 (sha256:{'ef' * 6})"
    assert rows["Python"] == "host 3.11.7, sandbox 3.11.2"
    assert (rows["command"], rows["date"]) == ("harness run", PROVENANCE["date"])
    # At the top: before pass@k; and not repeated among the run statistics.
    assert page.index('<table id="provenance">') < page.index('<table id="pass-at-k-overall">')
    assert [row["statistic"] for row in html_tables(page)["run_stats"]] == ["wall_seconds"]


def test_partial_run_and_unreported_pass_at_k(tmp_path):
    directory = write(tmp_path / "out", recorded())
    markdown = (directory / "report.md").read_text()
    page = (directory / "report.html").read_text()
    sentence = "Partial run: 3 of 5 selected tasks had no generations and were left out, so pass@k is over 2 tasks."
    assert f"**{sentence}**" in markdown
    assert f'<p class="warning" id="partial">{sentence}</p>' in page
    assert page.index('id="partial"') < page.index('<table id="provenance">')  # first thing after the summary
    left_out = PageParts(page).tables["left-out"]
    assert left_out == [["why", "tasks", "task ids"], ["no generations (selected, left out)", "3", "1, 3, 4"]]
    note = "pass@100 is not reported: 2 tasks have fewer than 100 scored samples (smallest: 20)"
    assert f"* {note}" in markdown and note in page


def test_what_is_not_recorded_says_so(tmp_path):
    unknown = recorded()
    unknown["provenance"].update(model="not recorded", generation="not recorded", generations="not recorded")
    unknown["provenance"]["dataset"]["source"] = "/data/taco/test.jsonl"
    page = (write(tmp_path / "evaluate", unknown) / "report.html").read_text()
    assert "<h1>TACO evaluation: test.jsonl (test), model not recorded</h1>" in page
    rows = html_provenance(page)
    assert rows["model"] == rows["generation settings"] == rows["generations file"] == "not recorded"

    # An earlier harness's metrics.json, or TACO's own: no provenance, no coverage; the directory names the report.
    for name, metrics in (("earlier", synthetic_metrics()), ("official", {"pass@1": 0.5, "detail": {"pass@1": {"0": 0.5}}})):
        page = (write(tmp_path / name, metrics) / "report.html").read_text()
        assert f"<h1>TACO evaluation report: {name}</h1>" in page
        assert "Provenance not recorded: this metrics.json does not say which model" in page
        assert 'id="partial"' not in page and "is not reported" not in page


@pytest.mark.parametrize(
    "change",
    [
        {"dataset": 5, "harness": None, "python": "3.11"},  # not objects where objects belong
        {"future_field": {"nested": [1, 2]}},  # a key of a newer version: shown as it is
    ],
)
def test_odd_provenance_still_makes_a_report(tmp_path, change):
    metrics = recorded()
    metrics["provenance"].update(change)
    page = (write(tmp_path / "out", metrics) / "report.html").read_text()
    rows = html_provenance(page)
    if "future_field" in change:
        assert rows["future_field.nested"] == "1, 2"
    else:
        assert rows["dataset"] == "5" and "Python" not in rows
