"""`harness report` at its edges (issue 17, item 6): an official metrics file given as a file, no
"None" difficulty group and no empty tables, and run statistics with their units."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.cli import main
from tests.reporting.test_report import PNG_SIGNATURE, html_tables, markdown_tables


def report(path) -> str:
    done = CliRunner().invoke(main, ["report", str(path)])
    assert done.exit_code == 0, done.output
    return done.output


def test_an_official_metrics_file_is_reported_beside_it(tmp_path):
    metrics = tmp_path / "taco_metrics.json"
    metrics.write_text(json.dumps({"pass@1": 0.25, "detail": {"pass@1": {"0": 0.5, "1": 0.0}}}))
    (tmp_path / "run_stats.json").write_text(json.dumps({"wall_seconds": 1.0}))  # not this file's
    output = report(metrics)
    assert str(tmp_path / "report.html") in output
    page = (tmp_path / "report.html").read_text()
    (overall,) = html_tables(page)["overall"]
    assert overall == {"": "all tasks", "tasks": "2", "pass@1": "25.00%"}
    assert "taco_metrics.json" in page and "run_stats" not in html_tables(page)
    assert (tmp_path / "pass_at_k_by_difficulty.png").read_bytes()[:8] == PNG_SIGNATURE


def _metrics(by_difficulty: dict, by_skill: dict) -> dict:
    return {
        "pass@1": 0.5,
        "detail": {"pass@1": {"0": 1.0, "1": 0.0}},
        "by_difficulty": by_difficulty,
        "by_skill": by_skill,
        "counts": {
            "tasks": 2,
            "samples": 2,
            "passed_samples": 1,
            "infra_errors": 0,
            "outcomes": {"passed": 1, "wrong_answer": 1},
        },
        "settings": {"judge": "taco"},
    }


def test_no_none_difficulty_and_no_empty_tables(tmp_path):
    # A dataset without difficulties or skills: scoring groups every task as "None" and has no skill.
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics({"None": {"tasks": 2, "pass@1": 0.5}}, {})))
    report(tmp_path)
    page, markdown = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    for tables in (html_tables(page), markdown_tables(markdown)):
        assert "by_difficulty" not in tables and "by_skill" not in tables
    assert "No difficulty recorded for these tasks." in page and "No skill recorded for these tasks." in markdown
    assert ">None<" not in page and "| None |" not in markdown
    # Beside real difficulties, the "None" group is left out and the others stay.
    mixed = {"EASY": {"tasks": 1, "pass@1": 1.0}, "None": {"tasks": 1, "pass@1": 0.0}}
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics(mixed, {"Sorting": {"tasks": 1, "pass@1": 1.0}})))
    report(tmp_path)
    tables = html_tables((tmp_path / "report.html").read_text())
    assert [row["difficulty"] for row in tables["by_difficulty"]] == ["EASY"]
    assert [row["skill"] for row in tables["by_skill"]] == ["Sorting"]


def test_run_statistics_have_units(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics({"EASY": {"tasks": 2, "pass@1": 0.5}}, {})))
    stats = {
        "wall_seconds": 12.5,
        "generation": {"tokens_per_s": 1834.25, "samples_per_s": 2.5, "gpu_memory_peak_bytes": {"cuda:0": 3 * 2**30}},
        "evaluation": {"tests_per_s": 40.0, "executed": 7, "tail_after_generation_seconds": 0.25},
        "host": {"rss_peak_bytes": 512 * 2**20},
    }
    (tmp_path / "run_stats.json").write_text(json.dumps(stats))
    report(tmp_path)
    for tables in (html_tables((tmp_path / "report.html").read_text()), markdown_tables((tmp_path / "report.md").read_text())):
        assert {row["statistic"]: row["value"] for row in tables["run_stats"]} == {
            "wall_seconds": "12.5 s",
            "generation.tokens_per_s": "1,834.2 tok/s",
            "generation.samples_per_s": "2.5 samples/s",
            "generation.gpu_memory_peak_bytes.cuda:0": "3,072.0 MiB",
            "evaluation.tests_per_s": "40 tests/s",
            "evaluation.executed": "7",
            "evaluation.tail_after_generation_seconds": "0.25 s",
            "host.rss_peak_bytes": "512.0 MiB",
        }
