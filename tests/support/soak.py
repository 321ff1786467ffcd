"""Long reliability runs: container kills during a run, a sustained run, determinism across runs and
worker counts.  ``tests/test_soak.py`` runs them at a reduced size in every test run; full size:

    SOAK_SCALE=1 make soak        (or: .venv/bin/python -m tests.soak --scale 1)

Every synthetic program has a verdict known in advance, so each run is checked against the truth,
not only against another run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.generations import TaskSamples
from harness.data.problems import Problem, load_problems
from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob, RunLimits
from harness.evaluation.outputs import taco_results
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from harness.evaluation.verdict_journal import VerdictJournal
from harness.judging.verdicts import SampleStatus
from harness.sandbox.docker.backend import DockerBackend, connect, sandbox_containers
from harness.sandbox.docker.image import ensure_image
from harness.sandbox.pool import SandboxPool
from sandbox_image.taco_runner.protocol import CaseFinished, HostMessage, RunnerMessage

SHARED_DATA = Path(os.environ.get("TACO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
TESTS_PER_PROBLEM = 50


# --------------------------------------------------------------------------------------------
# a synthetic corpus with known verdicts


def _suite(n: int, seed: int):
    rng = random.Random(seed)
    pairs = [(rng.randint(-999, 999), rng.randint(-999, 999)) for _ in range(n)]
    return pairs, parse_input_output({"inputs": [f"{a} {b}\n" for a, b in pairs], "outputs": [f"{a + b}\n" for a, b in pairs]})


READ = "a, b = map(int, input().split())\n"


def synthetic_programs(index: int, pairs) -> list[tuple[str, list]]:
    """Programs for one problem, each with its exact TACO result; the index keeps them distinct."""
    n = len(pairs)
    bad = index % n
    tag = f"# program {index}\n"
    return [
        (tag + READ + "print(a + b)", [True] * n),
        (tag + READ + "print(a - b if b else a + b)", [b == 0 for _, b in pairs]),
        (
            tag + READ + f"if (a, b) == {pairs[bad]!r}:\n    raise ValueError\nprint(a + b)",
            [True if p != pairs[bad] else -3 for p in pairs],
        ),
        (tag + READ + "print(a + b)\nsys.exit(1)", [-3] * n),  # every test returncode:1: the second pass runs too
        (tag + "import time\ntime.sleep(0.02)\n" + READ + "print(a + b)", [True] * n),  # far below any limit
    ]


def synthetic_tasks(tests_wanted: int, seed: int = 0) -> tuple[list[TaskSamples], dict[int, list[list]]]:
    """TaskSamples whose programs execute about *tests_wanted* tests in all (retries not counted)."""
    tasks, truth = [], {}
    per_problem = TESTS_PER_PROBLEM * 5
    for task_id in range(max(1, -(-tests_wanted // per_problem))):
        pairs, suite = _suite(TESTS_PER_PROBLEM, seed * 100_003 + task_id)
        programs = synthetic_programs(task_id, pairs)
        problem = Problem(task_id, suite, "EASY", (), {"input_output": json.dumps({"task": task_id, "seed": seed})})
        tasks.append(TaskSamples(problem, tuple(code for code, _ in programs)))
        truth[task_id] = [expected for _, expected in programs]
    return tasks, truth


def executed_tests(results) -> int:
    return sum(len(r.verdicts) for samples in results.values() for r in samples)


def host_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _backend(workers: int, client=None, image=None) -> DockerBackend:
    client = client or connect()
    return DockerBackend(image or ensure_image(client), client=client, capacity=workers)


# --------------------------------------------------------------------------------------------
# container kills


@dataclass
class FaultReport:
    tests: int
    kills: int
    sandbox_failures: int
    seconds: float
    journal_lines: int
    duplicate_keys: int
    infra_errors: int
    equal_to_fault_free: bool
    equal_to_truth: bool


def fault_run(
    tests_wanted: int, workers: int = 2, kill_every: tuple[float, float] = (2.0, 4.0), journal_dir: Path | None = None
) -> FaultReport:
    """Evaluate a synthetic corpus while a thread `docker kill`s a random running sandbox container
    every *kill_every* seconds; then the same without kills.  Spacing kills further apart than a
    job plus a container start means no job can be hit on all of its 3 attempts."""
    tasks, truth = synthetic_tasks(tests_wanted, seed=1)
    settings = EvaluationSettings(limits=RunLimits(timeout_s=4.0), early_exit=False)
    client = connect()
    image = ensure_image(client)
    journal_dir = journal_dir or Path(tempfile.mkdtemp(prefix="soak-faults-"))
    journal_path = journal_dir / "journal.jsonl"
    backend = _backend(workers, client, image)
    kills = []
    stop = threading.Event()

    def killer():
        rng = random.Random(7)
        while not stop.wait(rng.uniform(*kill_every)):
            running = [c for c in sandbox_containers(client, backend.session) if c.status == "running"]
            if running:
                try:
                    rng.choice(running).kill()
                    kills.append(time.monotonic())
                except Exception:
                    pass

    started = time.monotonic()
    with SandboxPool(backend) as pool:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            with VerdictJournal(journal_path) as journal:
                faulty = evaluate(tasks, lambda: nullcontext(pool), settings, journal=journal)
        finally:
            stop.set()
            thread.join()
        stats = pool.stats()
    seconds = time.monotonic() - started
    with SandboxPool(_backend(workers, client, image)) as pool:
        clean = evaluate(tasks, lambda: nullcontext(pool), settings)
    keys = [json.loads(line)["key"] for line in journal_path.read_text().splitlines()]
    faulty_taco = taco_results(faulty.results)
    return FaultReport(
        tests=executed_tests(faulty.results),
        kills=len(kills),
        sandbox_failures=stats.sandbox_failures,
        seconds=round(seconds, 1),
        journal_lines=len(keys),
        duplicate_keys=len(keys) - len(set(keys)),
        infra_errors=faulty.infra_errors,
        equal_to_fault_free=faulty_taco == taco_results(clean.results),
        equal_to_truth=faulty_taco == {str(t): truth[t] for t in truth},
    )


# --------------------------------------------------------------------------------------------
# sustained load


@dataclass
class SustainedReport:
    tests: int
    jobs: int
    seconds: float
    wrong: int
    infra_errors: int
    throughput: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, tests/s in the interval)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, host RSS)
    containers_left: int = 0
    processes_left: int = 0
    temp_files_left: int = 0
    sandboxes_started: int = 0


def sustained_run(tests_wanted: int, workers: int = 2, interval_s: float = 10.0) -> SustainedReport:
    """Stream jobs through one pool without keeping results; sample throughput and host memory."""
    private_tmp = Path(tempfile.mkdtemp(prefix="soak-tmp-"))
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(private_tmp)  # any host temp file lands here
    client = connect()
    backend = _backend(workers, client)
    report = SustainedReport(tests=0, jobs=0, seconds=0.0, wrong=0, infra_errors=0)
    container_ids: set[str] = set()
    try:
        rounds = max(1, -(-tests_wanted // (TESTS_PER_PROBLEM * 5 * 20)))
        started = last = time.monotonic()
        tests_at_last = 0
        with SandboxPool(backend) as pool:
            for round_index in range(rounds):
                tasks, truth = synthetic_tasks(TESTS_PER_PROBLEM * 5 * 20, seed=1000 + round_index)
                jobs, expected = [], []
                for task in tasks:
                    for code, want in zip(task.outputs, truth[task.problem.task_id]):
                        jobs.append(ExecutionJob(task.problem.tests, code, RunLimits(timeout_s=4.0)))
                        expected.append(want)
                for index, result in pool.map_unordered(jobs):
                    report.jobs += 1
                    if result.status is not SampleStatus.JUDGED:
                        report.infra_errors += 1
                        continue
                    report.tests += len(result.verdicts)
                    report.wrong += result.taco() != expected[index]
                    now = time.monotonic()
                    if now - last >= interval_s:
                        report.throughput.append(
                            (round(now - started, 1), round((report.tests - tests_at_last) / (now - last), 1))
                        )
                        report.rss_mb.append((round(now - started, 1), round(host_rss_mb(), 1)))
                        last, tests_at_last = now, report.tests
                container_ids.update(c.id for c in sandbox_containers(client, backend.session))
            report.sandboxes_started = pool.stats().sandboxes_started
        report.seconds = round(time.monotonic() - started, 1)
        deadline = time.time() + 30
        while sandbox_containers(client, backend.session) and time.time() < deadline:
            time.sleep(0.2)
        report.containers_left = len(sandbox_containers(client, backend.session))
        report.processes_left = _host_processes_in(container_ids)
        report.temp_files_left = len(list(private_tmp.iterdir()))
    finally:
        tempfile.tempdir = saved_tempdir
    return report


def _host_processes_in(container_ids: set[str]) -> int:
    """Host processes whose cgroup names one of *container_ids* (0 once the containers are gone)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        count += any(cid in cgroup for cid in container_ids)
    return count


