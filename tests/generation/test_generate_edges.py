"""`harness generate` at its edges (issue 17, item 5), through the command line on the CPU with tiny
offline models: paths checked before anything loads, a failed model load that blocks nothing, the
same model by another path, more (or fewer) samples per task reusing the journaled ones, --restart,
no CUDA device, and instruct models (--chat-template, --system-prompt, --extract-code, the warning
about markdown fences)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.prompts import build_prompt
from harness.generation.generate import generate
from harness.generation.plan import GenerationSettings, plan_jobs
from tests.support.fake_engine import ScriptedEngineFactory
from tests.support.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = (
    "{% for message in messages %}<bos>{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "llama")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """The tiny llama (its tokenizer adds BOS) with a chat template whose text holds <bos> itself."""
    from transformers import AutoTokenizer

    directory = build_tiny_model(tmp_path_factory.mktemp("chat") / "model", "llama")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def dataset(tmp_path) -> Path:
    rows = [
        {"question": "Print the sum of two integers.", "input_output": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})},
        {"question": "Print hello.", "input_output": json.dumps({"inputs": [""], "outputs": ["hello\n"]})},
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def journal_directory(output: Path) -> Path:
    return output.with_name(output.name + ".journal")


def generate_cli(model: Path | str, dataset: Path, output: Path | str, *extra: str):
    args = ["generate", "--model", str(model), "--dataset", str(dataset), "--output", str(output)]
    return CliRunner().invoke(main, [*args, "--max-new-tokens", "6", "--dtype", "float32", "--gpus", "cpu", *extra])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("harness: error:")]


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result.output)
    assert "Traceback" not in result.output
    return line


# -- paths, before anything is loaded ---------------------------------------------------------------
def test_an_existing_directory_as_output_fails_before_the_model_is_looked_at(tmp_path, dataset):
    target = tmp_path / "out"
    target.mkdir()
    # The model does not exist: the output is what the one line is about, so it was checked first.
    line = one_error(generate_cli("./no-such-model", dataset, target))
    assert line == f"harness: error: --output must be a file (the generations.json to write): {target} is a directory"
    assert list(target.iterdir()) == [] and not journal_directory(target).exists()


def test_an_output_that_cannot_be_created_is_one_line(tmp_path, dataset, tiny_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_error(generate_cli(tiny_model, dataset, blocker / "sub" / "g.json"))
    assert line == f"harness: error: --output: cannot create {blocker / 'sub'}: {blocker} is a file"


def test_the_library_refuses_a_directory_before_generating(tmp_path):
    from harness.errors import GenerationError

    with pytest.raises(GenerationError, match="is a directory"):
        generate([(0, "p")], GenerationSettings("m", 1, 4), tmp_path, ScriptedEngineFactory(((0, ("x",)),)))


# -- the journal's settings -------------------------------------------------------------------------
def test_a_failed_model_load_leaves_nothing_that_refuses_the_corrected_command(tmp_path, dataset, tiny_model):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # passes the path check, fails to load
    output = tmp_path / "g.json"
    result = generate_cli(broken, dataset, output)
    assert result.exit_code == 1 and "cannot load model" in one_error(result)
    assert not (journal_directory(output) / "settings.json").exists()
    fixed = generate_cli(tiny_model, dataset, output, "--n", "2")
    assert fixed.exit_code == 0, fixed.output
    assert "(0 resumed, 4 generated" in fixed.output


def test_the_same_model_by_another_path_resumes(tmp_path, dataset, tiny_model, monkeypatch):
    output = tmp_path / "g.json"
    link = tmp_path / "model-link"
    link.symlink_to(tiny_model, target_is_directory=True)
    monkeypatch.chdir(tiny_model.parent)
    first = generate_cli(Path(tiny_model.name), dataset, output, "--n", "2")  # relative
    assert first.exit_code == 0 and "(0 resumed, 4 generated" in first.output, first.output
    for other in (f"{tiny_model}/", str(link), f"./{tiny_model.name}"):
        again = generate_cli(other, dataset, output, "--n", "2")
        assert again.exit_code == 0 and "(4 resumed, 0 generated" in again.output, (other, again.output)


def test_more_samples_extend_the_journal_and_fewer_take_the_first(tmp_path, dataset, tiny_model):
    output = tmp_path / "g.json"
    common = ("--temperature", "0.9", "--seed", "3")
    assert generate_cli(tiny_model, dataset, output, "--n", "2", *common).exit_code == 0
    two = json.loads(output.read_text())
    more = generate_cli(tiny_model, dataset, output, "--n", "4", *common)
    assert more.exit_code == 0 and "2 tasks x 4 samples (4 resumed, 4 generated" in more.output, more.output
    four = json.loads(output.read_text())
    assert [entry["output"][:2] for entry in four] == [entry["output"] for entry in two]
    assert all(len(entry["output"]) == 4 for entry in four)
    # The same four samples as a run that asked for four at once (seeds are per task and index).
    fresh = tmp_path / "fresh.json"
    assert generate_cli(tiny_model, dataset, fresh, "--n", "4", *common).exit_code == 0
    assert json.loads(fresh.read_text()) == four
    fewer = generate_cli(tiny_model, dataset, output, "--n", "1", *common)
    assert fewer.exit_code == 0 and "(2 resumed, 0 generated" in fewer.output, fewer.output
    assert [entry["output"] for entry in json.loads(output.read_text())] == [entry["output"][:1] for entry in four]
    # Other settings are still refused, and --restart discards the journal.
    hotter = generate_cli(tiny_model, dataset, output, "--n", "1", "--temperature", "0.5", "--seed", "3")
    assert "temperature: 0.9 there, 0.5 now" in one_error(hotter) and "--restart" in one_error(hotter)
    restarted = generate_cli(tiny_model, dataset, output, "--n", "1", "--temperature", "0.5", "--seed", "3", "--restart")
    assert restarted.exit_code == 0 and "(0 resumed, 2 generated" in restarted.output, restarted.output


def test_without_cuda_the_default_gpus_is_refused_with_a_hint(tmp_path, dataset, tiny_model):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    args = ["generate", "--model", str(tiny_model), "--dataset", str(dataset), "--output", str(tmp_path / "g.json")]
    line = one_error(CliRunner().invoke(main, args))
    assert "no CUDA device" in line and "pass --gpus cpu" in line
    assert not journal_directory(tmp_path / "g.json").exists()
    # --gpus cpu in bfloat16 works, and says that it is on the CPU in bfloat16.
    result = CliRunner().invoke(main, [*args, "--gpus", "cpu", "--n", "1", "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert "harness: generating on the CPU in bfloat16" in result.output


# -- instruct models --------------------------------------------------------------------------------
def test_chat_template_wraps_the_official_prompt_and_is_a_setting(tmp_path, dataset, chat_model):
    from transformers import AutoTokenizer

    from harness.generation.engine import prompt_token_ids
    from harness.generation.generate import chat_prompts

    output = tmp_path / "g.json"
    result = generate_cli(chat_model, dataset, output, "--n", "1", "--chat-template", "--system-prompt", "Write Python.")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    document = json.loads(output.read_text())
    expected = [f"<bos>system: Write Python.\n<bos>user: {build_prompt(row)}\nassistant:" for row in rows]
    assert [entry["prompt"] for entry in document] == expected
    settings = json.loads((journal_directory(output) / "settings.json").read_text())
    assert (settings["chat_template"], settings["system_prompt"], settings["extract_code"]) == (True, "Write Python.", False)
    # A resume with another system prompt, or without the template, is refused.
    other = generate_cli(chat_model, dataset, output, "--n", "1", "--chat-template", "--system-prompt", "Be brief.")
    assert "system_prompt: 'Write Python.' there, 'Be brief.' now" in one_error(other)
    plain = generate_cli(chat_model, dataset, output, "--n", "1")
    assert "chat_template: True there, False now" in one_error(plain)
    # The templated text carries its BOS: tokenized without another one in front.
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    settings_object = GenerationSettings(str(chat_model), 1, 4, chat_template=True)
    jobs = plan_jobs(chat_prompts([(0, "hi")], settings_object), settings_object)
    ids = prompt_token_ids(tokenizer, jobs)[0]
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id
    # Without the options the prompt is the official one, byte for byte.
    official = tmp_path / "official.json"
    assert generate_cli(chat_model, dataset, official, "--n", "1").exit_code == 0
    assert [entry["prompt"] for entry in json.loads(official.read_text())] == [build_prompt(row) for row in rows]


def test_chat_template_needs_a_tokenizer_that_has_one(tmp_path, dataset, tiny_model):
    line = one_error(generate_cli(tiny_model, dataset, tmp_path / "g.json", "--chat-template"))
    assert "has no chat template" in line
    assert "--system-prompt needs --chat-template" in one_error(
        generate_cli(tiny_model, dataset, tmp_path / "g.json", "--system-prompt", "x")
    )


MARKDOWN = "Here is a solution:\n```python\nprint(sum(map(int, input().split())))\n```\nIt reads two numbers."


def test_extract_code_takes_the_first_fenced_block_and_fences_are_warned_about(tmp_path):
    from harness.data.prompts import extract_code

    prompts = [(0, "p0"), (1, "p1")]
    outputs = ((0, (MARKDOWN, "print(1)\n")), (1, ("```\nprint(2)\n```", "```py\nx = 1\n```\n```\nignored\n```")))
    said: list[str] = []
    plain = tmp_path / "plain.json"
    generate(prompts, GenerationSettings("m", 2, 8), plain, ScriptedEngineFactory(outputs), say=said.append)
    warnings = [line for line in said if "markdown code fences" in line]
    assert warnings == [
        "warning: 3 of 4 samples contain markdown code fences (```), which TACO scores as compile errors; "
        "--extract-code takes the program from each output's first fenced block"
    ]
    assert json.loads(plain.read_text())[0]["output"][0] == MARKDOWN
    said.clear()
    extracted = tmp_path / "extracted.json"
    settings = GenerationSettings("m", 2, 8, extract_code=True)
    generate(prompts, settings, extracted, ScriptedEngineFactory(outputs), say=said.append)
    assert [entry["output"] for entry in json.loads(extracted.read_text())] == [
        ["print(sum(map(int, input().split())))\n", "print(1)\n"],
        ["print(2)\n", "x = 1\n"],
    ]
    assert not [line for line in said if "fences" in line]
    assert extract_code("no fence here\n") == "no fence here\n"
    assert extract_code("```python\nprint(3)") == "print(3)"  # cut off inside its block


def test_extract_code_is_a_setting_of_the_journal(tmp_path, dataset, tiny_model):
    output = tmp_path / "g.json"
    assert generate_cli(tiny_model, dataset, output, "--n", "1", "--extract-code").exit_code == 0
    assert json.loads((journal_directory(output) / "settings.json").read_text())["extract_code"] is True
    assert "extract_code: True there, False now" in one_error(generate_cli(tiny_model, dataset, output, "--n", "1"))


# -- progress on a pipe -----------------------------------------------------------------------------
def test_progress_on_a_pipe_has_no_cursor_codes(tmp_path, dataset, tiny_model):
    command = ["generate", "--model", str(tiny_model), "--dataset", str(dataset), "--output", str(tmp_path / "g.json")]
    done = subprocess.run(
        [sys.executable, "-m", "harness", *command, "--n", "2", "--max-new-tokens", "4", "--dtype", "float32", "--gpus", "cpu"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr and "\x1b" not in done.stderr, repr(done.stderr[-500:])
    assert "generate: 4/4 samples (100%)" in done.stderr


@pytest.mark.parametrize(("option", "value"), [("--quantize", "fp8"), ("--kv-cache", "fp8")])
def test_fp8_on_a_cpu_is_one_line_and_nothing_is_generated(tmp_path, dataset, tiny_model, option, value):
    output = tmp_path / "g.json"
    line = one_error(generate_cli(tiny_model, dataset, output, option, value))
    assert f"{option} fp8 needs a CUDA GPU of compute capability 8.9 or newer" in line
    assert not output.exists()
