"""Partial runs say so, and results record what produced them.

* A partial run (``--allow-partial``: selected tasks without generations, generations of ids the
  dataset lacks) is one warning line on the terminal, the ``coverage`` block of metrics.json and a
  section of the report; a pass@k that TACO's rule leaves out says why (``not_reported``).
* ``provenance`` in metrics.json and run_stats.json (model and generation settings when recorded,
  dataset and generations file with their digests, filters, harness, sandbox image, both Pythons,
  date), shown at the top of the report, whose title names the model and the dataset.
* The terminal summary of ``harness evaluate``: a pass@k table, then one line of counts.

Through the command line (and ``run_pipeline`` for ``harness run``'s flow) with real sandboxes, on the
bundled sample.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import harness
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.pipeline import load_dataset, load_tasks, run_pipeline
from harness.sandbox.choice import SandboxChoice
from harness.sandbox.docker.backend import DockerBackend
from harness.sandbox.interface import greet
from tests.evaluation.test_evaluate import SAMPLE, harness_cli
from tests.support.fake_engine import ScriptedEngineFactory

ROOT = Path(__file__).resolve().parents[2]
GENERATIONS = ROOT / "samples" / "generations.json"
# The keys TACO's own scripts and earlier versions of this harness wrote: all kept.
EARLIER_KEYS = {"pass@1", "detail", "by_difficulty", "by_skill", "counts", "infra_error_samples", "settings"}


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate(output: Path, *args: str, dataset: Path = SAMPLE, generations: Path = GENERATIONS) -> subprocess.CompletedProcess:
    return harness_cli(
        "evaluate", "--dataset", str(dataset), "--generations", str(generations), "--output", str(output), "--workers", "1", *args
    )


def markdown_table(markdown: str, heading: str) -> dict[str, str]:
    """The two-column table under a heading of report.md, as {first cell: second cell}."""
    section = markdown.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return {re.sub(r"\\(.)", r"\1", row[0].strip()): re.sub(r"\\(.)", r"\1", row[1].strip()) for row in rows[1:]}


# -- a partial run ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`--limit 5 --allow-partial` with generations for one of the five selected tasks, one id the
    dataset lacks (42) and one task the limit leaves out (5: ignored, as always)."""
    directory = tmp_path_factory.mktemp("partial")
    entries = {entry["task_id"]: entry for entry in json.loads(GENERATIONS.read_text())}
    generations = directory / "generations.json"
    generations.write_text(json.dumps([entries[3], {"task_id": 42, "output": ["print(1)"]}, entries[5]]))
    done = evaluate(directory / "out", "--limit", "5", "--allow-partial", generations=generations)
    return done, directory / "out"


def test_a_partial_run_says_so_on_the_terminal(partial):
    done, _ = partial
    warnings = [line for line in done.stderr.splitlines() if line.startswith("harness: warning: partial run:")]
    assert warnings == [
        "harness: warning: partial run: 4 of 5 selected tasks have no generations and are left out (0, 1, 2, 4); "
        "pass@k is over 1 task; generations of 1 task id not in the dataset are ignored (42) (metrics.json: coverage)"
    ], done.stderr[-2000:]


def test_a_partial_run_is_recorded_in_metrics_and_the_report(partial):
    _, output = partial
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["coverage"] == {
        "partial": True,
        "selected": 5,
        "evaluated": 1,
        "left_out": 4,
        "no_generations": [0, 1, 2, 4],
        "not_in_dataset": [42],
    }
    assert metrics["counts"]["tasks"] == 1 and list(metrics["detail"]["pass@1"]) == ["3"]

    markdown = (output / "report.md").read_text()
    assert (
        "**Partial run: 4 of 5 selected tasks had no generations and were left out, so pass@k is over 1 task. "
        "1 task id of the generations file is not in the dataset: its generations were ignored.**"
    ) in markdown
    assert "| no generations (selected, left out) | 4 | 0, 1, 2, 4 |" in markdown
    assert "| not in the dataset (ignored) | 1 | 42 |" in markdown
    page = (output / "report.html").read_text()
    assert '<p class="warning" id="partial">Partial run: 4 of 5 selected tasks' in page
    assert '<table id="left-out">' in page and "<td>0, 1, 2, 4</td>" in page


def test_a_complete_run_is_not_partial(evaluated):
    done, output = evaluated
    assert "partial run" not in done.stderr
    coverage = json.loads((output / "metrics.json").read_text())["coverage"]
    assert coverage == {
        "partial": False,
        "selected": 6,
        "evaluated": 6,
        "left_out": 0,
        "no_generations": [],
        "not_in_dataset": [],
    }
    assert "Partial run" not in (output / "report.md").read_text()