# --------------------------------------------------------------------------------------------
# determinism on the shared corpora


def shared_corpus(max_problems: int | None = None) -> list[TaskSamples]:
    from bench.variants import wrong_variants

    tasks = []
    files = ["taco_test_examples.jsonl", "taco_train_sample_original_fields.jsonl", "apps_train_sample_coderl.jsonl"]
    next_id = 0
    for name in files:
        path = SHARED_DATA / name
        if not path.exists():
            continue
        for problem in load_problems(path):
            solutions = problem.row.get("solutions")
            solutions = json.loads(solutions) if isinstance(solutions, str) else solutions
            if not solutions or problem.tests is None:
                continue
            code = solutions[0]
            outputs = (code, *wrong_variants(code, problem.tests))
            renumbered = Problem(next_id, problem.tests, problem.difficulty, problem.skills, problem.row)
            tasks.append(TaskSamples(renumbered, outputs))
            next_id += 1
    return tasks[:max_problems] if max_problems else tasks


class _TimedBackend:
    """Wraps a backend to record each test's outcome kind and time (ms: run 1 plus any retries)."""

    def __init__(self, inner: DockerBackend) -> None:
        self.inner, self.capacity, self.name = inner, inner.capacity, inner.name
        self.times: list[tuple[str, float]] = []

    def start(self):
        return _TimedSandbox(self.inner.start(), self.times)


