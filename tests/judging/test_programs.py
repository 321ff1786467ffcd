"""TACO's program synthesis (sol, sol2, the second pass)."""

from __future__ import annotations

from harness.judging.programs import HEADER, stdin_programs


def test_stdin_synthesis_keeps_leading_imports_and_wraps_the_rest():
    code = "import os\nfrom math import *\nx = int(input())\nimport re\nprint(x)"
    programs = stdin_programs(code)
    aliases = "\nstdin = sys.stdin\nstdout = sys.stdout\n"
    # exec program: lines before the first plain line verbatim, the header, then the rest verbatim
    assert (
        programs.exec_program == "import os\nfrom math import *\n" + HEADER + aliases + "x = int(input())\nimport re\nprint(x)\n"
    )
    # compile program: leading type-1 lines, header, hoisted `import *` lines, then the body in code()
    assert programs.compile_program == (
        "import os\n" + HEADER + "from math import *" + aliases + "def code():\n\tx = int(input())\n\timport re\n\tprint(x)\n"
    )
    assert programs.second_program == programs.compile_program + "\ncode()\n"


def test_stdin_synthesis_exec_program_is_code_after_header():
    programs = stdin_programs("x = 1\nprint(x)")
    assert programs.exec_program == HEADER + "\nstdin = sys.stdin\nstdout = sys.stdout\nx = 1\nprint(x)\n"


def test_empty_generation_cannot_compile():
    assert stdin_programs("").compile_program.endswith("def code():\n\t\n")
