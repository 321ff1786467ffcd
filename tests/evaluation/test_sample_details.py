"""`OUT/samples.jsonl` from `harness evaluate` in real sandboxes: one line per sample, its verdicts as
in results.json, and its first failing test (the input, the expected output and what the program
printed, or the traceback and syntax errors with the line numbers of the sample as written)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness.data.problems import load_problems
from harness.evaluation.plan import EvaluationSettings
from harness.generation.plan import GenerationSettings
from harness.pipeline import run_pipeline
from harness.sandbox.choice import SandboxChoice
from tests.support.fake_engine import ScriptedEngineFactory
from tests.support.sample_runs import (
    CALLED_AT,
    RAISES_AT,
    SAMPLE,
    evaluate,
    failing_generations,
    sample_lines,
    write_generations,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def details(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("sample-details")
    return evaluate(write_generations(directory / "generations.json", failing_generations()), directory / "out")


def line(lines: list[dict], task: int, sample: int) -> dict:
    (found,) = [entry for entry in lines if entry["task_id"] == task and entry["sample"] == sample]
    return found


def test_one_line_per_sample_as_results_and_metrics_say(details):
    lines = sample_lines(details)
    results = json.loads((details / "results.json").read_text())
    metrics = json.loads((details / "metrics.json").read_text())
    assert [(entry["task_id"], entry["sample"]) for entry in lines] == [(t, i) for t in range(6) for i in range(4)]
    for entry in lines:
        assert entry["verdicts"] == results[str(entry["task_id"])][entry["sample"]]
        assert entry["status"] == "judged" and entry["difficulty"] in ("EASY", "MEDIUM", "HARD")
        passed = entry["outcome"] == "passed"
        assert passed == all(v is True for v in entry["verdicts"])
        assert (entry["failure"] is None) == passed, entry  # every failing sample says why
    assert Counter(entry["outcome"] for entry in lines) == Counter({k: v for k, v in metrics["counts"]["outcomes"].items() if v})


def test_a_wrong_answer_records_the_input_the_expected_output_and_what_was_printed(details):
    lines = sample_lines(details)
    assert line(lines, 0, 1)["failure"] == {
        "verdict": "wrong_answer",
        "test": 0,
        "input": "1 2\n",
        "expected": "3\n",
        "output": "-1\n",
    }
    # Later tests: the index of the first failing one (task 5's program echoes; "racecar" is a palindrome).
    echo = line(lines, 5, 1)
    assert echo["verdicts"] == [False] and echo["failure"]["output"] == "abc\n" and echo["failure"]["expected"] == "cba\n"
    # Call-based: the arguments, the expected value and the returned one as Python writes them.
    assert line(lines, 3, 3)["failure"] == {
        "verdict": "wrong_answer",
        "test": 0,
        "input": "['hello']",
        "expected": "[2]",
        "output": "5",
    }


def test_a_runtime_error_shows_the_traceback_with_the_sample_line_numbers(details):
    lines = sample_lines(details)
    failure = line(lines, 0, 2)["failure"]
    # Every test exited with status 1, so TACO's second pass (the sample inside def code()) decided.
    assert (failure["verdict"], failure["test"], failure.get("pass")) == ("runtime_error", 0, 2)
    error = failure["error"]
    assert f'File "<sample>", line {RAISES_AT}, in solve' in error, error
    assert f'File "<sample>", line {CALLED_AT}, in code' in error, error
    assert error.rstrip().endswith("IndexError: list index out of range")
    assert "solution.py" not in error and "taco_runner" not in error  # no run-program paths, no runner frame
    assert failure["input"] == "1 2\n" and failure["expected"] == "3\n"
    reverse = line(lines, 5, 2)["failure"]
    assert 'File "<sample>", line 3, in' in reverse["error"] and "IndexError" in reverse["error"]
    # A call that raised: the exception (the checker reports no traceback).
    assert line(lines, 3, 1)["failure"]["error"] == "IndexError: list index out of range"


def test_syntax_errors_point_at_the_sample_line(details):
    lines = sample_lines(details)
    stdin = line(lines, 0, 3)
    assert stdin["verdicts"] == [-2] and stdin["failure"]["test"] is None
    assert "(<sample>, line 3)" in stdin["failure"]["error"], stdin
    call = line(lines, 3, 2)
    assert call["verdicts"] == [-2] and "(<sample>, line 3)" in call["failure"]["error"], call


def test_details_survive_a_resume_from_the_journal(details, tmp_path):
    """Rerunning the command answers every sample from journal.jsonl: the details come back with them."""
    copy = tmp_path / "out"
    shutil.copytree(details, copy)
    generations = write_generations(tmp_path / "generations.json", failing_generations())
    evaluate(generations, copy)
    assert (copy / "samples.jsonl").read_text() == (details / "samples.jsonl").read_text()
    assert (copy / "results.json").read_text() == (details / "results.json").read_text()


def test_run_writes_the_samples_file_too(tmp_path, sandbox_image):
    """`harness run` (generation streamed into the evaluation) writes the same samples.jsonl as evaluate."""
    choice = SandboxChoice(workers=2)
    scripted = ScriptedEngineFactory(tuple((entry["task_id"], tuple(entry["output"])) for entry in failing_generations()))
    output = tmp_path / "out"
    run_pipeline(
        load_problems(SAMPLE),
        GenerationSettings("scripted", n=4, max_new_tokens=64),
        EvaluationSettings(sandbox_id=choice.identity()),
        output,
        scripted,
        choice.opener(),
    )
    lines = sample_lines(output)
    assert [(entry["task_id"], entry["sample"]) for entry in lines] == [(t, i) for t in range(6) for i in range(4)]
    assert f'File "<sample>", line {RAISES_AT}, in solve' in line(lines, 0, 2)["failure"]["error"]
    assert line(lines, 0, 1)["failure"]["output"] == "-1\n" and line(lines, 2, 0)["difficulty"] == "MEDIUM"
