"""`harness compare A B`: two real evaluations of the bundled problems (the bundled generations, and a
second file that is worse on one task and better on three), checked against their results.json; the
refusal of runs of different datasets or judges; and output directories without metrics.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from tests.support.sample_runs import GENERATIONS, evaluate, failing_generations, harness, write_generations


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("compare")
    a = evaluate(GENERATIONS, directory / "a")
    b = evaluate(write_generations(directory / "generations.json", failing_generations()), directory / "b")
    return a, b


def pass_at_1_by_task(directory: Path) -> dict[int, float]:
    """Each task's pass@1 from results.json, as TACO's scripts take it (null: not scored)."""
    results = json.loads((directory / "results.json").read_text())
    by_task = {}
    for task, samples in results.items():
        scored = [s for s in samples if s is not None]
        if scored:
            by_task[int(task)] = sum(all(v is True for v in s) for s in scored) / len(scored)
    return by_task


@pytest.mark.docker
def test_compare_two_runs_as_json(runs):
    a, b = runs
    done = harness("compare", str(a), str(b), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for side, directory in (("a", a), ("b", b)):
        metrics = json.loads((directory / "metrics.json").read_text())
        if "pass@1" in metrics:  # every task has a scored sample
            interval = report[side]["pass@1"]
            assert interval["estimate"] == pytest.approx(metrics["pass@1"])
            assert interval["low"] <= interval["estimate"] <= interval["high"] and interval["confidence"] == 0.95
    before, after = pass_at_1_by_task(a), pass_at_1_by_task(b)
    common = sorted(set(before) & set(after))
    changed = {t: after[t] - before[t] for t in common if after[t] != before[t]}
    assert {c["task_id"]: c["difference"] for c in report["changed"]} == pytest.approx(changed)
    assert changed[0] < 0 and all(changed[t] > 0 for t in (1, 2, 4)) and 3 not in changed and 5 not in changed
    assert {c["task_id"]: c["better"] for c in report["changed"]}[0] == "A"
    paired = report["paired_pass@1"]
    assert paired["tasks"] == len(common) == 6
    assert (paired["b_better"], paired["b_worse"], paired["same"]) == (
        sum(d > 0 for d in changed.values()),
        sum(d < 0 for d in changed.values()),
        len(common) - len(changed),
    )
    assert paired["difference"]["estimate"] == pytest.approx(sum(after[t] - before[t] for t in common) / len(common))
    assert 0 < paired["p_value"] <= 1 and paired["test"].startswith("paired sign-flip permutation test")
    assert report["notes"] == [] and "bootstrap" in report["method"]


@pytest.mark.docker
def test_compare_prints_a_small_table(runs):
    a, b = runs
    done = harness("compare", str(a), str(b))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"A: {a}" in text and f"B: {b}" in text
    table = {line.split()[0]: line for line in text.splitlines() if line.startswith(("tasks", "pass@1"))}
    assert table["tasks"].split()[1:] == ["6", "6"]
    assert table["pass@1"].count("%") == 2 and table["pass@1"].count("[") == 2
    assert "Paired over 6 common tasks, pass@1 B - A:" in text
    assert "two-sided paired sign-flip permutation test, exact" in text
    changes = {line.split()[0]: line for line in text.split("Tasks where pass@1 differs")[1].splitlines()[2:] if line.strip()}
    assert changes["0"].endswith("A better") and changes["1"].endswith("B better")
    limited = harness("compare", str(a), str(b), "--limit", "1")
    assert "more (--limit 0 lists all)" in limited.stdout


@pytest.mark.docker
@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda m: m["provenance"]["dataset"].update(digest="sha256:" + "0" * 64), "different datasets"),
        (lambda m: m["provenance"]["dataset"].update(split="train"), "different dataset splits (test and train)"),
        (lambda m: m["settings"].update(judge="other"), "different judges (taco and other)"),
    ],
)
def test_runs_of_different_datasets_or_judges_are_refused(runs, tmp_path, change, why):
    a, b = runs
    other = tmp_path / "other"
    shutil.copytree(b, other)
    metrics = json.loads((other / "metrics.json").read_text())
    change(metrics)
    (other / "metrics.json").write_text(json.dumps(metrics))
    done = harness("compare", str(a), str(other))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: error: cannot compare {a} and {other}: ") and why in lines[0]


def test_results_files_without_metrics(tmp_path):
    """Two results.json with nothing recorded beside them: compared, with a note that nothing was checked."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    verdicts_a = {str(t): [[True, True], [False], [True, True], None] if t % 2 else [[-2], [True]] for t in range(30)}
    verdicts_b = {str(t): [[True, True], [True, True], [True, True], None] if t % 2 else [[-2], [-1]] for t in range(30)}
    (a / "results.json").write_text(json.dumps(verdicts_a))
    (b / "results.json").write_text(json.dumps(verdicts_b))
    done = CliRunner().invoke(main, ["compare", str(a), str(b / "results.json"), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["a"]["pass@1"]["estimate"] == pytest.approx((15 * 2 / 3 + 15 * 1 / 2) / 30)
    assert report["b"]["pass@1"]["estimate"] == pytest.approx((15 * 1 + 15 * 0) / 30)
    paired = report["paired_pass@1"]
    assert (paired["b_better"], paired["b_worse"], paired["same"]) == (15, 15, 0)
    assert report["notes"] == ["A and B without metrics.json: datasets and judges not checked"]
    missing = CliRunner().invoke(main, ["compare", str(a), str(tmp_path)])
    assert missing.exit_code == 1 and "results.json: not found" in missing.output
