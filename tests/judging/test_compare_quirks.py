"""TACO_SEMANTICS §3.6: the stdin comparison rules and their quirks, one by one, through real
containers (the program prints exactly the output under test) and on the pure function."""

from __future__ import annotations

import pytest

from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob
from harness.judging.compare import compare_stdout

# (what the program prints, expected output, TACO HEAD accepts?)
QUIRKS = [
    ("3\n", "3", True),  # strip equality
    ("  3  \n\n", "\n3", True),
    ("1 2\n3 4\n", "1 2\n3 4", True),
    ("1 2 \n3 4\n", "1 2\n3 4", False),  # interior trailing space counts
    ("a\r\nb\r\n", "a\nb", True),  # text mode turns \r\n into \n
    ("ab\ncd\n", "ab\r\ncd", False),  # the expected text is not normalised
    ("a\nb\n", "a\r\nb", True),  # ...but single-character tokens pass through the set quirk
    ("12", "1\n2", True),  # per-character float quirk
    ("5", "5.0", True),
    ("0.5\n", "0.50000", False),  # no float tolerance
    ("0.5\n", "0.5000001", False),
    ("1\n1\n1\n", "1", True),  # set-of-characters quirk
    ("0 1 0 0\n", "1\n0\n1\n1", True),
    ("12\n", "1 2", True),
    ("21\n", "1 2", True),
    ("1 2\n", "1\n2", True),
    ("ab\n", "a b", True),
    ("a b\n", "b a", False),
    ("NO\n", "YES", False),
    ("YES\n", "yes", False),  # no case folding
    ("5\n", "5.0000", True),  # rounded-number quirk
    ("", "", True),
    ("x\n", "", False),
]


@pytest.mark.parametrize("printed,expected,accepted", QUIRKS)
def test_pure_comparison(printed, expected, accepted):
    assert compare_stdout(printed.replace("\r\n", "\n"), expected) is accepted


@pytest.fixture(scope="module")
def container_verdicts(pool):
    jobs = []
    for printed, expected, _ in QUIRKS:
        suite = parse_input_output({"inputs": [""], "outputs": [expected]})
        code = f"sys.stdout.buffer.write({printed.encode()!r})"
        jobs.append(ExecutionJob(suite, code))
    return pool.map(jobs)


@pytest.mark.parametrize("index", range(len(QUIRKS)))
def test_comparison_in_container(container_verdicts, index):
    printed, expected, accepted = QUIRKS[index]
    assert container_verdicts[index].taco() == [accepted], (printed, expected)
