"""The official prompt template, byte for byte, and the official EOF truncation."""

from __future__ import annotations

import json

import pytest

from harness.data.prompts import (
    EOF_STRINGS,
    build_prompt,
    eof_position,
    truncate_at_eof,
)
from harness.errors import PromptError
from tests.conftest import shared_file


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_template_matches_every_official_prompt_with_raw_fields():
    official = {row["task_id"]: row["prompt"] for row in _jsonl(shared_file("taco_test_official_prompts_no_tests.jsonl"))}
    rows = _jsonl(shared_file("taco_test_examples.jsonl"))
    assert len(rows) == 495
    mismatched = [row["_task_id"] for row in rows if build_prompt(row) != official[row["_task_id"]]]
    assert mismatched == []


def test_official_prompt_rows_are_used_verbatim():
    rows = _jsonl(shared_file("taco_test_official_prompts_no_tests.jsonl"))
    assert all(build_prompt(row) == row["prompt"] for row in rows)


def test_starter_code_is_glued_on_and_makes_the_prompt_call_based():
    # The example of the official repository's taco_generation_example.json, rebuilt from fields.
    row = {
        "question": "...feedback...:)",
        "starter_code": "def converter(n, decimals=0, base=pi):\n\t",
        "input_output": json.dumps({"fn_name": "converter", "inputs": [], "outputs": []}),
    }
    assert (
        build_prompt(row)
        == "\nQUESTION:\n...feedback...:)def converter(n, decimals=0, base=pi):\n\t\nUse Call-Based format\nANSWER:\n"
    )
    # Starter code without fn_name is still prompted as call-based (executed as stdin, though).
    assert build_prompt({**row, "input_output": '{"inputs": [], "outputs": []}'}).endswith("\nUse Call-Based format\nANSWER:\n")


def test_format_hint_follows_fn_name_in_any_encoding():
    stdin = {"question": "Q", "starter_code": "", "input_output": '{"inputs": ["1"], "outputs": ["1"]}'}
    assert build_prompt(stdin) == "\nQUESTION:\nQ\nUse Standard Input format\nANSWER:\n"
    call = {"question": "Q", "starter_code": None, "input_output": {"fn_name": "f", "inputs": [], "outputs": []}}
    assert build_prompt(call) == "\nQUESTION:\nQ\nUse Call-Based format\nANSWER:\n"
    # generation.py treats an unparsable input_output as "no fn_name", and so do we.
    broken = {"question": "Q", "starter_code": "", "input_output": "{not json"}
    assert build_prompt(broken).endswith("\nUse Standard Input format\nANSWER:\n")
    assert build_prompt({**broken, "input_output": '{"fn_name": ""}'}).endswith("\nUse Standard Input format\nANSWER:\n")


def test_raw_train_rows_with_decoded_fields():
    rows = _jsonl(shared_file("taco_train_sample_original_fields.jsonl"))
    for row in rows:
        prompt = build_prompt(row)
        assert prompt.startswith("\nQUESTION:\n" + row["question"])
        call_based = bool(row["input_output"].get("fn_name")) or bool(row["starter_code"])
        assert prompt.endswith(("\nUse Call-Based format" if call_based else "\nUse Standard Input format") + "\nANSWER:\n")


def test_rows_without_question_or_prompt_are_refused():
    with pytest.raises(PromptError):
        build_prompt({"input_output": "{}"})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("print(1)\n", "print(1)\n"),
        ("a = 1\nQUESTION:\nmore", "a = 1"),
        ("x\n---\ny\nANSWER:\n", "x"),
        ("x<|endoftext|>y\nQUESTION", "x"),
        ("ANSWER = 3\nprint(ANSWER)", "ANSWER = 3\nprint(ANSWER)"),  # only at a line start
        ("x = 0\nANSWER = 3", "x = 0"),  # the official quirk: a line starting with ANSWER ends the program
        ("\n---", ""),
    ],
)
def test_truncation_cuts_at_the_earliest_eof_string(text, expected):
    assert truncate_at_eof(text) == expected


def test_eof_position_finds_each_string():
    for eof in EOF_STRINGS:
        assert eof_position("abc" + eof + "def") == 3
    assert eof_position("no end here") is None
