"""Timeouts caused by a busy machine (issue 17): never a verdict, never cached.

Fast parts first: the contention rule on synthetic figures, the judge, the session's re-runs and
back-off on the in-memory fake backend, the directory lock and the oversubscription check.  Then
real sandboxes through the CLI: the runner's figures for a loop, a sleep and a starved program; the
acceptance test (two ``harness evaluate`` side by side with ``--workers 4`` each on CPU-heavy correct
programs score as one alone, and nothing contended reaches the verdict cache); genuine timeouts still
-1 and cached; a second run into a directory in use refused at once; the warnings.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import pytest

from harness.data.generations import TaskSamples
from harness.data.problems import Problem
from harness.data.testcases import parse_input_output
from harness.evaluation.cache import VerdictCache
from harness.evaluation.directory import hold_directory
from harness.evaluation.outputs import taco_results
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import MAX_CONTENDED_ATTEMPTS, _Admission, evaluate
from harness.evaluation.verdict_journal import VerdictJournal
from harness.judging.judge import CONTENDED_SHARE, SampleJudgement, is_contended, seconds_lost_waiting
from harness.judging.verdicts import SampleResult, SampleStatus, Verdict
from harness.sandbox.choice import Oversubscribed, SandboxChoice, SandboxKind
from harness.sandbox.fake import FakeBackend
from harness.sandbox.pool import SandboxPool
from sandbox_image.taco_runner.protocol import (
    PROTOCOL_VERSION,
    CaseFinished,
    Compiled,
    CompileStatus,
    Hello,
    HostMessage,
    JobDone,
    NonZeroExit,
    Outcome,
    Output,
    Ready,
    RunnerMessage,
    RunStdinJob,
    TimedOut,
)

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 4.0


def starved(wall: float = 4000.0) -> TimedOut:
    """A CPU-bound run that got a quarter of a CPU (8 programs on 2 cores)."""
    return TimedOut(wall_ms=wall, cpu_ms=wall / 4, wait_ms=wall * 3 / 4, throttled_ms=0.0, runner_cpu_ms=1.0)


LOOP_ALONE = TimedOut(wall_ms=4001.0, cpu_ms=3990.0, wait_ms=6.0, throttled_ms=0.0, runner_cpu_ms=0.5)
SLEEP = TimedOut(wall_ms=4001.0, cpu_ms=3.0, wait_ms=0.2, throttled_ms=0.0, runner_cpu_ms=0.5)


# -- the rule -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "figures, contended",
    [
        (SLEEP, False),  # sleeps: waits for nothing
        (LOOP_ALONE, False),  # loops alone: gets its CPU
        (starved(), True),
        (TimedOut(wall_ms=4000, cpu_ms=2000, wait_ms=100, throttled_ms=1800, runner_cpu_ms=0), True),  # throttled
        # Two processes of its own in a one-CPU sandbox: they wait behind each other, but the sandbox
        # had its whole CPU.
        (TimedOut(wall_ms=4000, cpu_ms=3995, wait_ms=3900, throttled_ms=0, runner_cpu_ms=0), False),
        # Waiting behind the runner that drains its output: the sandbox's own CPU, not the machine's.
        (TimedOut(wall_ms=4000, cpu_ms=2500, wait_ms=1500, throttled_ms=0, runner_cpu_ms=1450), False),
        (TimedOut(), False),  # no figures (a runner that could not read them): TACO's -1, as before
        (TimedOut(wall_ms=4000, cpu_ms=None, wait_ms=None, throttled_ms=None), False),
        # At the threshold: 10% of the limit.
        (TimedOut(wall_ms=4000, cpu_ms=3600, wait_ms=400, runner_cpu_ms=0), True),
        (TimedOut(wall_ms=4000, cpu_ms=3601, wait_ms=399, runner_cpu_ms=0), False),
    ],
)
def test_the_contention_rule_on_synthetic_figures(figures, contended):
    assert is_contended(figures, LIMIT_S) is contended
    assert not is_contended(None, LIMIT_S)


def test_the_threshold_is_relative_to_the_limit():
    lost = TimedOut(wall_ms=10_000, cpu_ms=9_500, wait_ms=500, runner_cpu_ms=0)
    assert seconds_lost_waiting(lost) == pytest.approx(0.5)
    assert is_contended(lost, 4.0) and not is_contended(lost, 10.0)
    assert CONTENDED_SHARE == 0.10


# -- the judge ------------------------------------------------------------------------------------------
def _problem(task_id: int = 0, tests: int = 2) -> Problem:
    raw = json.dumps({"inputs": [f"{i}\n" for i in range(tests)], "outputs": ["0\n"] * tests})
    return Problem(task_id, parse_input_output(raw), "EASY", (), {"input_output": raw})


def test_the_judge_marks_a_contended_timeout_and_changes_nothing_else():
    suite = _problem(tests=3).tests
    assert suite is not None
    for early_exit in (False, True):
        judgement = SampleJudgement(suite, early_exit=early_exit, timeout_s=LIMIT_S)
        assert not judgement.on_test(1, Output("0\n"))
        assert judgement.on_test(1, starved()) is early_exit  # TACO's -1, settled as any timeout
        if not early_exit:
            assert not judgement.on_test(1, Output("0\n"))
        result = judgement.result(stopped_early=early_exit)
        assert result.contended and result.status is SampleStatus.JUDGED
        assert result.taco() == ([True, -1] if early_exit else [True, -1, True])


def test_an_uncontended_timeout_is_the_same_verdict_as_before():
    suite = _problem(tests=2).tests
    assert suite is not None
    for figures in (LOOP_ALONE, SLEEP, TimedOut()):
        judgement = SampleJudgement(suite, early_exit=False, timeout_s=LIMIT_S)
        assert not judgement.on_test(1, figures)
        assert not judgement.on_test(1, figures)
        result = judgement.result(stopped_early=False)
        assert not result.contended and result.taco() == [-1, -1]


def test_a_contended_retry_or_compile_step_marks_the_result():
    suite = _problem(tests=2).tests
    assert suite is not None
    retry = SampleJudgement(suite, early_exit=True, timeout_s=LIMIT_S)
    assert not retry.on_test(1, NonZeroExit(1, ""), retry_timeout=starved())  # TACO's retry A timed out, starved
    assert retry.result(stopped_early=False).contended
    calm_retry = SampleJudgement(suite, early_exit=True, timeout_s=LIMIT_S)
    assert not calm_retry.on_test(1, NonZeroExit(1, ""), retry_timeout=SLEEP)  # returncode:1 keeps going
    assert not calm_retry.result(stopped_early=False).contended
    compiled = SampleJudgement(suite, early_exit=True, timeout_s=LIMIT_S)
    compiled.on_compiled(CompileStatus.ERROR, "compile step timed out", starved())
    result = compiled.result(stopped_early=False)
    assert result.contended and result.taco() == [-2]


# -- the session, on the fake backend -------------------------------------------------------------------
class ScriptedRunner:
    """A fake runner whose n-th run of a program (keyed by its text) reports script[program][n] (the
    last entry thereafter) for every test; it counts the runs, and how many jobs ran at once."""

    def __init__(self, script: dict[str, Sequence[Outcome]], hold_s: float = 0.0):
        self.script = script
        self.hold_s = hold_s
        self.runs: Counter[str] = Counter()
        self.active = 0
        self.alone: list[tuple[int, bool]] = []  # (attempt, ran with no other job) of every re-run
        self._lock = threading.Lock()

    def __call__(self, message: HostMessage) -> list[RunnerMessage]:
        if isinstance(message, Hello):
            return [Ready(PROTOCOL_VERSION, "fake")]
        if not isinstance(message, RunStdinJob):
            return []
        program = next(p for p in self.script if p in message.exec_program)
        with self._lock:
            attempt = self.runs[program]
            self.runs[program] += 1
            self.active += 1
            if attempt:
                self.alone.append((attempt, self.active == 1))
        time.sleep(self.hold_s)
        with self._lock:
            self.active -= 1
        outcomes = self.script[program]
        outcome = outcomes[min(attempt, len(outcomes) - 1)]
        cases = [CaseFinished(message.job_id, 1, i, outcome, 1.0) for i in range(len(message.inputs))]
        return [Compiled(message.job_id, CompileStatus.OK, ""), *cases, JobDone(message.job_id, False, "")]


def _evaluate_on_fake(runner: ScriptedRunner, programs: Sequence[str], tmp_path: Path, capacity: int = 2):
    tasks = [TaskSamples(_problem(), tuple(f"print(0)  # {p}\n" for p in programs))]
    backend = FakeBackend(capacity=capacity, responder=runner)
    with VerdictJournal(tmp_path / "journal.jsonl") as journal, VerdictCache(tmp_path / "cache") as cache:
        with SandboxPool(backend) as pool:
            outcome = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings(), journal, cache)
        cached = cache.get_many(_keys(tmp_path / "journal.jsonl"))
        rows = cache._db.execute("SELECT record FROM verdicts").fetchall()
    return outcome, cached, [json.loads(r) for (r,) in rows]


def _keys(journal: Path) -> list[str]:
    return [json.loads(line)["key"] for line in journal.read_text().splitlines()] if journal.exists() else []


def test_a_contended_result_is_run_again_and_only_the_rerun_counts(tmp_path):
    runner = ScriptedRunner({"flaky": [starved(), starved(), Output("0\n")], "fine": [Output("0\n")]})
    outcome, cached, rows = _evaluate_on_fake(runner, ["flaky", "fine"], tmp_path)
    flaky, fine = outcome.results[0]
    assert flaky.passed and not flaky.contended and flaky.contended_reruns == 2
    assert fine.passed and fine.contended_reruns == 0
    assert runner.runs == {"flaky": 3, "fine": 1}
    assert outcome.contended_reruns == 2 and outcome.contended_unresolved == 0 and outcome.infra_errors == 0
    assert outcome.metrics["counts"]["contended_timeouts"] == {"reruns": 2, "unresolved": 0}
    assert outcome.metrics["pass@1"] == 1.0
    # Journal and cache hold the final verdicts only: two entries, both passed.
    assert len(_keys(tmp_path / "journal.jsonl")) == 2 and len(cached) == 2
    assert all(r["verdicts"] == ["passed", "passed"] for r in rows)


def test_a_job_contended_on_every_attempt_is_not_scored(tmp_path):
    runner = ScriptedRunner({"starved": [starved()], "fine": [Output("0\n")]})
    outcome, cached, rows = _evaluate_on_fake(runner, ["starved", "fine"], tmp_path)
    starved_result, _ = outcome.results[0]
    assert runner.runs["starved"] == MAX_CONTENDED_ATTEMPTS == 3
    assert starved_result.status is SampleStatus.INFRA_ERROR and starved_result.contended
    assert "waiting for a CPU" in starved_result.detail and starved_result.verdicts == ()
    assert taco_results(outcome.results) == {"0": [None, [True, True]]}  # null, never -1
    counts = outcome.metrics["counts"]
    assert counts["infra_errors"] == 1 and counts["contended_timeouts"] == {"reruns": 2, "unresolved": 1}
    assert outcome.metrics["pass@1"] == 1.0  # left out of n, as an infrastructure error is
    assert len(cached) == 1 and all("timeout" not in r["verdicts"] for r in rows)  # nothing contended stored
    assert len(_keys(tmp_path / "journal.jsonl")) == 1  # so a rerun retries it


def test_genuine_timeouts_are_verdicts_journaled_and_cached(tmp_path):
    runner = ScriptedRunner({"loops": [LOOP_ALONE], "sleeps": [SLEEP]})
    outcome, cached, rows = _evaluate_on_fake(runner, ["loops", "sleeps"], tmp_path)
    assert [r.taco() for r in outcome.results[0]] == [[-1], [-1]]  # early exit at the first timeout
    assert runner.runs == {"loops": 1, "sleeps": 1}
    assert outcome.contended_reruns == 0 and len(cached) == 2 and all(r["verdicts"] == ["timeout"] for r in rows)


def test_after_contention_the_session_backs_off_and_a_last_attempt_runs_alone(tmp_path):
    programs = [f"p{i}" for i in range(8)]
    runner = ScriptedRunner({p: [starved(), starved(), Output("0\n")] for p in programs}, hold_s=0.02)
    outcome, _, _ = _evaluate_on_fake(runner, programs, tmp_path, capacity=4)
    assert all(r.passed for r in outcome.results[0])
    assert outcome.contended_reruns == 16
    last_attempts = [alone for attempt, alone in runner.alone if attempt == MAX_CONTENDED_ATTEMPTS - 1]
    assert len(last_attempts) == 8 and all(last_attempts)
    # Every attempt after the first contended result ran with the session backed off to one job.
    assert all(alone for _, alone in runner.alone)


def test_admission_backs_off_to_one_and_takes_back_one_sandbox_per_calm_round():
    admission = _Admission()
    admission.opened(4)
    assert admission.limit == 4
    admission.contended()
    assert admission.limit == 1
    limits = []
    for _ in range(10):
        admission.uncontended()
        limits.append(admission.limit)
    assert limits == [2, 2, 3, 3, 3, 4, 4, 4, 4, 4]
    admission.contended()
    assert admission.limit == 1


def test_the_cache_refuses_a_contended_result(tmp_path):
    with VerdictCache(tmp_path) as cache:
        cache.put("contended", SampleResult(SampleStatus.JUDGED, (Verdict.TIMEOUT,), contended=True))
        cache.put("infra", SampleResult(SampleStatus.INFRA_ERROR, (), contended=True))
        cache.put("genuine", SampleResult(SampleStatus.JUDGED, (Verdict.TIMEOUT,)))
        assert set(cache.get_many(["contended", "infra", "genuine"])) == {"genuine"}


# -- the directory lock and the load check ------------------------------------------------------------
def test_the_directory_lock_is_reentrant_here_and_refuses_another_process(tmp_path):
    out = tmp_path / "out"
    probe = (
        "import sys; from pathlib import Path; from harness.evaluation.directory import hold_directory, DirectoryInUse\n"
        "try:\n    hold_directory(Path(sys.argv[1])).__enter__()\nexcept DirectoryInUse as e:\n    print(e); sys.exit(9)\n"
    )
    with hold_directory(out), hold_directory(out):
        done = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 9 and f"{out} is in use by another harness process (pid {os.getpid()})" in done.stdout
    done = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr  # released with the last holder


def test_more_sandboxes_than_cpus_is_reported():
    cpus = os.cpu_count() or 1
    choice = SandboxChoice(SandboxKind.NAMESPACE, workers=cpus + 2)
    assert choice.load_warnings() == [Oversubscribed(cpus + 2, 1.0, cpus)]
    assert SandboxChoice(SandboxKind.NAMESPACE, workers=cpus).load_warnings() == []


# -- real sandboxes, through the CLI ------------------------------------------------------------------
BUSY_LOOP = "s = 0\nfor i in range(n):\n    s += i\n"
BUSY = "n = int(input())\n" + BUSY_LOOP + "print(s)\n# {tag}\n"
_RATE_PROBE = f"""import time
loop = compile({BUSY_LOOP!r}, "<busy>", "exec")
best = 0.0
for _ in range(5):
    started = time.process_time()
    exec(loop, {{"n": 2_000_000}})
    best = max(best, 2_000_000 / (time.process_time() - started))