class _TimedSandbox:
    def __init__(self, inner, times) -> None:
        self.inner, self.times, self.name, self.retire = inner, times, inner.name, ""

    def send(self, message: HostMessage) -> None:
        self.inner.send(message)

    def recv(self, timeout: float) -> RunnerMessage:
        message = self.inner.recv(timeout)
        if isinstance(message, CaseFinished):
            self.times.append((message.outcome.KIND, message.program_ms / 1000))
        return message

    def close(self) -> None:
        self.inner.close()


@dataclass
class DeterminismReport:
    runs: dict[str, int]  # "workers x run" -> executed tests
    seconds: dict[str, float]
    identical: bool
    samples: int
    timeout_s: float
    tests_timed: int = 0  # tests timed in the first single-worker run
    slowest_finishing_test_s: float = 0.0  # slowest test that ended before its deadline
    timed_out_tests: int = 0  # tests whose runs reached the deadline (they never finish)
    danger_zone_tests: int = 0  # tests that ended between timeout/8 and the deadline: contention could flip them


def determinism_run(
    max_problems: int | None, repeats: int = 3, worker_counts=(1, 2, 8), timeout_s: float = 60.0
) -> DeterminismReport:
    """Every run must give the same results.json.  The corpus' programs either finish far below the
    limit or never finish: *timeout_s* is chosen so that the slowest finishing sample, slowed by
    running 8 containers on 2 cores, still finishes well inside it."""
    tasks = shared_corpus(max_problems)
    settings = EvaluationSettings(limits=RunLimits(timeout_s=timeout_s), early_exit=False)
    client = connect()
    image = ensure_image(client)
    outputs, runs, seconds = [], {}, {}
    timed = None
    for workers in worker_counts:
        for repeat in range(repeats):
            backend = _backend(workers, client, image)
            if timed is None:
                backend = timed = _TimedBackend(backend)
            with SandboxPool(backend) as pool:
                outcome = evaluate(tasks, lambda: nullcontext(pool), settings)
            label = f"{workers}x{repeat + 1}"
            runs[label] = executed_tests(outcome.results)
            seconds[label] = round(outcome.seconds, 1)
            outputs.append(json.dumps(taco_results(outcome.results), sort_keys=True))
    report = DeterminismReport(runs, seconds, len(set(outputs)) == 1, sum(len(t.outputs) for t in tasks), timeout_s)
    finishing = [s for kind, s in timed.times if kind != "timeout" and s < timeout_s]
    report.tests_timed = len(timed.times)
    report.slowest_finishing_test_s = round(max(finishing, default=0.0), 2)
    report.timed_out_tests = len(timed.times) - len(finishing)
    report.danger_zone_tests = sum(timeout_s / 8 <= s for s in finishing)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("SOAK_SCALE", "1")))
    parser.add_argument("--only", choices=["faults", "sustained", "determinism"], action="append")
    args = parser.parse_args(argv)
    chosen = args.only or ["faults", "sustained", "determinism"]
    report: dict = {"scale": args.scale}
    if "faults" in chosen:
        report["faults"] = fault_run(int(10_000 * args.scale)).__dict__
        print(json.dumps(report["faults"]), flush=True)
    if "sustained" in chosen:
        report["sustained"] = sustained_run(int(100_000 * args.scale)).__dict__
        print(json.dumps(report["sustained"]), flush=True)
    if "determinism" in chosen:
        report["determinism"] = determinism_run(None if args.scale >= 1 else max(20, int(510 * args.scale))).__dict__
        print(json.dumps(report["determinism"]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
