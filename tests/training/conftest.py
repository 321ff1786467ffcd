"""The demo model, trained once per test session (through the package's cache of trained models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli.train import MODEL_CACHE
from harness.data.problems import load_problems
from harness.evaluation.cache import default_cache_dir
from harness.training.corpus import training_examples
from harness.training.recipe import DEMO_RECIPE
from harness.training.train import TrainedModel, cached_model

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"


def demo_run_option(name: str) -> str:
    """An option's value on the Makefile's `demo-run` command line, so the tests sample as the demo does."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndemo-run:", 1)[1].split("\n\n", 1)[0]
    match = re.search(rf"--{name} (\S+)", recipe)
    assert match is not None, f"demo-run has no --{name}"
    return match.group(1)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    # Where `harness train-demo-model` looks: under the session's private cache directory (tests/conftest.py),
    # so the command in a test finds the model this session trained.
    return default_cache_dir() / MODEL_CACHE


@pytest.fixture(scope="session")
def demo_model(model_cache) -> TrainedModel:
    return cached_model(training_examples(load_problems(SAMPLE)), DEMO_RECIPE, model_cache)
