"""The demo model (trained on the bundled sample's official prompts and reference solutions) through
both engines and through ``harness run``: its samples stop by themselves, greedy decoding solves every
bundled problem, sampling at the demo's temperature solves some samples and not others, and
``harness evaluate`` of the run's generations.json gives the run's results.json."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from harness.data.problems import load_problems
from harness.data.prompts import build_prompt, truncate_at_eof
from harness.generation.engine import FinishReason, load_model
from harness.generation.fast_engine import FastEngine, FastEngineOptions, unsupported_reason
from harness.generation.hf_engine import HFEngine
from harness.generation.plan import GenerationSettings, SamplingSettings, plan_jobs
from harness.training.corpus import training_examples
from harness.training.recipe import DEMO_RECIPE
from harness.training.train import MANIFEST, cached_model
from tests.evaluation.test_evaluate import harness_cli
from tests.support.sample_runs import assert_evaluate_reproduces
from tests.training.conftest import SAMPLE, demo_run_option

# Greedy decoding writes every bundled problem's reference solution: all six pass.
EXPECTED_GREEDY_PASS_AT_1 = 1.0
# Samples that must end by EOS or an official EOF string rather than the token budget.
SELF_STOPPED_SHARE = 0.9
MAX_NEW_TOKENS = int(demo_run_option("max-new-tokens"))
DEMO_TEMPERATURE = float(demo_run_option("temperature"))
DEMO_TOP_P = float(demo_run_option("top-p"))
DEMO_N = int(demo_run_option("n"))


def _generate(model_dir, engine: str, sampling: SamplingSettings, n: int) -> dict:
    model, tokenizer = load_model(str(model_dir), "float32", "cpu")
    problems = load_problems(SAMPLE)
    settings = GenerationSettings(str(model_dir), n, MAX_NEW_TOKENS, sampling, dtype="float32")
    jobs = plan_jobs([(p.task_id, build_prompt(p.row)) for p in problems], settings)
    if engine == "fast":
        runner = FastEngine(model, tokenizer, sampling, FastEngineOptions(slots=8))
    else:
        runner = HFEngine(model, tokenizer, sampling, batch_size=8)
    found: dict = {}
    runner.run(jobs, lambda sample: found.setdefault((sample.task_id, sample.index), sample))
    assert len(found) == len(problems) * n
    return found


def _self_stopped_share(samples) -> float:
    reasons = Counter(s.finish_reason for s in samples)
    return (reasons[FinishReason.EOS] + reasons[FinishReason.STOP]) / sum(reasons.values())


def test_the_model_is_an_ordinary_cached_directory_the_fast_engine_runs(demo_model, model_cache):
    manifest = json.loads((demo_model.directory / MANIFEST).read_text())
    assert manifest["complete"] and manifest["steps"] == DEMO_RECIPE.steps and manifest["key"] == demo_model.key
    # Memorised: the loss is close to its floor, the entropy of the smoothed targets.
    vocab, smoothing = DEMO_RECIPE.vocab_size, DEMO_RECIPE.label_smoothing
    right, wrong = 1 - smoothing + smoothing / vocab, smoothing / vocab
    floor = -(right * math.log(right) + (vocab - 1) * wrong * math.log(wrong))
    assert floor < demo_model.final_loss < floor + 0.25  # (the input noise adds a little)
    again = cached_model(training_examples(load_problems(SAMPLE)), DEMO_RECIPE, model_cache)
    assert again.from_cache and again.directory == demo_model.directory and again.key == demo_model.key
    model, tokenizer = load_model(str(demo_model.directory), "float32", "cpu")
    assert model.config.model_type == "llama" and unsupported_reason(model) is None
    assert tokenizer.eos_token == "<|endoftext|>" and model.generation_config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_greedy_decoding_writes_each_reference_solution_and_stops(demo_model, engine):
    samples = _generate(demo_model.directory, engine, SamplingSettings(temperature=0.0), 1)
    examples = {e.task_id: e for e in training_examples(load_problems(SAMPLE))}
    for (task_id, _), sample in samples.items():
        assert truncate_at_eof(sample.text).rstrip("\n") == examples[task_id].solution.rstrip("\n"), task_id
    # Both ways of stopping by itself occur: the EOS token and the official separator.
    assert {s.finish_reason for s in samples.values()} == {FinishReason.EOS, FinishReason.STOP}


def test_sampled_at_the_demo_temperature_both_engines_agree_and_stop_by_themselves(demo_model):
    sampling = SamplingSettings(temperature=DEMO_TEMPERATURE, top_p=DEMO_TOP_P, seed=0)
    fast = _generate(demo_model.directory, "fast", sampling, DEMO_N)
    hf = _generate(demo_model.directory, "hf", sampling, DEMO_N)
    assert {key: s.token_ids for key, s in fast.items()} == {key: s.token_ids for key, s in hf.items()}
    assert _self_stopped_share(fast.values()) >= SELF_STOPPED_SHARE
    # Sampling makes mistakes: not every sample is its problem's reference solution.
    examples = {e.task_id: e for e in training_examples(load_problems(SAMPLE))}
    exact = [truncate_at_eof(s.text).rstrip("\n") == examples[t].solution.rstrip("\n") for (t, _), s in fast.items()]
    assert 0 < sum(exact) < len(exact)


def _run(output, *options: str):
    return harness_cli(
        "run",
        "--model",
        str(output.parent / "model"),
        "--dataset",
        str(SAMPLE),
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        "--gpus",
        "cpu",
        "--dtype",
        "float32",
        "--workers",
        "2",
        "--output",
        str(output),
        *options,
    )


@pytest.fixture
def model_dir(tmp_path, demo_model):
    """The demo model as `make demo-run` gets it: `harness train-demo-model` (here from the session's cache)."""
    done = harness_cli("train-demo-model", "--dataset", str(SAMPLE), "--output", str(tmp_path / "model"))
    assert "from the cache" in done.stdout
    return tmp_path / "model"


def test_train_demo_model_refuses_bad_input_with_one_line(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    done = harness_cli("train-demo-model", "--dataset", str(SAMPLE), "--output", str(occupied), check=False)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"harness: error: --output: {occupied} is not empty and holds no trained model; choose another directory"
    ]
    no_solutions = tmp_path / "no_solutions.jsonl"
    tests = json.dumps({"inputs": [""], "outputs": ["1\\n"]})
    no_solutions.write_text(json.dumps({"question": "Print 1.", "solutions": "[]", "input_output": tests}) + "\n")
    done = harness_cli("train-demo-model", "--dataset", str(no_solutions), "--output", str(tmp_path / "m"), check=False)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("harness: error: ")
    assert "no problem has a reference solution" in done.stderr


def test_harness_run_greedy_solves_the_bundled_problems(tmp_path, model_dir):
    _run(tmp_path / "greedy", "--n", "1", "--temperature", "0")
    metrics = json.loads((tmp_path / "greedy" / "metrics.json").read_text())
    assert metrics["pass@1"] == EXPECTED_GREEDY_PASS_AT_1


def test_harness_run_at_the_demo_temperature_passes_some_samples_and_evaluate_agrees(tmp_path, model_dir):
    output = tmp_path / "demo"
    done = _run(output, "--n", str(DEMO_N), "--temperature", str(DEMO_TEMPERATURE), "--top-p", str(DEMO_TOP_P))
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 < metrics["pass@1"] < 1, metrics["pass@1"]
    assert metrics["counts"]["infra_errors"] == 0
    outcomes = metrics["counts"]["outcomes"]
    assert len([kind for kind, count in outcomes.items() if count]) >= 2, outcomes
    assert "pass@1" in done.stdout

    stats = json.loads((output / "run_stats.json").read_text())
    reasons = stats["generation"]["finish_reasons"]
    stopped = reasons.get("eos", 0) + reasons.get("stop", 0)
    assert stopped >= SELF_STOPPED_SHARE * sum(reasons.values()), reasons
    # The report shows the pass@1 and the mix of outcomes.
    report = (output / "report.md").read_text()
    assert f"pass@1 {100 * metrics['pass@1']:.2f}%" in report
    for outcome in outcomes:
        escaped = outcome.replace("_", "\\_")  # as markdown writes it
        assert f"| {escaped} | " in report, outcome

    assert_evaluate_reproduces(output, SAMPLE, tmp_path / "alone")
