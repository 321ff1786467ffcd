"""Wrong variants of reference solutions, for tests and benchmarks that need failing samples of
every kind: wrong answers on some tests only, exit status 1 after correct output (TACO's
all-returncode:1 second pass), exit status 1 before any output, and a compile error."""

from __future__ import annotations

from harness.data.testcases import Mode, TestSuite


def _as_main(code: str) -> str:
    return f"exec(compile({code!r}, '<solution>', 'exec'), {{'__name__': '__main__'}})"


def wrong_variants(code: str, suite: TestSuite) -> list[str]:
    if suite.mode is Mode.STDIN:
        return [
            # Wrong on the inputs whose length is divisible by 3, right on the others.
            "import io, sys\n_data = sys.stdin.read()\nif len(_data) % 3 == 0:\n    print(0)\nelse:\n"
            f"    sys.stdin = io.StringIO(_data)\n    {_as_main(code)}\n",
            code + "\nimport sys\nsys.exit(1)\n",
            "import sys\nsys.exit(1)\n" + code,
            code + "\nprint(\n",
        ]
    name = suite.fn_name
    variants = [code + "\nimport sys\nsys.exit(1)\n", code + "\ndef (\n"]
    if f"def {name}(" in code and not code.lstrip().startswith("class"):
        variants.append(
            code + f"\n_right = {name}\ndef {name}(*args):\n    return None if len(repr(args)) % 3 == 0 else _right(*args)\n"
        )
    return variants