def test_a_pass_at_k_not_reported_says_why(evaluated):
    done, output = evaluated
    metrics = json.loads((output / "metrics.json").read_text())
    assert "pass@10" not in metrics and "pass@10" not in metrics["detail"]  # TACO's rule, as before
    assert metrics["not_reported"] == {
        "pass@10": "6 tasks have fewer than 10 scored samples (smallest: 4)",
        "pass@100": "6 tasks have fewer than 100 scored samples (smallest: 4)",
    }
    assert "pass@10, pass@100 not reported:\n  6 tasks have fewer than 10 scored samples (smallest: 4)\n" in done.stdout
    markdown = (output / "report.md").read_text()
    assert "* pass@10 is not reported: 6 tasks have fewer than 10 scored samples (smallest: 4)" in markdown
    assert "pass@100 is not reported: 6 tasks have fewer than 100 scored samples" in (output / "report.html").read_text()


# -- provenance ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, sandbox_image) -> tuple[subprocess.CompletedProcess, Path]:
    """The bundled sample, as `make demo` evaluates it."""
    output = tmp_path_factory.mktemp("evaluated") / "out"
    started = datetime.now(timezone.utc)
    done = evaluate(output)
    (output / "started").write_text(started.isoformat())
    return done, output


def test_metrics_and_run_stats_record_what_produced_them(evaluated, docker_client, sandbox_image):
    _, output = evaluated
    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics) >= EARLIER_KEYS | {"not_reported", "coverage", "provenance"}
    provenance = metrics["provenance"]
    assert provenance["command"] == "evaluate"
    # The generations file did not come from `harness generate`: the model is not known.
    assert provenance["model"] == provenance["generation"] == "not recorded"
    assert provenance["dataset"] == {
        "source": str(SAMPLE.resolve()),
        "split": "test",
        "rows": 6,
        "digest": sha256(SAMPLE),
        "digest_of": "file bytes",
        "filters": {"difficulties": [], "skills": [], "indices": None, "limit": None},
    }
    assert provenance["generations"] == {
        "path": str(GENERATIONS.resolve()),
        "digest": sha256(GENERATIONS),
        "tasks": 6,
        "samples_per_task": 4,
    }
    assert provenance["evaluation"] == metrics["settings"] and metrics["settings"]["judge_code"]
    assert provenance["harness"]["version"] == harness.__version__
    assert provenance["harness"]["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", provenance["harness"]["commit"])
    image = metrics["settings"]["sandbox"].split()[0]
    assert image == sandbox_image
    assert provenance["sandbox"] == {
        "kind": "docker",
        "image": image,
        "image_id": docker_client.images.get(image).id,
        "identity": metrics["settings"]["sandbox"],
    }
    # Both Pythons: this one, and the one a sandbox's runner reports when it starts.
    sandbox = DockerBackend(sandbox_image, client=docker_client, capacity=1).start()
    try:
        runner_python = greet(sandbox).python_version
    finally:
        sandbox.close()
    assert provenance["python"] == {"host": platform.python_version(), "sandbox": runner_python}
    started = datetime.fromisoformat((output / "started").read_text())
    assert started - timedelta(seconds=1) <= datetime.fromisoformat(provenance["date"]) <= datetime.now(timezone.utc)

    stats = json.loads((output / "run_stats.json").read_text())
    assert stats["provenance"] == provenance


def test_the_report_starts_with_the_provenance(evaluated):
    _, output = evaluated
    metrics = json.loads((output / "metrics.json").read_text())
    markdown = (output / "report.md").read_text()
    title = "TACO evaluation: problems.jsonl (test), model not recorded"
    assert markdown.startswith(f"# {title}\n")
    assert re.findall(r"^## .*", markdown, re.MULTILINE)[0] == "## Provenance"  # before pass@k
    table = markdown_table(markdown, "## Provenance")
    assert table["model"] == "not recorded" and table["generation settings"] == "not recorded"
    assert table["dataset"] == f"{SAMPLE.resolve()} (split test, 6 rows)"
    assert table["dataset digest"] == f"{sha256(SAMPLE)} (of the file bytes)"
    assert table["filters"] == "none (every problem of the split)"
    assert table["generations file"] == str(GENERATIONS.resolve())
    assert table["generations digest"] == sha256(GENERATIONS)
    python = metrics["provenance"]["python"]
    assert table["Python"] == f"host {python['host']}, sandbox {python['sandbox']}"
    assert table["sandbox"].startswith(f"docker: {metrics['provenance']['sandbox']['image']} (sha256:")
    assert table["date"] == metrics["provenance"]["date"]
    page = (output / "report.html").read_text()
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page
    assert page.index('<table id="provenance">') < page.index('<table id="pass-at-k-overall">')
    # Shown once, at the top: not again among the run statistics.
    assert "provenance." not in markdown.split("## Run statistics", 1)[1]


