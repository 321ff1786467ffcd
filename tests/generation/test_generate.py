"""``harness generate`` as a whole: the official output format, the journal and resume, settings
checks, one worker process per device with results merged in task order, and the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.prompts import build_prompt
from harness.errors import GenerationError
from harness.generation.factory import ModelEngineFactory
from harness.generation.generate import generate
from harness.generation.journal import SampleJournal
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.generation.workers import DeviceWorkers
from tests.conftest import shared_file
from tests.support.fake_engine import EngineCrashed, FakeEngineFactory, expected_document
from tests.support.tiny_model import build_tiny_model

PROMPTS = [(4, "\nQUESTION:\nfour\nANSWER:\n"), (1, "\nQUESTION:\none\nANSWER:\n"), (9, "nine " * 30), (2, "two")]
SETTINGS = GenerationSettings("fake-model", n=3, max_new_tokens=32)


def _expected_document(prompts=PROMPTS, settings=SETTINGS):
    return expected_document(prompts, settings)


def test_output_is_the_official_format_in_task_order(tmp_path):
    output = tmp_path / "generations.json"
    summary = generate(PROMPTS, SETTINGS, output, FakeEngineFactory())
    document = json.loads(output.read_text())
    assert document == _expected_document()
    assert [list(entry) for entry in document] == [["task_id", "prompt", "output"]] * 4
    assert all("QUESTION" not in o for entry in document for o in entry["output"])  # cut at the EOF string
    assert (summary.tasks, summary.samples, summary.generated, summary.resumed) == (4, 12, 12, 0)
    assert summary.finish_reasons == {"stop": 12}


def test_resume_after_a_crash_and_a_torn_journal_line(tmp_path):
    output = tmp_path / "generations.json"
    with pytest.raises(EngineCrashed):
        generate(PROMPTS, SETTINGS, output, FakeEngineFactory(crash_after=5))
    assert not output.exists()
    part = SampleJournal(output.with_name("generations.json.journal")).part(0).path
    assert len(part.read_text().splitlines()) == 5
    with part.open("a") as handle:
        handle.write('{"task_id": 1, "index": 2, "se')  # killed mid-write
    counted = []

    class Count:
        def begin(self, samples):
            counted.append(samples)

        def sample(self, n_tokens):
            pass

    summary = generate(PROMPTS, SETTINGS, output, FakeEngineFactory(), progress=Count())
    assert (summary.resumed, summary.generated) == (5, 7) and counted == [7]
    assert json.loads(output.read_text()) == _expected_document()
    # Everything is journaled now: a third run generates nothing and writes the same file.
    assert generate(PROMPTS, SETTINGS, output, FakeEngineFactory(crash_after=0)).generated == 0
    assert json.loads(output.read_text()) == _expected_document()


def test_resume_refuses_other_settings_or_changed_prompts(tmp_path):
    output = tmp_path / "generations.json"
    generate(PROMPTS, SETTINGS, output, FakeEngineFactory())
    hotter = GenerationSettings("fake-model", n=3, max_new_tokens=32, sampling=SamplingSettings(temperature=0.8))
    with pytest.raises(GenerationError, match=re.escape("temperature: 0.2 there, 0.8 now")):
        generate(PROMPTS, hotter, output, FakeEngineFactory())
    changed = [(4, "a different prompt"), *PROMPTS[1:]]
    with pytest.raises(GenerationError, match="tasks 4 were generated from other prompts"):
        generate(changed, SETTINGS, output, FakeEngineFactory())


def test_more_samples_per_task_extend_the_journaled_ones(tmp_path):
    # n is not a setting that must match: samples are (task_id, index) with seeds of their own, so a
    # larger n keeps the journaled samples and generates only the new indices.
    output = tmp_path / "generations.json"
    generate(PROMPTS, SETTINGS, output, FakeEngineFactory())
    more = GenerationSettings("fake-model", n=5, max_new_tokens=32)
    summary = generate(PROMPTS, more, output, FakeEngineFactory())
    assert (summary.resumed, summary.generated) == (12, 8)
    assert json.loads(output.read_text()) == _expected_document(settings=more)


def test_two_worker_processes_merge_in_task_order(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    output = tmp_path / "generations.json"
    factory = FakeEngineFactory(record_pids_in=str(pids))
    summary = generate(PROMPTS, SETTINGS, output, factory, devices=("cpu", "cpu"), device_workers=DeviceWorkers.PROCESSES)
    # Spawned workers (not this process); the instant fake engine may finish everything before the
    # second has started (tests/generation/test_shared_queue.py shows the work spread between them).
    workers = sorted(os.listdir(pids))
    assert workers and all(not name.startswith(f"{os.getpid()}-") for name in workers)
    assert json.loads(output.read_text()) == _expected_document()
    # The driver journals every sample once, whichever worker generated it.
    records = list(SampleJournal(output.with_name("generations.json.journal")).part(0).records())
    assert sorted((r["task_id"], r["index"]) for r in records) == sorted((t, i) for t, _ in PROMPTS for i in range(3))
    assert summary.generated == 12 and sum(summary.samples_by_worker.values()) == 12


@pytest.mark.parametrize("mode", list(DeviceWorkers))
def test_a_failing_worker_fails_the_run_with_its_reason(tmp_path, mode):
    with pytest.raises(GenerationError, match="EngineCrashed: crashed after 1 samples"):
        generate(
            PROMPTS, SETTINGS, tmp_path / "g.json", FakeEngineFactory(crash_after=1), devices=("cpu", "cpu"), device_workers=mode
        )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "llama")


def test_real_engine_two_processes_equal_one(tiny_model_dir, tmp_path):
    settings = GenerationSettings(
        str(tiny_model_dir), n=3, max_new_tokens=24, sampling=SamplingSettings(0.7, 20, 0.95, seed=5), dtype="float32"
    )
    factory = ModelEngineFactory(settings, "fast", batch_size=4, chunk_steps=4)
    one = generate(PROMPTS, settings, tmp_path / "one.json", factory)
    two = generate(
        PROMPTS, settings, tmp_path / "two.json", factory, devices=("cpu", "cpu"), device_workers=DeviceWorkers.PROCESSES
    )
    assert (tmp_path / "one.json").read_text() == (tmp_path / "two.json").read_text()
    assert one.generated == two.generated == 12 and one.new_tokens == two.new_tokens


def _dataset(tmp_path: Path) -> Path:
    rows = [
        {
            "question": "Print the sum of two integers.",
            "starter_code": "",
            "input_output": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]}),
        },
        {
            "question": "Return n doubled.",
            "starter_code": "def double(n):\n\t",
            "input_output": json.dumps({"fn_name": "double", "inputs": [[1]], "outputs": [[2]]}),
        },
        {"question": "No tests here.", "starter_code": ""},
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_cli_generates_official_generations_json(tiny_model_dir, tmp_path):
    dataset = _dataset(tmp_path)
    output = tmp_path / "out" / "generations.json"
    args = [
        "generate",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(dataset),
        "--n",
        "2",
        "--max-new-tokens",
        "16",
        "--dtype",
        "float32",
        "--gpus",
        "cpu",
        "--output",
        str(output),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    assert [entry["task_id"] for entry in document] == [0, 1, 2]
    assert [entry["prompt"] for entry in document] == [build_prompt(row) for row in rows]
    assert all(len(entry["output"]) == 2 and all(isinstance(o, str) for o in entry["output"]) for entry in document)
    assert "3 tasks x 2 samples (0 resumed, 6 generated" in result.output
    again = CliRunner().invoke(main, [*args, "--engine", "hf"])  # same settings: everything resumed
    assert again.exit_code == 0 and "(6 resumed, 0 generated" in again.output
    assert json.loads(output.read_text()) == document


def test_cli_with_official_prompts_file_and_filters(tiny_model_dir, tmp_path):
    prompts_file = shared_file("taco_test_official_prompts_no_tests.jsonl")
    official = {row["task_id"]: row["prompt"] for row in map(json.loads, prompts_file.read_text().splitlines())}
    output = tmp_path / "g.json"
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            str(tiny_model_dir),
            "--dataset",
            str(prompts_file),
            "--indices",
            "7,3,500-501",
            "--n",
            "1",
            "--max-new-tokens",
            "4",
            "--dtype",
            "float32",
            "--gpus",
            "cpu",
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert [entry["task_id"] for entry in document] == [3, 7, 500, 501]  # dataset order
    assert all(entry["prompt"] == official[entry["task_id"]] for entry in document)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "/nonexistent/model"], "model not found"),
        (["--dataset", "/nonexistent/data.jsonl"], "dataset not found"),
        (["--batch-size", "many"], "--batch-size"),
        (["--gpus", "3"], "--gpus 3"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(tiny_model_dir, tmp_path, extra, message):
    args = {
        "--model": str(tiny_model_dir),
        "--dataset": str(_dataset(tmp_path)),
        "--output": str(tmp_path / "g.json"),
        "--gpus": "cpu",
    }
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    result = CliRunner().invoke(main, ["generate", *[x for pair in args.items() for x in pair]])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_cli_refuses_a_directory_that_is_no_model(tmp_path):
    result = CliRunner().invoke(
        main, ["generate", "--model", str(tmp_path), "--dataset", str(_dataset(tmp_path)), "--output", str(tmp_path / "g.json")]
    )
    assert result.exit_code == 1 and "no config.json" in result.output