print(best)
"""


@functools.cache
def _loop_rate(image: str) -> float:
    """Iterations per CPU second of BUSY's loop, run as the sandbox runs it: at module level (globals),
    by the sandbox image's own Python.  Not this process's: the image's Debian CPython runs this loop
    about a third faster than a source-built one.  CPU time, not wall time: measured on a busy machine
    (just after the image was built, say), wall time would make the programs short enough that even
    side by side none is starved past the limit."""
    from harness.sandbox.docker.backend import connect

    printed = connect().containers.run(image, ["python3", "-c", _RATE_PROBE], remove=True, network_disabled=True)
    return float(printed)


def _busy_dataset(directory: Path, image: str, seconds: float, tasks: int = 2) -> Path:
    """A small dataset of *tasks* problems, one test each, whose reference takes about *seconds* alone
    in a sandbox of *image*."""
    n = int(seconds * _loop_rate(image))
    rows = []
    for task in range(tasks):
        value = n + task
        io = {"inputs": [f"{value}\n"], "outputs": [f"{value * (value - 1) // 2}\n"]}
        rows.append(
            {"question": "Sum 0..n-1.", "solutions": json.dumps([BUSY.format(tag="reference")]), "starter_code": "",
             "input_output": json.dumps(io), "difficulty": "EASY", "skill_types": "[]", "raw_tags": "[]", "tags": "[]"}
        )  # fmt: skip
    path = directory / "busy.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _generations(directory: Path, name: str, programs: dict[int, list[str]]) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps([{"task_id": task, "output": codes} for task, codes in programs.items()]))
    return path


def _harness(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finished(process: subprocess.Popen[str], timeout: float = 420) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "TACO_HARNESS_CACHE_DIR": str(cache)}


def _cached_records(cache: Path) -> list[tuple[dict, int]]:
    with VerdictCache(cache) as opened:
        return [(json.loads(record), timeout) for record, timeout in opened._db.execute("SELECT record, timeout FROM verdicts")]


def _sandboxes_up() -> int:
    from harness.sandbox.docker.backend import LABEL, connect

    return len(connect().api.containers(filters={"label": LABEL}))


def test_two_evaluations_side_by_side_score_as_one_alone(tmp_path, sandbox_image):
    """The issue's acceptance test: on this 2-core machine, two `harness evaluate --workers 4` at once
    on correct programs that compute ~1.3 s each alone give pass@1 1.0, as one alone does, and the
    verdict cache holds nothing contended afterwards."""
    # 1.3 s in the sandbox: eight at once on 2 cores take ~5.2 s, well past the 4 s limit, so side by
    # side some runs must be starved; yet a last attempt (alone in its session) beside the other
    # evaluation backed off to a few sandboxes and one more busy process still ends in time.  (With
    # 1.8 s programs, or B as long as A, one more busy process left samples unscored here.)
    dataset = _busy_dataset(tmp_path, sandbox_image, seconds=1.3)
    # A has twice B's programs: B starts once A has a sandbox up, and with as many programs as B, A
    # could be nearly done by the time B's start-up (an interpreter, the dataset, four containers, on a
    # machine A keeps busy) was over, so too little ran at once to be starved past the limit.  Sixteen
    # programs on four sandboxes keep A busy ~10 s alone (16 x 1.3 s on 2 cores), so B's first wave
    # surely runs beside four of A's.  B stays small: a job is unscored only when starved on every
    # attempt, so the longer both run at once, the more often that may happen on an even busier machine.
    per_task = {"A": 8, "B": 4}
    programs = {
        name: {t: [BUSY.format(tag=f"{name}{t}-{k}") for k in range(count)] for t in range(2)} for name, count in per_task.items()
    }
    alone_cache, shared_cache = tmp_path / "cache-alone", tmp_path / "cache-shared"

    alone = _harness(
        "evaluate", "--dataset", str(dataset), "--generations", str(_generations(tmp_path, "alone", programs["A"])),
        "--output", str(tmp_path / "alone"), env=_env(alone_cache),
    )  # fmt: skip
    code, _, err = _finished(alone)
    assert code == 0, err[-3000:]
    alone_metrics = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert alone_metrics["pass@1"] == 1.0

    def side(name: str) -> subprocess.Popen[str]:
        return _harness(
            "evaluate", "--dataset", str(dataset), "--generations", str(_generations(tmp_path, name, programs[name])),
            "--output", str(tmp_path / name), "--workers", "4", env=_env(shared_cache),
        )  # fmt: skip

    first = side("A")
    deadline = time.monotonic() + 120
    while _sandboxes_up() == 0 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    second = side("B")
    outcomes = {"A": _finished(first), "B": _finished(second)}
    reruns: dict[str, int] = {}
    for name, (code, _, err) in outcomes.items():
        assert code == 0, f"{name}: {err[-3000:]}"
        assert "4 sandboxes x 1 CPU exceed the machine's" in err  # --workers 4 on this machine's CPUs
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert metrics["pass@1"] == alone_metrics["pass@1"] == 1.0, (name, results, err[-2000:])
        assert results == {"0": [[True]] * per_task[name], "1": [[True]] * per_task[name]}
        assert metrics["counts"]["contended_timeouts"]["unresolved"] == 0
        reruns[name] = metrics["counts"]["contended_timeouts"]["reruns"]
        stats = json.loads((tmp_path / name / "run_stats.json").read_text())
        assert stats["evaluation"]["contended_unresolved"] == 0
    assert "another evaluation is running on this Docker daemon" in outcomes["B"][2]
    assert sum(reruns.values()) > 0, (
        f"side by side, some runs must have waited for a CPU (else this test tests nothing): {reruns}"
    )
    records = _cached_records(shared_cache)
    assert len(records) == 2 * sum(per_task.values()) and all(
        r["verdicts"] == ["passed"] and not timeout for r, timeout in records
    )


def test_genuine_timeouts_stay_minus_one_and_are_cached(tmp_path, sandbox_image):
    dataset = _busy_dataset(tmp_path, sandbox_image, seconds=0.1, tasks=1)
    codes = ["while True:\n    pass\n", "import time\ntime.sleep(10)\n", BUSY.format(tag="ok")]
    cache = tmp_path / "cache"
    args = ["evaluate", "--dataset", str(dataset), "--generations", str(_generations(tmp_path, "g", {0: codes}))]
    code, _, err = _finished(_harness(*args, "--output", str(tmp_path / "out"), "--timeout", "2", env=_env(cache)))
    assert code == 0, err[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results == {"0": [[-1], [-1], [True]]}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["counts"]["contended_timeouts"] == {"reruns": 0, "unresolved": 0}
    records = _cached_records(cache)
    assert sorted((r["verdicts"], timeout) for r, timeout in records) == [(["passed"], 0), (["timeout"], 1), (["timeout"], 1)]
    # The cache answers a rerun: the timeouts are verdicts like any other.
    code, out, err = _finished(_harness(*args, "--output", str(tmp_path / "again"), "--timeout", "2", env=_env(cache)))
    assert code == 0 and "0 run, 3 cached" in out, out + err
    assert json.loads((tmp_path / "again" / "results.json").read_text()) == results


def test_a_second_run_into_a_directory_in_use_is_refused_at_once(tmp_path, sandbox_image):
    dataset = _busy_dataset(tmp_path, sandbox_image, seconds=0.1, tasks=1)
    generations = _generations(tmp_path, "g", {0: [f"import time\ntime.sleep(1.5)\n# {k}\n" for k in range(6)]})
    args = ["evaluate", "--dataset", str(dataset), "--generations", str(generations), "--output", str(tmp_path / "out")]
    env = _env(tmp_path / "cache")
    first = _harness(*args, "--workers", "1", env=env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out" / "harness.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    started = time.monotonic()
    code, _, err = _finished(_harness(*args, "--restart", env=env), timeout=60)
    assert time.monotonic() - started < 20  # at once, not after the first one
    assert code == 1 and err.strip().splitlines() == [
        f"harness: error: {tmp_path / 'out'} is in use by another harness process (pid {first.pid}): wait for it to "
        "finish, or choose another --output"
    ]
    code, _, err = _finished(first)
    assert code == 0, err[-3000:]
    assert len((tmp_path / "out" / "journal.jsonl").read_text().splitlines()) == 6  # --restart discarded nothing
    code, out, err = _finished(_harness(*args, env=env), timeout=120)  # free again once it ended
    assert code == 0 and "6 resumed" in out, out + err


def test_the_report_has_a_line_for_contended_timeouts():
    from harness.reporting.model import build_report_data
    from harness.reporting.render import render_html, render_markdown

    counts = {"tasks": 1, "samples": 3, "outcomes": {"passed": 2, "infra_error": 1}}
    metrics = {"pass@1": 1.0, "detail": {"pass@1": {"0": 1.0}}, "counts": counts}
    assert "Contended timeouts" not in render_markdown(build_report_data(metrics))  # an older metrics.json
    counts["contended_timeouts"] = {"reruns": 3, "unresolved": 1}
    data = build_report_data(metrics)
    assert data.contended == (3, 1)
    line = "Contended timeouts (a run that waited for a CPU on a busy machine; never a verdict): "
    line += "3 run again, 1 samples not scored."
    assert line in render_markdown(data)
    assert f'<p class="note" id="contended">{line}</p>' in render_html(data)
