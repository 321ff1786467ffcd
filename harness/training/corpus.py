"""Training examples (pure): a problem's official prompt, as generation builds it, followed by one of
its reference solutions and an end the generation stage recognises.

Half of the examples end with the end-of-sequence token, the other half with the official separator
``\\n---`` (an EOF string, after which the model writes anything until the engine stops it), so a
trained model exercises both ways a sample stops by itself.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.data.problems import Problem
from harness.data.prompts import build_prompt
from harness.errors import DatasetError

# Written after the solution's final newline, it forms the official EOF string "\n---".
SEPARATOR = "---"


class Ending(str, enum.Enum):
    EOS = "eos"  # the tokenizer's end-of-sequence token follows the solution
    SEPARATOR = "separator"  # "---" follows the solution's final newline


@dataclass(frozen=True)
class TrainingExample:
    task_id: int
    prompt: str  # the official prompt, byte for byte what generation feeds
    solution: str  # a reference solution, ending in exactly one newline
    ending: Ending

    @property
    def completion_text(self) -> str:
        """What the model learns to write after the prompt, as text (the EOS token is added by the tokenizer stage)."""
        return self.solution + SEPARATOR if self.ending is Ending.SEPARATOR else self.solution


def reference_solutions(row: Mapping[str, Any]) -> list[str]:
    """The reference solutions of a dataset row (``solutions`` as a JSON string, as on the hub, or a list)."""
    value = row.get("solutions")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return [s for s in value if isinstance(s, str) and s.strip()]


def training_examples(problems: Sequence[Problem], solutions_per_problem: int = 1) -> list[TrainingExample]:
    """One example per (problem, reference solution), up to ``solutions_per_problem`` solutions each, in
    problem order; the ending alternates EOS, separator, EOS, ... over the examples.  Problems without a
    reference solution are left out; none at all is a DatasetError."""
    if solutions_per_problem < 1:
        raise ValueError(f"solutions_per_problem must be >= 1, got {solutions_per_problem}")
    examples: list[TrainingExample] = []
    for problem in problems:
        prompt = build_prompt(problem.row)
        for solution in reference_solutions(problem.row)[:solutions_per_problem]:
            ending = Ending.EOS if len(examples) % 2 == 0 else Ending.SEPARATOR
            examples.append(TrainingExample(problem.task_id, prompt, _one_final_newline(solution), ending))
    if not examples:
        raise DatasetError("no problem has a reference solution ('solutions') to train on")
    return examples


def _one_final_newline(solution: str) -> str:
    # Trailing blank lines and spaces carry nothing; one newline makes the separator an official EOF string.
    return solution.replace("\r\n", "\n").rstrip() + "\n"
