"""``harness run``: generation streamed into the sandbox pool, end to end.

The CLI runs the real transformers path on a tiny offline model; the library tests use a paced
scripted engine that emits real programs (references and wrong variants of the bundled sample), so
that verdicts are varied and the overlap can be observed.  Sandboxes are real containers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.variants import wrong_variants
from harness.data.generations import join_by_task_id, load_generations
from harness.data.problems import load_problems
from harness.data.prompts import build_prompt
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from harness.generation.plan import GenerationSettings
from harness.pipeline import run_pipeline
from harness.sandbox.choice import SandboxChoice
from tests.evaluation.test_evaluate import SAMPLE, harness_cli, reference
from tests.support.fake_engine import ScriptedEngineFactory
from tests.support.sample_runs import assert_evaluate_reproduces
from tests.support.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
N = 4


def scripted_outputs() -> tuple[tuple[int, tuple[str, ...]], ...]:
    """Per bundled problem: its reference, a wrong variant, the reference again, a syntax error."""
    outputs = []
    for problem in load_problems(SAMPLE):
        code = reference(problem)
        outputs.append((problem.task_id, (code, wrong_variants(code, problem.tests)[0], code, "print(\n")))
    return tuple(outputs)


def _settings(choice: SandboxChoice) -> EvaluationSettings:
    return EvaluationSettings(sandbox_id=choice.identity())


def _run(output: Path, factory, devices=("cpu",), on_progress=lambda progress: None):
    choice = SandboxChoice(workers=2)
    return run_pipeline(
        load_problems(SAMPLE),
        GenerationSettings("scripted", n=N, max_new_tokens=64),
        _settings(choice),
        output,
        factory,
        choice.opener(),
        devices,
        on_evaluation_progress=on_progress,
    )


def _evaluate_file(generations: Path) -> dict:
    choice = SandboxChoice(workers=2)
    problems = load_problems(SAMPLE)
    tasks = join_by_task_id(problems, load_generations(generations), False, {p.task_id for p in problems})
    return evaluate(tasks, choice.opener(), _settings(choice)).results


@pytest.mark.parametrize("devices", [("cpu",), ("cpu", "cpu")], ids=["one-device", "two-worker-threads"])
def test_samples_are_evaluated_while_generation_runs(tmp_path, sandbox_image, devices):
    emitted = tmp_path / "emitted.log"
    verdict_times: list[float] = []
    outcome = _run(
        tmp_path / "out",
        ScriptedEngineFactory(scripted_outputs(), delay_s=0.15, emitted_log=str(emitted)),
        devices,
        lambda progress: verdict_times.append(time.monotonic()),
    )
    emissions = sorted(float(line.split()[2]) for line in emitted.read_text().splitlines())
    assert len(emissions) == 6 * N
    # Streaming: verdicts arrive while the generator is still producing samples.
    assert verdict_times and verdict_times[0] < emissions[-1]
    assert sum(t < emissions[-1] for t in verdict_times) >= 6
    # The verdicts are those of evaluating the written generations.json on its own.
    results = outcome.evaluation.results
    assert results == _evaluate_file(tmp_path / "out" / "generations.json")
    for task, samples in results.items():
        assert samples[0].passed and samples[2] == samples[0], task
        assert [v.value for v in samples[3].verdicts] == ["compile_error"]
    stats = json.loads((tmp_path / "out" / "run_stats.json").read_text())
    assert stats["generation"]["generated"] == 6 * N and stats["evaluation"]["samples"] == 6 * N
    # Each worker's model loaded, then its last sample, in seconds from the start of generation.
    ready, last = stats["generation"]["ready_seconds_by_worker"], stats["generation"]["last_sample_seconds_by_worker"]
    assert set(ready) == set(stats["generation"]["samples_by_worker"]) and len(ready) == len(devices)
    assert all(0 <= ready[worker] < last[worker] <= stats["generation"]["seconds"] for worker in last)
    assert stats["evaluation"]["executed"] == outcome.evaluation.executed == 6 * 3  # the duplicate reference runs once
    assert stats["timeline"]["points"][-1][1:] == [6 * N, 6 * N]
    assert any(evaluated > 0 and generated < 6 * N for _, generated, evaluated in stats["timeline"]["points"])


def test_a_killed_run_resumes_both_stages(tmp_path, sandbox_image):
    output = tmp_path / "out"
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from tests.test_pipeline import _run, scripted_outputs
from tests.support.fake_engine import ScriptedEngineFactory
_run(Path({str(output)!r}), ScriptedEngineFactory(scripted_outputs(), delay_s=0.2))
"""
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
    generation_journal = output / "generations.json.journal" / "part-0.jsonl"
    evaluation_journal = output / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        generated = len(generation_journal.read_text().splitlines()) if generation_journal.exists() else 0
        judged = len(evaluation_journal.read_text().splitlines()) if evaluation_journal.exists() else 0
        if generated >= 10 and judged >= 3:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the run finished before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    generated_before = len(generation_journal.read_text().splitlines())
    judged_before = len(evaluation_journal.read_text().splitlines())
    assert 10 <= generated_before < 6 * N and not (output / "results.json").exists()

    resumed = _run(output, ScriptedEngineFactory(scripted_outputs()))
    assert resumed.generation.resumed == generated_before
    assert resumed.generation.generated == 6 * N - generated_before
    assert resumed.evaluation.from_journal >= judged_before
    uninterrupted = _run(tmp_path / "fresh", ScriptedEngineFactory(scripted_outputs()))
    for name in ("generations.json", "results.json"):
        assert (output / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    assert resumed.evaluation.metrics["pass@1"] == uninterrupted.evaluation.metrics["pass@1"]
    # Killed containers of the first run are not ours to count; none of this run's are left.
    # (`harness sandbox prune` removes the killed run's; the pool removes its own on close.)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen2")


def test_cli_end_to_end_with_a_tiny_model_then_resume(tmp_path, sandbox_image, tiny_model):
    output = tmp_path / "run"
    command = [
        "run",
        "--model",
        str(tiny_model),
        "--dataset",
        str(SAMPLE),
        "--n",
        "3",
        "--max-new-tokens",
        "48",
        "--gpus",
        "cpu",
        "--dtype",
        "float32",
        "--temperature",
        "0.8",
        "--workers",
        "2",
        "--output",
        str(output),
    ]
    done = harness_cli(*command)
    assert "pass@1" in done.stdout
    problems = load_problems(SAMPLE)
    document = json.loads((output / "generations.json").read_text())
    assert [entry["task_id"] for entry in document] == [p.task_id for p in problems]
    assert [entry["prompt"] for entry in document] == [build_prompt(p.row) for p in problems]
    assert all(len(entry["output"]) == 3 for entry in document)
    results = json.loads((output / "results.json").read_text())
    metrics = json.loads((output / "metrics.json").read_text())
    assert list(results) == [str(p.task_id) for p in problems] and all(len(r) == 3 for r in results.values())
    assert metrics["counts"]["samples"] == 18 and metrics["counts"]["infra_errors"] == 0

    # The same file evaluated on its own (no cache) gives the same results.json and pass@k.
    assert_evaluate_reproduces(output, SAMPLE, tmp_path / "alone")

    stats = json.loads((output / "run_stats.json").read_text())
    generation, evaluation = stats["generation"], stats["evaluation"]
    assert generation["generated"] == 18 and generation["new_tokens"] > 18 and generation["tokens_per_s"] > 0
    assert generation["devices"] == ["cpu"] and generation["gpu_memory_peak_bytes"] == {}
    assert generation["samples_by_worker"] == {"cpu": 18} and generation["workers_lost"] == [] and generation["requeued"] == 0
    assert evaluation["samples"] == 18 and evaluation["tests_executed"] >= evaluation["executed"] > 0
    assert stats["sandboxes"]["slots"] == 2 and stats["sandboxes"]["started"] >= 1 and stats["sandboxes"]["live_peak"] >= 1
    assert stats["host"]["rss_peak_bytes"] > 50 * 2**20
    assert stats["wall_seconds"] >= generation["seconds"] > 0
    for name in ("report.md", "report.html", "pass_at_k_by_difficulty.png", "verdict_mix.png", "run_timeline.png"):
        assert (output / name).stat().st_size > 0, name
    report = (output / "report.md").read_text()
    assert "run_timeline.png" in report and "timeline.points" not in report  # plotted, not tabled
    assert f"| generation.generated | {generation['generated']} |" in report

    # Rerunning the same command resumes: nothing is generated or executed again.
    first_results = (output / "results.json").read_text()
    harness_cli(*command)
    stats = json.loads((output / "run_stats.json").read_text())
    assert (stats["generation"]["resumed"], stats["generation"]["generated"]) == (18, 0)
    assert stats["evaluation"]["executed"] == 0 and stats["evaluation"]["from_journal"] == stats["evaluation"]["jobs"]
    assert (output / "results.json").read_text() == first_results


def test_run_refuses_changed_generation_settings_with_one_line(tmp_path, sandbox_image, tiny_model):
    output = tmp_path / "run"
    base = [
        "run",
        "--model",
        str(tiny_model),
        "--dataset",
        str(SAMPLE),
        "--limit",
        "1",
        "--n",
        "1",
        "--max-new-tokens",
        "8",
        "--gpus",
        "cpu",
        "--dtype",
        "float32",
        "--workers",
        "1",
        "--output",
        str(output),
    ]
    harness_cli(*base)
    done = harness_cli(*base[:-2], "--temperature", "0.7", "--output", str(output), check=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1 and "other settings" in errors[0], done.stderr[-1500:]
    assert (output / "results.json").exists()  # nothing already computed is lost
    harness_cli(*base[:-2], "--temperature", "0.7", "--restart", "--output", str(output))