def test_the_model_is_recorded_when_the_generations_file_came_from_harness_generate(tmp_path, sandbox_image):
    """A generations.json with its journal's settings.json beside it, as `harness generate` leaves it."""
    generations = tmp_path / "gen" / "generations.json"
    generations.parent.mkdir()
    shutil.copy(GENERATIONS, generations)
    settings = GenerationSettings("/models/tiny-coder", 4, 64, SamplingSettings(0.8, 20, 0.9, 7), "float32")
    journal_settings = tmp_path / "gen" / "generations.json.journal" / "settings.json"
    journal_settings.parent.mkdir()
    journal_settings.write_text(json.dumps(settings.fingerprint()))
    evaluate(tmp_path / "out", "--indices", "0,1", generations=generations)

    provenance = json.loads((tmp_path / "out" / "metrics.json").read_text())["provenance"]
    assert provenance["model"] == "/models/tiny-coder"
    generation = provenance["generation"]
    assert (generation["n"], generation["temperature"], generation["top_k"], generation["top_p"]) == (4, 0.8, 20, 0.9)
    assert (generation["seed"], generation["max_new_tokens"], generation["dtype"]) == (7, 64, "float32")
    assert generation["from"] == str(journal_settings)
    assert provenance["dataset"]["filters"]["indices"] == [0, 1]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# TACO evaluation: tiny-coder on problems.jsonl (test)\n")
    table = markdown_table(markdown, "## Provenance")
    assert (table["model"], table["temperature"], table["top-k"], table["seed"]) == ("/models/tiny-coder", "0.8", "20", "7")
    assert table["filters"] == "task ids 0, 1"

    # Evaluated again from the first output directory's own copy: its metrics.json names the file by digest.
    shutil.rmtree(journal_settings.parent)
    again = tmp_path / "again"
    evaluate(again, "--indices", "0,1", generations=generations)
    assert json.loads((again / "metrics.json").read_text())["provenance"]["model"] == "not recorded"  # no journal, no run dir
    shutil.copy(generations, tmp_path / "out" / "generations.json")
    evaluate(again, "--indices", "0,1", generations=tmp_path / "out" / "generations.json")
    recorded = json.loads((again / "metrics.json").read_text())["provenance"]
    assert recorded["model"] == "/models/tiny-coder" and recorded["generation"]["from"] == str(tmp_path / "out" / "metrics.json")


def test_the_dataset_digest_follows_the_dataset(tmp_path, sandbox_image):
    dataset = tmp_path / "problems.jsonl"
    shutil.copy(SAMPLE, dataset)
    evaluate(tmp_path / "first", "--limit", "2", "--allow-partial", dataset=dataset)
    first = json.loads((tmp_path / "first" / "metrics.json").read_text())["provenance"]["dataset"]
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    rows[5]["question"] += " (edited)"  # a problem the filter does not even select
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    evaluate(tmp_path / "second", "--limit", "2", "--allow-partial", dataset=dataset)
    second = json.loads((tmp_path / "second" / "metrics.json").read_text())["provenance"]["dataset"]
    assert first["digest"] != second["digest"] == sha256(dataset)
    assert {**first, "digest": None} == {**second, "digest": None}


def test_a_directory_dataset_is_digested_by_its_selected_rows(tmp_path):
    """Other splits and files may sit beside a directory's split: its digest is of the rows selected."""
    pyarrow = pytest.importorskip("pyarrow")
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]

    def write_split(directory: Path) -> None:
        (directory / "test").mkdir(parents=True)
        table = pyarrow.Table.from_pylist(rows)
        with (
            pyarrow.OSFile(str(directory / "test" / "data-00000.arrow"), "wb") as sink,
            pyarrow.ipc.new_stream(sink, table.schema) as writer,
        ):
            writer.write_table(table)

    write_split(tmp_path / "a")
    first = load_tasks(tmp_path / "a", GENERATIONS, selection=harness.Selection(limit=3)).source.dataset
    assert first.digest_of == "selected rows" and first.rows == 6 and first.source == str((tmp_path / "a").resolve())
    (tmp_path / "a" / "README.md").write_text("another file beside the split")
    assert load_tasks(tmp_path / "a", GENERATIONS, selection=harness.Selection(limit=3)).source.dataset.digest == first.digest
    rows[1]["question"] += " (edited)"
    write_split(tmp_path / "b")
    assert load_tasks(tmp_path / "b", GENERATIONS, selection=harness.Selection(limit=3)).source.dataset.digest != first.digest


