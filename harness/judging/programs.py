"""The programs TACO actually runs, built from a generation (``synthesize_std_code``/``synthesize_cb_code``).

Ported line by line in behaviour, including the fragile line typing: the exact text matters for
fidelity (for instance a program made only of import lines has no ``code()`` and fails to compile).
"""

from __future__ import annotations

from dataclasses import dataclass

# TACO's import header, byte for byte.
HEADER = (
    "import sys\nimport time\nimport itertools\nfrom itertools import accumulate, product, permutations, combinations\n"
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\nfrom math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport numpy as np\nimport random\nimport heapq\nfrom heapq import *\n"
)
_STREAM_ALIASES = "\nstdin = sys.stdin\nstdout = sys.stdout\n"


@dataclass(frozen=True)
class StdinPrograms:
    compile_program: str  # TACO's `sol`: imports + `def code():` wrapping, only compiled and exec'd
    exec_program: str  # TACO's `sol2`: what each test runs
    second_program: str  # `sol + "\ncode()\n"`, run when every test ended with returncode 1


def call_program(raw_code: str) -> str:
    return HEADER + raw_code


def _line_kind(line: str) -> int:
    # 2: contains "import *" anywhere; 1: starts (column 0) with "from " or "import "; 0: anything else.
    if "import *" in line:
        return 2
    if line.startswith("from ") or line.startswith("import "):
        return 1
    return 0


def stdin_programs(raw_code: str) -> StdinPrograms:
    lines = raw_code.split("\n")
    kinds = [_line_kind(line) for line in lines]
    star_imports = "\n".join(line.lstrip("\t") for line, kind in zip(lines, kinds) if kind == 2)
    compile_parts: list[str] = []
    exec_parts: list[str] = []
    started = False
    for line, kind in zip(lines, kinds):
        if kind == 0 and not started:
            exec_parts += [HEADER, _STREAM_ALIASES, line, "\n"]
            compile_parts += [HEADER, star_imports, _STREAM_ALIASES, "def code():\n", "\t", line, "\n"]
            started = True
        else:
            exec_parts += [line, "\n"]
            if kind < 2:
                if started:
                    compile_parts.append("\t")
                compile_parts += [line, "\n"]
    compile_program = "".join(compile_parts)
    return StdinPrograms(
        compile_program=compile_program,
        exec_program="".join(exec_parts),
        second_program=compile_program + "\ncode()\n",
    )
