"""The public API: every name in ``harness.__all__`` resolves, and the README's "From Python" example
runs as written (real Docker sandboxes) and prints what its comments say."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    """The ```python block that follows "From Python" in the README's "## Use" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    use = readme[readme.index("\n## Use\n") :]
    use = use[: use.index("\n## ", 1)]
    match = re.search(r"^From Python.*?^```python\n(.*?)^```$", use, re.DOTALL | re.MULTILINE)
    assert match, "no python block under 'From Python' in the README's '## Use' section"
    return match.group(1)


def expected_prints(code: str) -> list[str]:
    """The comment after each print(...) line: what it prints ("..." stands for the rest of a line)."""
    return [line.split("  # ", 1)[1] for line in code.splitlines() if line.startswith("print(") and "  # " in line]


def test_readme_example_runs_as_written(tmp_path, sandbox_image):
    code = readme_python_example()
    assert re.findall(r"^\s*(?:from|import) (\S+)", code, re.MULTILINE) == ["pathlib", "harness"]  # only from harness
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.splitlines()
    expected = expected_prints(code)
    assert len(printed) == len(expected) == 3, done.stdout
    for line, comment in zip(printed, expected):
        assert line.startswith(comment.split("...", 1)[0]) if "..." in comment else line == comment, (line, comment)
    output = tmp_path / "out" / "python"
    for name in ("results.json", "metrics.json", "run_stats.json", "journal.jsonl"):
        assert (output / name).stat().st_size > 0, name
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["settings"]["sandbox"].startswith("taco-harness-sandbox:")  # the identity of the sandboxes used
    assert list(json.loads((output / "results.json").read_text())) == ["0", "1"]


def test_every_public_name_resolves_to_its_home():
    assert len(set(harness.__all__)) == len(harness.__all__)
    assert set(harness.__all__) == set(harness._HOMES) | {"__version__"}
    for name, home in harness._HOMES.items():
        value = getattr(harness, name)
        assert getattr(sys.modules[home], name) is value, name
    assert set(harness.__all__) <= set(dir(harness))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        harness.nothing_here  # noqa: B018


def test_every_public_error_is_a_harness_error():
    errors = [getattr(harness, name) for name in harness.__all__ if name.endswith("Error") or name == "SandboxUnavailable"]
    assert errors and all(issubclass(error, harness.HarnessError) for error in errors)


def test_a_sandbox_kind_whose_package_is_missing_is_a_harness_error(monkeypatch):
    from harness.errors import SandboxNotInstalled

    def identity(self):
        raise ImportError("No module named 'docker'", name="docker")

    monkeypatch.setattr(harness.SandboxChoice, "identity", identity)
    problem = harness.load_problems(ROOT / "samples" / "problems.jsonl", selection=harness.Selection(limit=1))[0]
    with pytest.raises(SandboxNotInstalled, match=r"--sandbox docker needs docker \(pip install -e \. on this machine\)"):
        harness.evaluate([harness.TaskSamples(problem, ("print(1)",))])


def test_discard_journals_starts_a_run_directory_over(tmp_path):
    journal = tmp_path / "generations.json.journal"
    journal.mkdir()
    (journal / "part-0.jsonl").write_text("{}\n")
    (tmp_path / "journal.jsonl").write_text("{}\n")
    (tmp_path / "results.json").write_text("{}")
    harness.discard_journals(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # the outputs stay until rewritten
    harness.discard_journals(tmp_path)  # nothing to discard: no error
