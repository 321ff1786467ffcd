"""Pure pieces: program synthesis, the value codec, pass@k, and the job message."""

from __future__ import annotations

import math
from pathlib import Path
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from harness.execution import ExecutionJob, job_message
from harness.passk import pass_at_k, pass_at_k_table, reported_ks
from harness.programs import HEADER, stdin_programs
from harness.testcases import Mode, allow_long_int_strings, parse_input_output
from sandbox_image import valuecodec


def test_stdin_synthesis_keeps_leading_imports_and_wraps_the_rest():
    code = "import os\nfrom math import *\nx = int(input())\nimport re\nprint(x)"
    programs = stdin_programs(code)
    aliases = "\nstdin = sys.stdin\nstdout = sys.stdout\n"
    # exec program: lines before the first plain line verbatim, the header, then the rest verbatim
    assert programs.exec_program == "import os\nfrom math import *\n" + HEADER + aliases + "x = int(input())\nimport re\nprint(x)\n"
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


def test_int_keys_restored():
    suite = parse_input_output('{"fn_name": "f", "inputs": [[{"1": 2}]], "outputs": [{"3": 4}]}')
    assert suite.mode is Mode.CALL
    assert suite.cases[0].input == [{1: 2}] and suite.cases[0].output == [{3: 4}]


@pytest.fixture(autouse=True)
def _no_digit_limit():
    allow_long_int_strings()


@pytest.mark.parametrize(
    "value",
    [None, True, 1, -5, 10**5000, 1.5, math.inf, "x\ud800", [1, (2, 3)], (1,), {1: [2]}, {"a"}, frozenset([1]),
     b"\x00\xff", 1 + 2j, Fraction(1, 3), Decimal("1.10")],
    ids=lambda v: type(v).__name__,
)
def test_codec_round_trip_keeps_type_and_value(value):
    back = valuecodec.loads(valuecodec.dumps(value))
    assert type(back) is type(value) and (back == value or value != value)


def test_codec_numpy_and_opaque():
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    back = valuecodec.loads(valuecodec.dumps(array))
    assert back.dtype == np.int32 and back.shape == (2, 3) and (back == array).all()
    assert type(valuecodec.loads(valuecodec.dumps(np.float64(2.5)))) is np.float64
    opaque = valuecodec.loads(valuecodec.dumps(iter([1])))
    assert opaque != opaque and not (opaque == [1])
    with pytest.raises(TypeError):
        opaque[0]
    loop = []
    loop.append(loop)
    with pytest.raises(valuecodec.EncodeError):
        valuecodec.dumps(loop)


def test_pass_at_k_matches_the_definition():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - math.comb(4, 2) / math.comb(5, 2))
    assert reported_ks([20, 20, 5]) == [1] and reported_ks([100, 200]) == [1, 10, 100]
    table = pass_at_k_table({0: (2, 1), 1: (2, 2)})
    assert table["pass@1"] == pytest.approx(0.75) and table["detail"]["pass@1"] == {0: 0.5, 1: 1.0}


def test_expected_outputs_never_enter_the_sandbox():
    secret_stdin = "EXPECTED-OUTPUT-4242"
    suite = parse_input_output({"inputs": ["1\n"], "outputs": [secret_stdin]})
    assert secret_stdin not in repr(job_message(ExecutionJob(suite, "print(1)"), 1))
    suite = parse_input_output({"fn_name": "f", "inputs": [[1]], "outputs": [["SECRET-RETURN-9191"]]})
    assert "SECRET-RETURN-9191" not in repr(job_message(ExecutionJob(suite, "def f(x): return x"), 1))


def test_journal_survives_a_torn_last_line(tmp_path):
    from harness.journal import Journal
    from harness.verdicts import SampleResult, SampleStatus, Verdict

    passed = SampleResult(SampleStatus.JUDGED, (Verdict.PASSED, Verdict.PASSED))
    failed = SampleResult(SampleStatus.JUDGED, (Verdict.TIMEOUT,), stopped_early=True, detail="slow")
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append("a", passed)
        journal.append("b", failed)
    path.write_bytes(path.read_bytes() + b'{"key": "c", "result": {"status": "jud')  # killed mid-write
    assert Journal(path).load() == {"a": passed, "b": failed}
    with Journal(path) as journal:
        journal.append("d", passed)
    assert Journal(path).load() == {"a": passed, "b": failed, "d": passed}


def test_verdict_cache_keeps_judged_results_only(tmp_path):
    from harness.verdict_cache import VerdictCache
    from harness.verdicts import SampleResult, SampleStatus, Verdict

    judged = SampleResult(SampleStatus.JUDGED, (Verdict.COMPILE_ERROR,), detail="SyntaxError")
    infra = SampleResult(SampleStatus.INFRA_ERROR, (), detail="container died")
    with VerdictCache(tmp_path) as cache:
        cache.put("k1", judged)
        cache.put("k2", infra)
    with VerdictCache(tmp_path) as cache:  # persisted across instances
        assert cache.get_many(["k1", "k2", "k3"]) == {"k1": judged}


def test_job_keys_dedup_and_separate_what_decides_verdicts():
    from harness.evaluate import EvaluationSettings, plan_jobs
    from harness.execution import RunLimits
    from harness.generations import TaskSamples
    from harness.problems import load_problems

    problems = load_problems(Path(__file__).resolve().parents[1] / "samples" / "problems.jsonl")
    tasks = [TaskSamples(problems[0], ("a", "b", "a")), TaskSamples(problems[1], ("a",))]
    plan = plan_jobs(tasks, EvaluationSettings())
    assert sorted(p.owners for p in plan) == sorted([((0, 0), (0, 2)), ((0, 1),), ((1, 0),)])
    assert len(plan_jobs(tasks, EvaluationSettings(dedup=False))) == 4
    keys = {p.key for p in plan}
    for other in (EvaluationSettings(limits=RunLimits(timeout_s=2)), EvaluationSettings(early_exit=False),
                  EvaluationSettings(sandbox_id="other image")):
        assert keys.isdisjoint(p.key for p in plan_jobs(tasks, other))


def test_cli_import_loads_neither_docker_nor_torch():
    # `harness generate` must run on GPU machines without the Docker SDK; `evaluate` without torch.
    import subprocess
    import sys

    probe = "import sys, harness.cli; print(sorted(m for m in ('docker', 'torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
