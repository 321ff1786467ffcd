"""The command layer itself: --version, the option groups parsed into their dataclasses, and the
one-line error (exit 1) for every HarnessError, whichever command lets it through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.cli.console import exit_if_unscored
from harness.cli.options import (
    DatasetOptions,
    EvaluationOptions,
    GenerationOptions,
    dataset_options,
    evaluation_options,
    generation_options,
)
from harness.data.problems import Selection
from harness.evaluation.cache import VerdictCache
from harness.generation.workers import DeviceWorkers
from harness.sandbox.choice import SandboxKind

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"


def one_error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_version_from_click_and_python_dash_m():
    from harness import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"harness {__version__}\n"
    done = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == f"harness {__version__}\n"


# -- the option groups --------------------------------------------------------------------------------
HANDED: list[tuple[DatasetOptions, GenerationOptions, EvaluationOptions, str]] = []


@click.command()
@dataset_options
@generation_options
@evaluation_options
@click.option("--output")
def capture(dataset: DatasetOptions, generation: GenerationOptions, evaluation: EvaluationOptions, output: str) -> None:
    """Keeps what the option groups hand a command."""
    HANDED.append((dataset, generation, evaluation, output))


def handed(*args: str) -> tuple[DatasetOptions, GenerationOptions, EvaluationOptions, str]:
    HANDED.clear()
    result = CliRunner().invoke(capture, list(args))
    assert result.exit_code == 0, result.output
    (seen,) = HANDED
    return seen


def test_option_groups_become_one_dataclass_each():
    dataset, generation, evaluation, output = handed(
        *("--dataset", "d.jsonl", "--difficulty", "EASY", "--indices", "0,5,10-12", "--limit", "3"),
        *("--model", "m", "--n", "4", "--temperature", "0", "--batch-size", "8", "--gpus", "cpu", "--engine", "hf"),
        *("--device-workers", "processes"),
        *("--timeout", "2.5", "--all-tests", "--no-dedup", "--no-cache", "--sandbox", "namespace", "--workers", "3"),
        *("--output", "o"),
    )
    assert output == "o"
    assert dataset == DatasetOptions("d.jsonl", "test", Selection(("EASY",), (), (0, 5, 10, 11, 12), 3))
    assert generation.settings.model == "m" and generation.settings.n == 4 and generation.settings.sampling.greedy
    assert (generation.engine_factory.engine, generation.engine_factory.batch_size, generation.gpus) == ("hf", 8, "cpu")
    assert generation.device_workers is DeviceWorkers.PROCESSES
    assert evaluation.settings.limits.timeout_s == 2.5
    assert not evaluation.settings.early_exit and not evaluation.settings.dedup
    assert evaluation.sandbox.kind is SandboxKind.NAMESPACE and evaluation.sandbox.workers == 3
    with evaluation.verdict_cache() as cache:
        assert cache is None  # --no-cache


def test_option_group_defaults():
    dataset, generation, evaluation, _ = handed("--dataset", "d", "--model", "m")
    assert dataset.selection == Selection()
    assert generation.engine_factory.batch_size is None and generation.gpus == "all" and generation.settings.n == 20
    assert generation.device_workers is DeviceWorkers.THREADS
    assert evaluation.settings.early_exit and evaluation.settings.dedup and evaluation.sandbox.kind is SandboxKind.DOCKER
    with evaluation.verdict_cache() as cache:
        assert isinstance(cache, VerdictCache)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--indices", "1-x"], "--indices: expected numbers and ranges like '0,5,10-20', got '1-x'"),
        (["--batch-size", "0"], "--batch-size: expected 'auto' or a positive integer, got '0'"),
    ],
)
def test_unparsable_option_is_one_error_line(args, message):
    result = CliRunner().invoke(main, ["run", "--dataset", str(SAMPLE), "--model", "m", "--output", "o", *args])
    assert result.exit_code == 1
    assert one_error_line(result) == f"harness: error: {message}"


# -- errors -------------------------------------------------------------------------------------------
def test_a_harness_error_from_any_command_is_one_line_and_exit_1(tmp_path):
    # The sandbox commands have no error handling of their own: the group turns DockerUnavailable into
    # the error line.
    done = subprocess.run(
        [sys.executable, "-m", "harness", "sandbox", "prune"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"},
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [line for line in done.stderr.splitlines() if line.startswith("harness: error: ")]
    assert len(done.stderr.splitlines()) == 1 and "cannot reach a Docker daemon" in done.stderr


def test_report_of_a_directory_without_metrics(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and str(tmp_path) in one_error_line(result)


def test_model_and_devices_are_checked_before_the_dataset_is_read(tmp_path):
    result = CliRunner().invoke(main, ["generate", "--model", "./nowhere", "--dataset", "/no/such.jsonl", "--output", "g.json"])
    assert result.exit_code == 1 and "model not found: ./nowhere" in one_error_line(result)
    pytest.importorskip("torch")
    (tmp_path / "config.json").write_text("{}")
    result = CliRunner().invoke(
        main, ["generate", "--model", str(tmp_path), "--gpus", "two", "--dataset", "/no/such.jsonl", "--output", "g.json"]
    )
    assert result.exit_code == 1
    assert one_error_line(result) == "harness: error: --gpus: expected 'all', 'cpu', a count or indices like '0,2', got 'two'"


def test_unscored_samples_exit_with_status_3():
    @click.command()
    def finish() -> None:
        exit_if_unscored(0)
        click.echo("all scored")
        exit_if_unscored(2)

    result = CliRunner().invoke(finish)
    assert result.exit_code == 3
    assert result.output.splitlines() == [
        "all scored",
        "harness: 2 sample(s) are not scored (sandbox failures, or timeouts the machine's load caused, on every retry) "
        "(null in results.json); "
        "rerun the same command to retry them",
    ]


def test_evaluate_resumes_unless_restarted(tmp_path, sandbox_image):
    generations = tmp_path / "g.json"
    generations.write_text(
        json.dumps([{"task_id": 0, "output": ["print(1)", "a, b = map(int, input().split())\nprint(a + b)\n"]}])
    )
    args = [
        "evaluate",
        "--dataset",
        str(SAMPLE),
        "--indices",
        "0",
        "--generations",
        str(generations),
        "--output",
        str(tmp_path / "out"),
        "--no-cache",
        "--workers",
        "1",
    ]

    def summary(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "harness", *args, *extra], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        return next(line for line in done.stdout.splitlines() if "distinct programs" in line)  # the counts, below pass@k

    assert "(2 run, 0 cached, 0 resumed)" in summary()
    assert "(0 run, 0 cached, 2 resumed)" in summary()
    assert "(2 run, 0 cached, 0 resumed)" in summary("--restart")
