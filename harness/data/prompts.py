"""The official TACO prompt template and the official end-of-answer truncation (pure).

Both are byte-exact reproductions of what TACO's ``generation.py`` does (see TACO_SEMANTICS §1):
the prompt is ``"\\nQUESTION:\\n" + question (+ starter code, glued on with no separator)`` followed by
the format hint and ``"\\nANSWER:\\n"``; a decoded generation is cut at the earliest of the EOF strings.

For instruct models, which answer in markdown, ``extract_code`` (opt-in, ``--extract-code``) takes the
program from an answer's first fenced code block; nothing here changes the official prompt.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from harness.errors import PromptError

EOF_STRINGS = ("\nQUESTION", "\n---", "\nANSWER", "<|endoftext|>")
_EOF_PATTERN = re.compile("|".join(map(re.escape, EOF_STRINGS)))
# The longest EOF string, in characters: an incremental checker must look back this far minus one.
LONGEST_EOF = max(map(len, EOF_STRINGS))


def build_prompt(row: Mapping[str, Any]) -> str:
    """The official prompt for a TACO row.  Rows that carry no ``question`` but a ready ``prompt`` (the
    official prompt files) are taken as they are."""
    question = row.get("question")
    if question is None:
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            return prompt
        raise PromptError("row has neither 'question' nor 'prompt'")
    if not isinstance(question, str):
        raise PromptError(f"'question' must be a string, got {type(question).__name__}")
    starter_code = row.get("starter_code") or ""
    prompt = "\nQUESTION:\n" + question
    if starter_code:
        prompt += starter_code
    # The official condition: a row is "Call-Based" in the prompt as soon as it has starter code,
    # even when it has no fn_name (and is then executed as standard input).
    if not _has_fn_name(row.get("input_output")) and not starter_code:
        prompt += "\nUse Standard Input format"
    else:
        prompt += "\nUse Call-Based format"
    return prompt + "\nANSWER:\n"


def _has_fn_name(input_output: Any) -> bool:
    # generation.py does json.loads(input_output).get("fn_name") and treats a ValueError as "no fn_name".
    # Rows whose input_output was already decoded (some mirrors) are accepted too.
    if isinstance(input_output, str):
        try:
            input_output = json.loads(input_output)
        except ValueError:
            return False
    return isinstance(input_output, Mapping) and bool(input_output.get("fn_name"))


def eof_position(text: str) -> int | None:
    """Where the earliest EOF string starts, or None."""
    match = _EOF_PATTERN.search(text)
    return None if match is None else match.start()


def truncate_at_eof(text: str) -> str:
    """The official post-processing: keep the text before the earliest EOF string."""
    position = eof_position(text)
    return text if position is None else text[:position]


# A markdown code fence: ``` at the start of a line (after indentation), as instruct models write them.
_FENCE = re.compile(r"^[ \t]*```", re.MULTILINE)
# The first fenced block: the opening fence with its info string (```python), the code, and the closing
# fence (or the end of the text, for an answer cut off inside its block).
_FIRST_BLOCK = re.compile(r"^([ \t]*)```[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.MULTILINE | re.DOTALL)


def has_markdown_fence(text: str) -> bool:
    """Whether *text* contains a markdown code fence, which TACO runs as Python (a compile error)."""
    return _FENCE.search(text) is not None


def extract_code(text: str) -> str:
    """The program in the first fenced code block of *text* (```` ``` ```` or ```` ```python ````), or
    *text* itself when it has no fenced block."""
    match = _FIRST_BLOCK.search(text)
    if match is None:
        return text
    code = match.group(2)
    return textwrap.dedent(code) if match.group(1) else code
