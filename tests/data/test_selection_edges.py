"""Selecting problems at the edges (issue 17, item 6): --indices ranges over a subset file's sparse ids,
a malformed row that is not selected, filters in any case, an empty selection that lists what the
dataset has, and hub ids on a machine without network.  Through the command line (`harness generate`
with a tiny offline model: the quickest command that reads a dataset) and the loaders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.problems import Selection, load_problems
from harness.errors import DatasetError
from tests.support.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"  # task ids 0-5: EASY, EASY, MEDIUM, EASY, MEDIUM, HARD


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def sparse_subset(tmp_path) -> Path:
    """The sample's rows cut into a subset file with sparse ids 100, 102, 105, 107, 110, 111."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    ids = [100, 102, 105, 107, 110, 111]
    path = tmp_path / "subset.jsonl"
    path.write_text("".join(json.dumps({**row, "_task_id": i}) + "\n" for i, row in zip(ids, rows)))
    return path


def generate_cli(model: Path, dataset: Path, output: Path, *selection: str):
    args = ["generate", "--model", str(model), "--dataset", str(dataset), "--output", str(output), *selection]
    return CliRunner().invoke(main, [*args, "--n", "1", "--max-new-tokens", "2", "--dtype", "float32", "--gpus", "cpu"])


def task_ids(output: Path) -> list[int]:
    return [entry["task_id"] for entry in json.loads(output.read_text())]


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("harness: error:")]
    return line


def test_a_range_keeps_the_ids_the_subset_has(tmp_path, sparse_subset, tiny_model):
    output = tmp_path / "g.json"
    result = generate_cli(tiny_model, sparse_subset, output, "--indices", "0-106")
    assert result.exit_code == 0, result.output
    assert task_ids(output) == [100, 102, 105]
    result = generate_cli(tiny_model, sparse_subset, tmp_path / "h.json", "--indices", "107,101-103,111")
    assert result.exit_code == 0, result.output
    assert task_ids(tmp_path / "h.json") == [102, 107, 111]
    # An id given alone must exist, and a range with none of the ids is an empty selection.
    assert "no task ids 101 in the split" in one_error(generate_cli(tiny_model, sparse_subset, output, "--indices", "101"))
    line = one_error(generate_cli(tiny_model, sparse_subset, output, "--indices", "0-99"))
    assert "no problems left after filtering" in line and "task ids present: 100, 102, 105, 107, 110-111" in line


def test_filters_ignore_case_and_an_empty_selection_lists_the_values(tmp_path, tiny_model):
    output = tmp_path / "g.json"
    result = generate_cli(tiny_model, SAMPLE, output, "--difficulty", "easy", "--difficulty", "Medium", "--skill", "sorting")
    assert result.exit_code == 0, result.output
    assert task_ids(output) == [1]
    result = generate_cli(tiny_model, SAMPLE, tmp_path / "h.json", "--skill", "DATA STRUCTURES", "--difficulty", "all")
    assert result.exit_code == 0 and task_ids(tmp_path / "h.json") == [4], result.output
    line = one_error(generate_cli(tiny_model, SAMPLE, output, "--difficulty", "easyy"))
    assert line.endswith("no problems left after filtering (difficulty easyy); difficulties present: EASY, MEDIUM, HARD")
    line = one_error(generate_cli(tiny_model, SAMPLE, output, "--skill", "Graphs"))
    assert "skills present: Amortized analysis, Complete search, Data structures, Dynamic programming, Sorting" in line


def test_a_malformed_row_that_is_not_selected_does_not_block(tmp_path, tiny_model):
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    rows[2]["input_output"] = json.dumps({"inputs": 3})  # unreadable tests
    rows[4] = ["not", "an", "object"]
    dataset = tmp_path / "problems.json"
    dataset.write_text(json.dumps(rows))
    output = tmp_path / "g.json"
    result = generate_cli(tiny_model, dataset, output, "--indices", "0,1,3,5")
    assert result.exit_code == 0, result.output
    assert task_ids(output) == [0, 1, 3, 5]
    assert "task 2" in one_error(generate_cli(tiny_model, dataset, output, "--indices", "2"))
    assert "task 4 is not an object" in one_error(generate_cli(tiny_model, dataset, output, "--indices", "3-4"))
    # Loaders: the same for evaluation (tests required), and an error names the task id of a subset row.
    assert [p.task_id for p in load_problems(dataset, selection=Selection(difficulties=("hard",)))] == [5]
    subset = tmp_path / "subset.jsonl"
    subset.write_text(json.dumps({**rows[0], "_task_id": 700, "input_output": ""}) + "\n" + json.dumps(rows[1]) + "\n")
    assert [p.task_id for p in load_problems(subset, selection=Selection(indices=(1,)))] == [1]
    with pytest.raises(DatasetError, match=r"task 700 \(row 0\) has no 'input_output'"):
        load_problems(subset)


OFFLINE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": ""}


def _harness(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in env}, **{k: v for k, v in env.items() if v}},
        timeout=300,
    )
    return done, time.monotonic() - started


def test_hub_ids_without_network_fail_fast_with_the_offline_hint(tmp_path, tiny_model):
    done, seconds = _harness(
        "generate", "--model", str(tiny_model), "--dataset", "someone/some-dataset", "--output", str(tmp_path / "g.json"),
        "--gpus", "cpu", "--dtype", "float32", env=OFFLINE,
    )  # fmt: skip
    assert done.returncode == 1 and seconds < 20, (seconds, done.stderr[-2000:])
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("harness: error: cannot load 'someone/some-dataset': cannot reach the Hugging Face hub")
    assert "HF_HUB_OFFLINE=1" in line
    done, seconds = _harness(
        "generate", "--model", "someone/some-model", "--dataset", str(SAMPLE), "--output", str(tmp_path / "g.json"),
        "--gpus", "cpu", env=OFFLINE,
    )  # fmt: skip
    assert done.returncode == 1 and seconds < 20, (seconds, done.stderr[-2000:])
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("harness: error: model someone/some-model: cannot reach the Hugging Face hub")
    assert "HF_HUB_OFFLINE=1" in line
    # Offline by choice: a model that is not in the cache is one line at once too.
    done, _ = _harness(
        "generate", "--model", "someone/some-model", "--dataset", str(SAMPLE), "--output", str(tmp_path / "g.json"),
        env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.stderr.strip().splitlines() == [
        "harness: error: model someone/some-model is not in the local Hugging Face cache (HF_HUB_OFFLINE is set)"
    ]
