"""The command line at its edges (issue 17, items 5 and 6), through the real commands: outputs that
cannot be created fail in one line before anything starts, Ctrl-C exits 130 quietly, progress written
to a pipe has no cursor codes, and a missing Docker daemon points at --sandbox namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"  # six problems, task ids 0-5
SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def only_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


def _generations(tmp_path: Path, outputs: list[str]) -> Path:
    path = tmp_path / "g.json"
    path.write_text(json.dumps([{"task_id": 0, "output": outputs}]))
    return path


@pytest.mark.parametrize("command", ["run", "evaluate"])
def test_an_output_directory_that_cannot_be_created_is_one_line_before_anything_starts(tmp_path, command):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    output = blocker / "out"
    if command == "run":
        # A model that does not exist: the output is checked first.
        args = ["run", "--model", "./no-such-model", "--dataset", str(SAMPLE), "--gpus", "cpu"]
    else:
        args = ["evaluate", "--dataset", str(SAMPLE), "--generations", str(_generations(tmp_path, [SUM]))]
    # No Docker daemon either: no sandbox may be asked for before the output is checked.
    done = harness(*args, "--output", str(output), env={"DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"})
    assert only_line(done) == f"harness: error: --output: cannot create {output}: {blocker} is a file"


def test_no_docker_daemon_suggests_the_namespace_sandbox(tmp_path):
    done = harness(
        "evaluate", "--dataset", str(SAMPLE), "--indices", "0", "--generations", str(_generations(tmp_path, [SUM])),
        "--output", str(tmp_path / "out"), "--no-cache", env={"DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"},
    )  # fmt: skip
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("harness: error: cannot reach a Docker daemon"), done.stderr[-2000:]
    assert "DOCKER_HOST" in last and "--sandbox namespace" in last


@pytest.mark.docker
def test_progress_on_a_pipe_is_plain_lines(tmp_path, sandbox_image):
    done = harness(
        "evaluate", "--dataset", str(SAMPLE), "--indices", "0", "--generations", str(_generations(tmp_path, [SUM, "print(3)"])),
        "--output", str(tmp_path / "out"), "--no-cache", "--workers", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stderr and "\x1b" not in done.stderr, repr(done.stderr[-1000:])
    assert "evaluate: 2/2 samples (100%)" in done.stderr


@pytest.mark.docker
def test_ctrl_c_exits_130_without_sandbox_noise_or_a_full_bar(tmp_path, sandbox_image):
    output = tmp_path / "out"
    generations = _generations(tmp_path, [SUM, "import time\ntime.sleep(120)\n", "import time\ntime.sleep(121)\n"])
    args = ["--generations", str(generations), "--output", str(output), "--no-cache", "--workers", "3", "--timeout", "20"]
    child = subprocess.Popen(
        [sys.executable, "-m", "harness", "evaluate", "--dataset", str(SAMPLE), "--indices", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    journal = output / "journal.jsonl"
    deadline = time.monotonic() + 240
    while not (journal.exists() and journal.read_text().strip()):  # the quick sample is judged
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(1.0)  # the sleeping samples are running in their sandboxes
    os.killpg(child.pid, signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr[-3000:]
    assert "sandbox failure" not in stderr and "Traceback" not in stderr and "WARNING" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert lines[-1] == f"harness: error: interrupted; rerun the same command to resume from {journal}"
    assert not [line for line in lines if line.startswith("evaluate: 3/3")], stderr  # the bar did not jump to the end
    assert not (output / "results.json").exists()
