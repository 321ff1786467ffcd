"""Training examples, the in-process tokenizer and the cache key, without training anything."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness.data.problems import Problem, load_problems
from harness.data.prompts import EOF_STRINGS, build_prompt, truncate_at_eof
from harness.errors import DatasetError
from harness.training.corpus import SEPARATOR, Ending, reference_solutions, training_examples
from harness.training.recipe import DEMO_RECIPE, GPU_RECIPE
from harness.training.tokenizer import BYTE_VOCAB_SIZE, byte_level_tokenizer
from harness.training.train import training_key
from tests.training.conftest import SAMPLE


def _problem(task_id: int, solutions, question: str = "Print 1.") -> Problem:
    row = {"question": question, "solutions": solutions, "starter_code": "", "input_output": "{}"}
    return Problem(task_id, None, "EASY", (), row)


def test_examples_use_the_official_prompt_and_alternate_their_endings():
    problems = load_problems(SAMPLE)
    examples = training_examples(problems)
    assert [e.task_id for e in examples] == [p.task_id for p in problems]
    assert [e.prompt for e in examples] == [build_prompt(p.row) for p in problems]
    assert [e.ending for e in examples] == [Ending.EOS, Ending.SEPARATOR] * 3
    for example, problem in zip(examples, problems):
        assert example.solution == json.loads(problem.row["solutions"])[0].rstrip() + "\n"
        # What the generation stage keeps of the completion is the solution (its final newline aside).
        assert truncate_at_eof(example.completion_text).rstrip("\n") == example.solution.rstrip("\n")
    separated = examples[1].completion_text
    assert separated.endswith("\n" + SEPARATOR) and ("\n" + SEPARATOR) in EOF_STRINGS


def test_solutions_are_read_as_strings_or_lists_and_problems_without_one_are_left_out():
    assert reference_solutions({"solutions": '["a", "  ", "b"]'}) == ["a", "b"]
    assert reference_solutions({"solutions": ["x\r\n"]}) == ["x\r\n"]
    assert reference_solutions({"solutions": "not json"}) == [] == reference_solutions({})
    examples = training_examples([_problem(0, "[]"), _problem(1, ["print(1)\r\n\n\n", "print(2)"])], solutions_per_problem=2)
    assert [(e.task_id, e.solution, e.ending) for e in examples] == [
        (1, "print(1)\n", Ending.EOS),
        (1, "print(2)\n", Ending.SEPARATOR),
    ]
    with pytest.raises(DatasetError, match="no problem has a reference solution"):
        training_examples([_problem(0, "[]")])


@pytest.mark.parametrize("vocab_size", [BYTE_VOCAB_SIZE, 400])
def test_the_tokenizer_round_trips_and_tokenizes_a_prompt_as_generation_does(vocab_size):
    texts = [build_prompt(p.row) + json.loads(p.row["solutions"])[0] for p in load_problems(SAMPLE)]
    tokenizer = byte_level_tokenizer(texts, vocab_size)
    assert len(tokenizer) == vocab_size and tokenizer.bos_token_id is None
    unusual = "\nQUESTION:\n1 ≤ N ≤ 10⁵, naïve\t\r\n    x  \nANSWER:\n"
    for text in [*texts, unusual]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode([*ids, tokenizer.eos_token_id], skip_special_tokens=True) == text
    if vocab_size == BYTE_VOCAB_SIZE:
        assert len(tokenizer(unusual)["input_ids"]) == len(unusual.encode())
    else:  # merges were learnt, deterministically
        assert len(tokenizer(texts[0])["input_ids"]) < len(texts[0].encode())
        assert byte_level_tokenizer(texts, vocab_size).get_vocab() == tokenizer.get_vocab()


def test_the_cache_key_covers_the_recipe_and_every_example():
    examples = training_examples(load_problems(SAMPLE))
    key = training_key(examples, DEMO_RECIPE)
    assert key == training_key(list(examples), DEMO_RECIPE)
    assert key != training_key(examples, replace(DEMO_RECIPE, seed=1))
    assert key != training_key(examples, GPU_RECIPE)
    assert key != training_key(examples[:-1], DEMO_RECIPE)
    assert key != training_key([replace(examples[0], solution="print(0)\n"), *examples[1:]], DEMO_RECIPE)
