"""The verified truth tables of the official harness (TACO_SEMANTICS §3.9): programs and the
verdicts TACO HEAD gives them, shared by every test that runs them through a sandbox."""

from __future__ import annotations

from harness.data.testcases import parse_input_output

STDIN_SUITE = parse_input_output({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
CALL_SUITE = parse_input_output({"inputs": [[1, 2], [3, 4]], "outputs": [[3], [7]], "fn_name": "add"})
READ = "a, b = map(int, input().split())\n"

STDIN_CASES = {
    "correct": (READ + "print(a + b)", [True, True]),
    "wrong arithmetic": (READ + "print(a - b)", [False, False]),
    "syntax error": ("print(", [-2]),
    "empty": ("", [-2]),
    "raises on test 2 only": (READ + "if a == 3:\n    raise ValueError\nprint(a + b)", [True, -3]),
    "raises on every test": (READ + "raise ValueError", [-3, -3]),
    "top-level return": (READ + "print(a + b)\nreturn", [True, True]),
    "os.read fast io": ("import os\nd = os.read(0, os.fstat(0).st_size).split()\nprint(int(d[0]) + int(d[1]))", [True, True]),
    "file io": ("a, b = map(int, open('input.txt').read().split())\nopen('output.txt', 'w').write(str(a + b))", [True, True]),
    "sys.exit(0) after print": (READ + "print(a + b)\nsys.exit(0)", [True, True]),
    "sys.exit(3) after print": (READ + "print(a + b)\nsys.exit(3)", [-3, -3]),
    "only defines a function": ("def f():\n    return 1", [False, False]),
    "infinite loop": ("while True:\n    pass", [-1, -1]),
    # Sleeping 3.5 s against TACO's 4 s per test (7 s in all: the limit is per test, in wall time).  The
    # 0.5 s of slack is safe on a busy machine: a sleeping program needs little CPU and is scheduled at
    # once when it wakes.  In Docker on a 2-core machine it ended at most 24 ms after its sleep with four
    # busy loops running (24 runs), 40 ms with two busy loops and other test suites at load average
    # 10-50 (50 runs).
    "sleep 3.5s": ("import time\ntime.sleep(3.5)\n" + READ + "print(a + b)", [True, True]),
    "only import lines": ("import sys\nimport os", [-2]),
    "failing import": ("import no_such_module_xyz\n" + READ + "print(a + b)", [-2]),
    "future import after blank line": ("\nfrom __future__ import annotations\n" + READ + "print(a + b)", [-2]),
    "python 2": ("print 'hi'", [-2]),
    "uses header names unimported": (READ + "print(int(np.int64(a) + gcd(b, b)))", [True, True]),
    "prints right answer then crashes": (READ + "print(a + b)\nraise ValueError", [-3, -3]),
    "invalid utf-8 on stdout": (READ + "sys.stdout.flush()\nsys.stdout.buffer.write(b'\\xff')", [-3, -3]),
    "invalid utf-8 on stderr only": (READ + "print(a + b)\nsys.stderr.buffer.write(b'\\xff')", [-3, -3]),
    "KeyboardInterrupt": (READ + "raise KeyboardInterrupt", [-3, -3]),
    "closes stdout then exits 0": (READ + "print(a + b)\nsys.stdout.close()", [True, True]),
}

CALL_CASES = {
    "correct": ("def add(a, b):\n    return a + b", [True, True]),
    "class Solution": ("class Solution:\n    def add(self, a, b):\n        return a + b", [True, True]),
    "wrong": ("def add(a, b):\n    return a - b", [False, False]),
    "raises": ("def add(a, b):\n    raise ValueError", [-3, -3]),
    "infinite loop": ("def add(a, b):\n    while True:\n        pass", [-3, -3]),
    "returns a 1-tuple": ("def add(a, b):\n    return (a + b,)", [True, True]),
    "float off by 1e-12": ("def add(a, b):\n    return a + b + 1e-12", [False, False]),
    "wrong function name": ("def plus(a, b):\n    return a + b", [-2]),
    "sys.exit": ("def add(a, b):\n    sys.exit()", [-1, -1]),
    "top-level input()": ("x = input()\ndef add(a, b):\n    return a + b", [-2]),
    "top-level SystemExit": ("sys.exit(0)\ndef add(a, b):\n    return a + b", [-1, -1]),
    "exit() is disabled by the guard": ("def add(a, b):\n    exit()", [-3, -3]),
    "state persists across tests": (
        "calls = []\ndef add(a, b):\n    calls.append(1)\n    return a + b if len(calls) == 1 else 0",
        [True, False],
    ),
    "numpy array result": ("def add(a, b):\n    return np.array([a + b, 0])", [-1, -1]),
    "numpy scalar result": ("def add(a, b):\n    return np.int64(a + b)", [True, True]),
    "returns a generator": ("def add(a, b):\n    return (x for x in [a + b])", [False, False]),
    "returns itself recursively": ("def add(a, b):\n    x = []\n    x.append(x)\n    return x", [-1, -1]),
    "True == 1": ("def add(a, b):\n    return True if a == 1 else 7", [False, True]),
    "class Solution mentioned only in a comment": ("# class Solution\ndef add(a, b):\n    return a + b", [-2]),
}