def test_a_run_records_its_generation_settings(tmp_path, sandbox_image):
    """`harness run`'s flow: the settings it generated with, the file it wrote, the dataset it read."""
    from tests.test_pipeline import scripted_outputs

    choice = SandboxChoice(workers=2)
    problems = load_dataset(SAMPLE, selection=harness.Selection(limit=3))
    settings = GenerationSettings("scripted", n=4, max_new_tokens=64, sampling=SamplingSettings(seed=3))
    output = tmp_path / "run"
    run_pipeline(
        problems,
        settings,
        harness.EvaluationSettings(sandbox_id=choice.identity()),
        output,
        ScriptedEngineFactory(scripted_outputs()),
        choice.opener(),
        dataset=problems.dataset,
    )
    metrics = json.loads((output / "metrics.json").read_text())
    provenance = metrics["provenance"]
    assert provenance["command"] == "run" and provenance["model"] == "scripted"
    assert provenance["generation"]["n"] == 4 and provenance["generation"]["seed"] == 3
    assert provenance["generation"]["from"] == "harness run"
    written = output / "generations.json"
    assert provenance["generations"] == {
        "path": str(written.resolve()),
        "digest": sha256(written),
        "tasks": 3,
        "samples_per_task": 4,
    }
    assert provenance["dataset"]["filters"]["limit"] == 3 and provenance["dataset"]["digest"] == sha256(SAMPLE)
    assert metrics["coverage"]["partial"] is False and metrics["coverage"]["evaluated"] == 3
    stats = json.loads((output / "run_stats.json").read_text())
    assert stats["provenance"] == provenance and stats["command"] == "run"

    # `harness evaluate` of the run's generations.json knows the model from the journal beside it.
    evaluate(tmp_path / "again", "--limit", "3", generations=written)
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())["provenance"]
    assert again["model"] == "scripted" and again["generation"]["seed"] == 3
    assert (tmp_path / "again" / "report.md").read_text().startswith("# TACO evaluation: scripted on problems.jsonl (test)\n")


# -- the terminal summary ---------------------------------------------------------------------------------
def test_the_terminal_summary_is_a_pass_at_k_table_then_the_counts(evaluated):
    done, output = evaluated
    metrics = json.loads((output / "metrics.json").read_text())
    lines = done.stdout.splitlines()
    assert "{" not in done.stdout  # no Python dict any more
    assert lines[0].split() == ["pass@k", "tasks", "pass@1"]
    table = [line.rsplit(None, 2) for line in lines[1:5]]
    assert [(name.strip(), int(tasks), share) for name, tasks, share in table] == [
        ("all tasks", 6, f"{100 * metrics['pass@1']:.2f}%"),
        *((level, entry["tasks"], f"{100 * entry['pass@1']:.2f}%") for level, entry in metrics["by_difficulty"].items()),
    ]
    assert [line[:2] for line in lines[2:5]] == ["  "] * 3  # the difficulties, indented under all tasks
    # Too long for one line of 80 columns: the reason goes on the next.
    assert lines[5:7] == ["pass@10, pass@100 not reported:", "  6 tasks have fewer than 10 scored samples (smallest: 4)"]
    # Then the corrected judge beside TACO's, on the tasks it can judge (this sample has no flagged task).
    corrected = metrics["corrected"]
    assert lines[7] == (
        f"corrected judge on 6 tasks: pass@1 {100 * corrected['pass@1']:.2f}% "
        f"(TACO {100 * corrected['taco_on_same_tasks']['pass@1']:.2f}%)"
    )
    jobs = json.loads((output / "run_stats.json").read_text())["evaluation"]["jobs"]
    assert re.fullmatch(
        rf"24 samples, {jobs} distinct programs \(\d+ run, \d+ cached, 0 resumed\) in \d+\.\ds -> {re.escape(str(output))}",
        lines[8],
    ), lines[8]
    assert lines[9] == f"report: {output / 'report.html'} {output / 'report.md'}"
    assert all(len(line) <= 80 for line in lines[:8]) and len(lines[8].split(" -> ")[0]) <= 80
