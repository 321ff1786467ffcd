"""Bad input to `harness evaluate`, through the real command line: every problem is one stderr line
``harness: error: ...`` naming it, a non-zero exit, and no results.json/metrics.json written as if
the run had finished.  (tests/test_datasets.py checks the same loaders at library level.)"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"  # six problems, task ids 0-5
GOOD = [{"task_id": t, "output": ["print(1)"]} for t in range(6)]


def run_cli(args: list[str], env: dict | None = None, memory_cap: int | None = None) -> subprocess.CompletedProcess:
    def cap():
        if memory_cap:
            resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))

    return subprocess.run(
        [sys.executable, "-m", "harness", "evaluate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        preexec_fn=cap,
        timeout=300,
    )


def assert_one_line_failure(done: subprocess.CompletedProcess, output: Path, *needles: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("harness: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (output / "results.json").exists() and not (output / "metrics.json").exists()


def _write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


GENERATIONS_CASES = {
    "malformed JSON": (b'[{"task_id": 0, "output": ["x"]', "not valid JSON"),
    "malformed JSONL line": (b'{"task_id": 0, "output": ["x"]}\n{"task_id": 1,\n', "not valid JSON"),
    "not a list": ({"task_id": 0, "output": ["x"]}, "expected a JSON list"),
    "empty list": ([], "no generations"),
    "task_id of the wrong type": ([{"task_id": "zero", "output": ["x"]}], "task_id must be an integer"),
    "task_id null": ([{"task_id": None, "output": ["x"]}], "task_id must be an integer"),
    "output not a list": ([{"task_id": 0, "output": "print(1)"}], "must be a list of strings"),
    "output with a non-string": ([{"task_id": 0, "output": ["print(1)", 7]}], "must be a list of strings"),
    "missing output": ([{"task_id": 0}], "needs 'task_id' and 'output'"),
    "missing task_id": ([{"output": ["x"]}], "needs 'task_id' and 'output'"),
    "entry not an object": ([["x"]], "needs 'task_id' and 'output'"),
    "unknown task id": ([*GOOD, {"task_id": 99, "output": ["x"]}], "absent from the dataset: 99"),
    "duplicate task ids": ([*GOOD, {"task_id": 3, "output": ["x"]}], "task_id 3 appears more than once"),
    "empty output list": ([{"task_id": 0, "output": []}, *GOOD[1:]], "'output' is empty"),
    "tasks without generations": (GOOD[:4], "without generations: 4, 5"),
    "non-UTF-8 bytes": (b'[{"task_id": 0, "output": ["\xff\xfe"]}]', "not UTF-8"),
}


@pytest.mark.parametrize("case", list(GENERATIONS_CASES))
def test_bad_generations(tmp_path, case):
    content, needle = GENERATIONS_CASES[case]
    suffix = ".jsonl" if "JSONL" in case else ".json"
    generations = _write(tmp_path / f"generations{suffix}", content)
    out = tmp_path / "out"
    done = run_cli(["--dataset", str(SAMPLE), "--generations", str(generations), "--output", str(out)])
    assert_one_line_failure(done, out, needle, str(generations) if "task" not in case else "")


@pytest.mark.parametrize("suffix, needle", [(".json", "too large for a .json generations file"), (".jsonl", "line longer than")])
def test_two_gigabyte_generations_file(tmp_path, suffix, needle):
    """A sparse 2 GiB file (valid start, then NUL bytes): refused before it is read, in bounded memory."""
    path = tmp_path / f"huge{suffix}"
    with path.open("wb") as handle:
        handle.write(
            b'[{"task_id": 0, "output": ["print(1)"]}]'
            if suffix == ".json"
            else b'{"task_id": 0, "output": ["print(1)"]}\n{"task_id": 1, "output": ["'
        )
        handle.truncate(2 << 30)
    out = tmp_path / "out"
    # 3 GiB of address space: reading the file whole (2 GiB of bytes, then as much again decoded) cannot fit.
    done = run_cli(["--dataset", str(SAMPLE), "--generations", str(path), "--output", str(out)], memory_cap=3 << 30)
    assert_one_line_failure(done, out, needle)


DATASET_CASES = {
    "dataset path that does not exist": (None, "dataset not found"),
    "malformed dataset JSON": (b"[{", "not valid JSON"),
    "dataset rows without input_output": (b'[{"question": "q"}]', "input_output"),
    "dataset with broken input_output": (b'[{"input_output": "{\\"inputs\\": 3}"}]', "input_output"),
    "non-UTF-8 dataset": (b"\xff\xfe[]", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_bad_dataset(tmp_path, case):
    content, needle = DATASET_CASES[case]
    dataset = tmp_path / "missing" / "problems.json" if content is None else _write(tmp_path / "problems.json", content)
    generations = _write(tmp_path / "g.json", [{"task_id": 0, "output": ["x"]}])
    out = tmp_path / "out"
    done = run_cli(["--dataset", str(dataset), "--generations", str(generations), "--output", str(out)])
    assert_one_line_failure(done, out, needle)


def test_missing_generations_file_and_output_that_is_a_file(tmp_path):
    out = tmp_path / "out"
    done = run_cli(["--dataset", str(SAMPLE), "--generations", str(tmp_path / "nope.json"), "--output", str(out)])
    assert_one_line_failure(done, out, "generations file not found")
    generations = _write(tmp_path / "g.json", GOOD)
    blocker = _write(tmp_path / "file", "x")
    done = run_cli(["--dataset", str(SAMPLE), "--generations", str(generations), "--output", str(blocker)])
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        f"harness: error: --output must be a directory: {blocker} is a file"
    ]


def test_docker_daemon_unreachable(tmp_path):
    """No daemon: a clear error naming the problem, exit != 0, nothing written as if finished."""
    generations = _write(tmp_path / "g.json", GOOD)
    out = tmp_path / "out"
    done = run_cli(
        ["--dataset", str(SAMPLE), "--generations", str(generations), "--output", str(out), "--no-cache"],
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"},
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]  # (after the empty progress bar)
    assert last.startswith("harness: error: cannot reach a Docker daemon") and "DOCKER_HOST" in last, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (out / "results.json").exists() and not (out / "metrics.json").exists()
