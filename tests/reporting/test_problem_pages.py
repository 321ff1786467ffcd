"""The report's per-problem part (report.html's table, problems.html and problems.md) and its pass@k
confidence intervals, from a real `harness evaluate` of samples whose failures are known; and a
thousand synthetic tasks, for size."""

from __future__ import annotations

import json
import random
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.reporting.report import write_report
from tests.support.sample_runs import (
    CALLED_AT,
    RAISES_AT,
    evaluate,
    failing_generations,
    sample_lines,
    write_generations,
)


class Page(HTMLParser):
    """Cell texts of <table id=...> rows, links of those cells, and <pre class=...> texts by (section, details) ids."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.links: dict[str, list[str]] = {}
        self.pre: dict[tuple[str, str], dict[str, str]] = {}
        self.ids: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._section = self._details = ""
        self._pre: tuple[str, list[str]] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "a" and self._cell is not None and self._table is not None:
            self.links.setdefault(self._table, []).append(a.get("href", ""))
        elif tag == "section":
            self._section = a.get("id", "")
        elif tag == "details":
            self._details = a.get("id", "")
        elif tag == "pre":
            self._pre = (a.get("class", ""), [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "pre" and self._pre is not None:
            self.pre.setdefault((self._section, self._details), {})[self._pre[0]] = "".join(self._pre[1])
            self._pre = None
        elif tag == "details":
            self._details = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre[1].append(data)


def records(rows: list[list[str]]) -> list[dict[str, str]]:
    header, *body = rows
    return [dict(zip(header, row)) for row in body]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("problem-pages")
    return evaluate(write_generations(directory / "generations.json", failing_generations()), directory / "out")


@pytest.mark.docker
def test_report_has_a_row_per_problem_linking_to_its_details(evaluated):
    page = Page((evaluated / "report.html").read_text())
    rows = records(page.tables["problems"])
    lines = sample_lines(evaluated)
    assert [row["task"] for row in rows] == [str(t) for t in range(6)]
    for row in rows:
        task = [entry for entry in lines if entry["task_id"] == int(row["task"])]
        passed = sum(entry["outcome"] == "passed" for entry in task)
        assert (int(row["samples"]), int(row["passed"])) == (len(task), passed)
        assert float(row["pass@1"].rstrip("%")) == pytest.approx(100 * passed / len(task), abs=0.005)
        assert row["difficulty"] == task[0]["difficulty"]
    by_task = {row["task"]: row for row in rows}
    assert by_task["1"]["dominant failure"] == "—"  # every sample passes
    assert by_task["0"]["dominant failure"].startswith(
        ("wrong answer (1 of 4)", "runtime error (1 of 4)", "compile error (1 of 4)")
    )
    assert page.links["problems"] == [f"problems.html#task-{t}" for t in range(6)]
    details = Page((evaluated / "problems.html").read_text())
    assert {f"task-{t}" for t in range(6)} <= details.ids


@pytest.mark.docker
def test_problem_page_shows_a_wrong_answer_and_a_traceback_with_the_sample_line(evaluated):
    page = Page((evaluated / "problems.html").read_text())
    wrong = page.pre[("task-0", "task-0-sample-1")]
    assert (wrong["input"], wrong["expected-output"], wrong["program-output"]) == ("1 2\n", "3\n", "-1\n")
    raised = page.pre[("task-0", "task-0-sample-2")]["error"]
    assert f'File "<sample>", line {RAISES_AT}, in solve' in raised and "IndexError" in raised
    # Every frame of the sample has a line of the sample (8 lines), none of the program TACO ran.
    assert {int(n) for n in re.findall(r'File "<sample>", line (\d+)', raised)} == {RAISES_AT, CALLED_AT}
    syntax = page.pre[("task-0", "task-0-sample-3")]["error"]
    assert "(<sample>, line 3)" in syntax
    # The markdown report links to problems.md, which has the same details.
    markdown = (evaluated / "report.md").read_text()
    assert "[problems.md](problems.md)" in markdown
    problems_md = (evaluated / "problems.md").read_text()
    assert "## Task 0" in problems_md and f'File "<sample>", line {RAISES_AT}, in solve' in problems_md
    assert "```\n-1\n```" in problems_md


@pytest.mark.docker
def test_every_report_has_pass_at_k_confidence_intervals(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    page = Page((evaluated / "report.html").read_text())
    (row,) = records(page.tables["pass-at-k-ci"])
    assert row["pass@k"] == "pass@1" and float(row["estimate"].rstrip("%")) == pytest.approx(100 * metrics["pass@1"], abs=0.005)
    low, high = (float(x.strip().rstrip("%")) for x in row["95% interval"].strip("[]").split(","))
    assert low <= 100 * metrics["pass@1"] <= high and low < high
    html_text = (evaluated / "report.html").read_text()
    assert "percentile bootstrap over tasks (10,000 resamples, seed 0)" in html_text
    markdown = (evaluated / "report.md").read_text()
    assert "### Confidence intervals" in markdown and "| pass@1 | 6 |" in markdown


def test_official_metrics_file_gets_intervals_and_a_note(tmp_path):
    metrics = tmp_path / "taco_metrics.json"
    detail = {str(t): (t % 3) / 2 for t in range(30)}
    metrics.write_text(json.dumps({"pass@1": sum(detail.values()) / 30, "detail": {"pass@1": detail}}))
    files = write_report(metrics)
    page = Page(files.html.read_text())
    assert "pass-at-k-ci" in page.tables and "problems" not in page.tables
    assert "Per-problem results are not recorded" in files.html.read_text()
    assert not (tmp_path / "problems.html").exists()


def test_a_thousand_problems_stay_usable(tmp_path):
    """1,000 tasks of 20 samples: the report's table has a row each; the details page stays a few MB."""
    rng = random.Random(5)
    lines, detail = [], {}
    for task in range(1000):
        passed = 0
        for sample in range(20):
            ok = rng.random() < 0.4
            passed += ok
            failure = (
                None if ok else {"verdict": "wrong_answer", "test": 3, "input": "x" * 2500, "expected": "1\n", "output": "2\n"}
            )
            lines.append(
                {
                    "task_id": task,
                    "sample": sample,
                    "difficulty": "EASY",
                    "status": "judged",
                    "verdicts": [True] * 5 if ok else [True, True, True, False],
                    "stopped_early": not ok,
                    "outcome": "passed" if ok else "wrong_answer",
                    # Distinct programs that fail alike differ in what they printed.
                    "failure": failure and {**failure, "output": f"{sample % 7}\n"},
                }
            )
        detail[str(task)] = passed / 20
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "metrics.json").write_text(json.dumps({"pass@1": sum(detail.values()) / 1000, "detail": {"pass@1": detail}}))
    files = write_report(tmp_path)
    page = Page(files.html.read_text())
    assert len(records(page.tables["problems"])) == 1000
    assert files.html.stat().st_size < 1_000_000
    details = tmp_path / "problems.html"
    assert details.stat().st_size < 20_000_000
    text = details.read_text()
    assert "x" * 1000 in text and "x" * 1001 not in text  # each text cut for the page
    assert text.count("<details") <= 1000 * 10  # at most ten failing results of a task in detail
