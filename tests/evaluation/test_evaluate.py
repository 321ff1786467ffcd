"""`harness evaluate` end to end: real containers, the official file formats, join by task_id,
resume after a kill, pass@k recomputed from results.json, early exit changing nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from bench.variants import wrong_variants
from harness.data.generations import TaskSamples
from harness.data.problems import load_problems
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"


def harness_cli(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT, **kwargs)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def reference(problem) -> str:
    solutions = problem.row["solutions"]
    return (json.loads(solutions) if isinstance(solutions, str) else solutions)[0]


def sample_generations(slow: float = 0.0) -> list[dict]:
    """Four samples per bundled problem: the reference, a duplicate of it, and two wrong ones."""
    entries = []
    for problem in load_problems(SAMPLE):
        code = reference(problem)
        if slow:
            code = f"import time\ntime.sleep({slow})\n" + code
        entries.append(
            {
                "task_id": problem.task_id,
                "prompt": f"\nQUESTION:\n{problem.row['question']}\nANSWER:\n",
                "output": [code, code, wrong_variants(code, problem.tests)[0], "print(\n"],
            }
        )
    return entries


def codex_pass_at_k(n: int, c: int, k: int) -> float:
    return 1.0 if n - c < k else 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def test_official_format_round_trip_and_pass_at_k_from_results(tmp_path, sandbox_image):
    generations = tmp_path / "generations.json"
    generations.write_text(json.dumps(sample_generations(), indent=4))
    done = harness_cli("evaluate", "--dataset", str(SAMPLE), "--generations", str(generations), "--output", str(tmp_path / "out"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(results) == [str(t) for t in range(6)]
    for task, samples in results.items():
        assert len(samples) == 4
        assert samples[0] == samples[1] and all(v is True for v in samples[0]), task  # dedup fans out
        assert samples[3] == [-2]
    # pass@k straight from results.json, the way TACO's compute_metric does it.
    for k in (1,):
        per_task = {}
        for task, samples in results.items():
            c = sum(bool(np.all(np.array(r) > 0)) for r in samples)
            per_task[task] = codex_pass_at_k(len(samples), c, k)
        assert metrics[f"pass@{k}"] == pytest.approx(np.mean(list(per_task.values())))
        assert metrics["detail"][f"pass@{k}"] == pytest.approx(per_task)
    assert "pass@10" not in metrics  # only 4 samples per task
    assert metrics["counts"]["samples"] == 24 and metrics["counts"]["infra_errors"] == 0
    assert set(metrics["by_difficulty"]) >= {"EASY"} and metrics["by_skill"]
    assert "18 distinct programs" in done.stdout

    # A shuffled file (and JSONL) gives identical results: the join is by task_id.
    shuffled = json.loads(generations.read_text())
    random.Random(1).shuffle(shuffled)
    as_jsonl = tmp_path / "shuffled.jsonl"
    as_jsonl.write_text("".join(json.dumps(e) + "\n" for e in shuffled))
    again = harness_cli("evaluate", "--dataset", str(SAMPLE), "--generations", str(as_jsonl), "--output", str(tmp_path / "out2"))
    assert json.loads((tmp_path / "out2" / "results.json").read_text()) == results
    assert "0 run, 18 cached" in again.stdout  # the verdict cache answered everything


def test_mismatched_ids_are_a_one_line_error(tmp_path):
    entries = sample_generations()
    entries[2]["task_id"] = 42
    generations = tmp_path / "g.json"
    generations.write_text(json.dumps(entries))
    done = harness_cli(
        "evaluate", "--dataset", str(SAMPLE), "--generations", str(generations), "--output", str(tmp_path / "o"), check=False
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "harness: error: generations name task ids absent from the dataset: 42 (use --allow-partial)"
    ]
    assert not (tmp_path / "o" / "results.json").exists()


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, sandbox_image):
    generations = tmp_path / "g.json"
    entries = sample_generations(slow=0.1)
    for entry in entries:  # distinct programs, so that every sample is its own job
        entry["output"] = [code + f"\n# sample {i}\n" for i, code in enumerate(entry["output"])]
    generations.write_text(json.dumps(entries))
    common = ["evaluate", "--dataset", str(SAMPLE), "--generations", str(generations), "--no-cache"]
    harness_cli(*common, "--output", str(tmp_path / "whole"))

    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", *common, "--output", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    recorded = len(journal.read_text().splitlines())
    assert 6 <= recorded < 24, "the kill must land mid-run"
    assert not (out / "results.json").exists()

    resumed = harness_cli(*common, "--output", str(out))
    assert f"{24 - recorded} run, 0 cached, {recorded} resumed" in resumed.stdout or recorded >= 24
    assert (out / "results.json").read_text() == (tmp_path / "whole" / "results.json").read_text()
    resumed_metrics, whole_metrics = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "whole"))
    for metrics in (resumed_metrics, whole_metrics):
        del metrics["provenance"]["date"]  # when each run finished: the one figure that differs
    assert resumed_metrics == whole_metrics


def _corpus_with_variants() -> list[TaskSamples]:
    tasks = []
    train = load_problems(shared_file("taco_train_sample_original_fields.jsonl"))
    examples = load_problems(shared_file("taco_test_examples.jsonl"))[:60]
    for problem in train + examples:
        solutions = problem.row["solutions"]
        solutions = json.loads(solutions) if isinstance(solutions, str) else solutions
        outputs = []
        for code in solutions[:2]:
            outputs += [code, *wrong_variants(code, problem.tests)]
        tasks.append(TaskSamples(problem, tuple(outputs)))
    # Train and test ids overlap: give the examples distinct ids for this in-memory run.
    return [TaskSamples(t.problem.__class__(**{**t.problem.__dict__, "task_id": i}), t.outputs) for i, t in enumerate(tasks)]


def test_early_exit_gives_the_same_pass_at_k(pool):
    tasks = _corpus_with_variants()
    full = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings(early_exit=False))
    early = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings(early_exit=True))
    assert full.infra_errors == early.infra_errors == 0
    passed_full = {t: [r.passed for r in rs] for t, rs in full.results.items()}
    passed_early = {t: [r.passed for r in rs] for t, rs in early.results.items()}
    assert passed_full == passed_early
    for key in ("pass@1", "pass@10", "detail"):
        if key in full.metrics:
            assert early.metrics[key] == full.metrics[key]
    # The corpus exercises the rule: some samples pass, some fail, and early exit did stop some.
    flat = [p for ps in passed_full.values() for p in ps]
    assert 0 < sum(flat) < len(flat)
    assert sum(r.stopped_early for rs in early.results.values() for r in rs) > 20
    early_tests = sum(len(r.verdicts) for rs in early.results.values() for r in rs)
    full_tests = sum(len(r.verdicts) for rs in full.results.values() for r in rs)
    assert early_tests < full_tests
