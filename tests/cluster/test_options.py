"""`--cluster ray` and `--ray-address` on the command line: one-line errors before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ["--dataset", "samples/problems.jsonl", "--generations", "samples/generations.json"]


def harness(*args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"} | environment
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "options, error",
    [
        (["--ray-address", "10.0.0.1:6379"], "harness: error: --ray-address needs --cluster ray"),
        (
            ["--cluster", "ray"],
            "harness: error: --cluster ray needs the head node's address: --ray-address HOST:PORT or RAY_ADDRESS",
        ),
    ],
)
def test_cluster_options_that_cannot_work_are_one_line_errors(tmp_path, options, error):
    done = harness("evaluate", *SAMPLE, "--output", str(tmp_path / "out"), *options)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [error]
    assert not (tmp_path / "out" / "journal.jsonl").exists()


def test_an_unreachable_cluster_is_a_one_line_error_naming_the_address(tmp_path):
    # RAY_ADDRESS stands in for --ray-address; nothing listens on this port.  Without --no-cache the
    # verdict cache may answer every sample, and then the cluster is rightly never opened.
    done = harness(
        "evaluate", *SAMPLE, "--output", str(tmp_path / "out"), "--no-cache", "--cluster", "ray", RAY_ADDRESS="127.0.0.1:1"
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("harness: error: cannot connect to the Ray cluster at 127.0.0.1:1")
