"""The programs TACO actually runs, built from a generation (``synthesize_std_code``/``synthesize_cb_code``).

Ported line by line in behaviour, including the fragile line typing: the exact text matters for
fidelity (for instance a program made only of import lines has no ``code()`` and fails to compile).

Each program is assembled from parts that remember where they came from (the sample, or TACO's own
text: the import header, the stream aliases, ``def code():``, indentation), so a line of the program
that ran can be traced back to the line of the sample as written (``line_map``): a traceback's
"line 20" of a two-line sample is its line 2.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

# TACO's import header, byte for byte.
HEADER = (
    "import sys\nimport time\nimport itertools\nfrom itertools import accumulate, product, permutations, combinations\n"
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\nfrom math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport numpy as np\nimport random\nimport heapq\nfrom heapq import *\n"
)
_STREAM_ALIASES = "\nstdin = sys.stdin\nstdout = sys.stdout\n"

# A part of a program: its text, and the offset in the sample of its first character (None: TACO's text).
_Part: TypeAlias = tuple[str, int | None]


@dataclass(frozen=True)
class StdinPrograms:
    compile_program: str  # TACO's `sol`: imports + `def code():` wrapping, only compiled and exec'd
    exec_program: str  # TACO's `sol2`: what each test runs
    second_program: str  # `sol + "\ncode()\n"`, run when every test ended with returncode 1


class RunProgram(Enum):
    """Which of the programs built from a sample ran (for mapping its line numbers back)."""

    EXEC = "exec"  # TACO's `sol2`: what each stdin test runs
    COMPILE = "compile"  # TACO's `sol`: the compile step of a stdin sample
    SECOND = "second"  # `sol` + `code()`: the second pass of a stdin sample
    CALL = "call"  # the header + the sample: a call-based sample (compile step and calls)


def call_program(raw_code: str) -> str:
    return HEADER + raw_code


def _line_kind(line: str) -> int:
    # 2: contains "import *" anywhere; 1: starts (column 0) with "from " or "import "; 0: anything else.
    if "import *" in line:
        return 2
    if line.startswith("from ") or line.startswith("import "):
        return 1
    return 0


def _stdin_parts(raw_code: str) -> tuple[list[_Part], list[_Part]]:
    """The parts of TACO's compile program and exec program, in order (``stdin_programs`` joins them)."""
    lines = raw_code.split("\n")
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    kinds = [_line_kind(line) for line in lines]
    # TACO: "\n".join(line.lstrip("\t") for each `import *` line), hoisted above `def code():`.
    star_imports: list[_Part] = []
    for line, start, kind in zip(lines, starts, kinds):
        if kind == 2:
            if star_imports:
                star_imports.append(("\n", None))
            stripped = line.lstrip("\t")
            star_imports.append((stripped, start + len(line) - len(stripped)))
    compile_parts: list[_Part] = []
    exec_parts: list[_Part] = []
    started = False
    for line, start, kind in zip(lines, starts, kinds):
        # The newline after a line stands for the sample's own (or, after its last line, for its end).
        text, newline = (line, start), ("\n", start + len(line))
        if kind == 0 and not started:
            exec_parts += [(HEADER, None), (_STREAM_ALIASES, None), text, newline]
            compile_parts += [(HEADER, None), *star_imports, (_STREAM_ALIASES, None), ("def code():\n", None), ("\t", None)]
            compile_parts += [text, newline]
            started = True
        else:
            exec_parts += [text, newline]
            if kind < 2:
                if started:
                    compile_parts.append(("\t", None))
                compile_parts += [text, newline]
    return compile_parts, exec_parts


def _joined(parts: list[_Part]) -> str:
    return "".join(text for text, _ in parts)


def stdin_programs(raw_code: str) -> StdinPrograms:
    compile_parts, exec_parts = _stdin_parts(raw_code)
    compile_program = _joined(compile_parts)
    return StdinPrograms(
        compile_program=compile_program,
        exec_program=_joined(exec_parts),
        second_program=compile_program + "\ncode()\n",
    )


# Where Python starts a new line (the compiler and tracebacks count "\r\n", "\r" and "\n").
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _line_starts(text: str) -> tuple[int, ...]:
    return (0, *(m.end() for m in _LINE_BREAK.finditer(text)))


@dataclass(frozen=True)
class LineMap:
    """Lines of one program that ran -> lines of the sample it was built from (``line_map``)."""

    segments: tuple[tuple[int, int, int], ...]  # (start, end) in the program of a piece of the sample, and its start there
    program_lines: tuple[int, ...]  # where each line of the program starts
    program_length: int
    sample_lines: tuple[int, ...]  # where each line of the sample starts

    def sample_line(self, line: int) -> int | None:
        """The sample's line (1-based) that line *line* (1-based) of the program holds; None for a
        line of TACO's own text (the header, the aliases, ``def code():``, the second pass's call)."""
        if not 1 <= line <= len(self.program_lines):
            return None
        begin = self.program_lines[line - 1]
        end = self.program_lines[line] if line < len(self.program_lines) else self.program_length
        # The first piece of the sample that ends after the line begins.
        index = bisect.bisect_right([seg_end for _, seg_end, _ in self.segments], begin)
        if index == len(self.segments):
            return None
        seg_start, _, sample_start = self.segments[index]
        if seg_start >= end:
            return None
        offset = sample_start + max(begin, seg_start) - seg_start
        return bisect.bisect_right(self.sample_lines, offset)


def _map_of(parts: list[_Part], raw_code: str) -> LineMap:
    segments: list[tuple[int, int, int]] = []
    position = 0
    for text, origin in parts:
        if origin is not None and text:
            segments.append((position, position + len(text), origin))
        position += len(text)
    program = _joined(parts)
    return LineMap(tuple(segments), _line_starts(program), len(program), _line_starts(raw_code))


def line_map(raw_code: str, program: RunProgram) -> LineMap:
    """How the lines of *program*, built from the sample *raw_code*, map to the sample's lines."""
    if program is RunProgram.CALL:
        return _map_of([(HEADER, None), (raw_code, 0)], raw_code)
    compile_parts, exec_parts = _stdin_parts(raw_code)
    if program is RunProgram.EXEC:
        return _map_of(exec_parts, raw_code)
    if program is RunProgram.COMPILE:
        return _map_of(compile_parts, raw_code)
    return _map_of([*compile_parts, ("\ncode()\n", None)], raw_code)


def sample_line(raw_code: str, program: RunProgram, line: int) -> int | None:
    """Line *line* of *program* (built from *raw_code*) as a line of the sample as written; None for
    a line that TACO added."""
    return line_map(raw_code, program).sample_line(line)
