"""The pool: same verdicts whatever the worker count, failures retried on fresh containers, no leftovers."""

from __future__ import annotations

import json
import time

from harness.data.problems import load_problems
from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob, RunLimits
from harness.judging.verdicts import SampleStatus
from harness.sandbox.docker.backend import DockerBackend, sandbox_containers
from harness.sandbox.pool import SandboxPool
from tests.conftest import shared_file
from tests.support.faults import map_while_killing
from tests.support.truth_tables import CALL_CASES, CALL_SUITE, STDIN_CASES, STDIN_SUITE

# The real TACO programs below end by themselves, but two need seconds of CPU per test: tasks 65 and 125
# took 1.2-2.8 s per test at light load and 4.1-4.3 s, past TACO's 4 s, on a 2-core machine loaded
# with two busy loops and other test suites (three workers on two cores slow them further).  A timeout
# decided by the load in one run and not the other would fail a test that is about the worker count,
# not the limit, so they get 20 s: over 4.6 times the worst measured (4.3 s).  The truth tables keep
# TACO's 4 s: their infinite loops are meant to time out, and their one slow program (sleep 3.5s) has a
# safe margin (tests/support/truth_tables.py).
TACO_ROW_LIMITS = RunLimits(timeout_s=20.0)


def _jobs():
    jobs = [ExecutionJob(STDIN_SUITE, code) for code, _ in STDIN_CASES.values()]
    jobs += [ExecutionJob(CALL_SUITE, code) for code, _ in CALL_CASES.values()]
    for problem in load_problems(shared_file("taco_test_examples.jsonl"))[:60]:
        reference = json.loads(problem.row["solutions"])[0]
        jobs.append(ExecutionJob(problem.tests, reference, TACO_ROW_LIMITS))
        jobs.append(ExecutionJob(problem.tests, reference + "\nprint(0)", TACO_ROW_LIMITS))  # a wrong variant
    return jobs


def test_same_verdicts_with_one_and_many_workers(docker_client, sandbox_image):
    jobs = _jobs()
    runs = {}
    for size in (1, 3):
        backend = DockerBackend(sandbox_image, client=docker_client, capacity=size)
        with SandboxPool(backend) as pool:
            runs[size] = [r.taco() for r in pool.map(jobs)]
    assert runs[1] == runs[3]
    assert any(t == [True] * len(t) for t in runs[1]) and any(False in t for t in runs[1])


def test_killed_containers_are_replaced_and_jobs_retried(docker_client, sandbox_image):
    suite = parse_input_output({"inputs": [f"{i} {i}\n" for i in range(150)], "outputs": [f"{2 * i}\n" for i in range(150)]})
    codes = ["a, b = map(int, input().split())\nprint(a + b)", "a, b = map(int, input().split())\nprint(a * b)"]
    # Each test takes milliseconds (the 4 s limit is 100 times that even on a loaded machine): the only
    # failures here are the kills.
    jobs = [ExecutionJob(suite, codes[i % 2], RunLimits(timeout_s=4.0)) for i in range(40)]
    backend = DockerBackend(sandbox_image, client=docker_client, capacity=2)
    with SandboxPool(backend) as pool:

        def kill_one() -> str | None:
            running = [c for c in sandbox_containers(docker_client, backend.session) if c.status == "running"]
            if not running:
                return None
            try:
                running[0].kill()
            except Exception:  # it ended by itself meanwhile
                return None
            return running[0].name

        results, kills, stats = map_while_killing(pool, jobs, kill_one, interval_s=2.0)
    assert kills, "the test did not manage to kill a container"
    assert stats.sandbox_failures >= 1
    assert all(r.status is SampleStatus.JUDGED for r in results), [
        r.detail for r in results if r.status is not SampleStatus.JUDGED
    ]
    for i, result in enumerate(results):
        expected = [True] * 150 if i % 2 == 0 else [i == 0 or i == 2 for i in range(150)]
        assert result.taco() == expected


def test_close_removes_every_container(docker_client, sandbox_image):
    backend = DockerBackend(sandbox_image, client=docker_client, capacity=3)
    pool = SandboxPool(backend)
    suite = parse_input_output({"inputs": ["1\n"], "outputs": ["1\n"]})
    assert all(r.passed for r in pool.map([ExecutionJob(suite, "print(input())")] * 6))
    assert len(sandbox_containers(docker_client, backend.session)) >= 1
    pool.close()
    deadline = time.time() + 20
    while sandbox_containers(docker_client, backend.session) and time.time() < deadline:
        time.sleep(0.2)
    assert sandbox_containers(docker_client, backend.session) == []


def test_nothing_outlives_a_test(pool):
    """A daemonised grandchild that outlives its program is killed, and files left are wiped (the
    processes a program finds are the runner, its parent the fork server, and itself)."""
    suite = parse_input_output({"inputs": ["fork", "check"], "outputs": ["clean", "clean"]})
    code = (
        "import os, glob\n"
        "found = [f for f in glob.glob('/tmp/work/*') if f != __file__] + glob.glob('/dev/shm/*')\n"
        "alive = [p for p in os.listdir('/proc') if p.isdigit() and p not in ('1', str(os.getpid()), str(os.getppid()))]\n"
        "open('/tmp/work/leftover', 'w').write('x')\n"
        "if input() == 'fork' and os.fork() == 0:\n"
        "    os.setsid()\n"
        "    import time\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print('clean' if not found and not alive else f'dirty {found} {alive}')\n"
    )
    result = pool.run(ExecutionJob(suite, code, RunLimits(timeout_s=2.0)))
    # The sleeping grandchild holds stdout open, so test 1 times out (as `communicate` would);
    # test 2 must then find no leftover process and no leftover file.  Test 2 needs little time: at most
    # 32 ms over 8 runs on a 2-core machine loaded with two busy loops and other test suites, against 2 s.
    assert result.taco() == [-1, True], result.detail


def test_files_moved_about_between_tests_are_wiped(pool):
    """Between tests the runner stats the scratch places rather than listing them (on tmpfs and mqueue a
    directory's size counts its entries): moves that keep a place's count, or change another's, must
    still leave nothing for the next test."""
    steps = ["rename", "swap", "link", "shm", "fifo", "end"]
    suite = parse_input_output({"inputs": [f"{step}\n" for step in steps], "outputs": ["clean\n"] * len(steps)})
    code = (
        "import os\n"
        "left = sorted(set(os.listdir('/tmp/work')) - {'solution.py'}) + sorted(set(os.listdir('/tmp')) - {'work', '.runner'})\n"
        "left += os.listdir('/dev/shm')\n"
        "step = input()\n"
        "if step == 'rename':\n"
        "    os.rename(__file__, '/tmp/work/renamed.py')\n"  # the work dir's count of entries is unchanged
        "elif step == 'swap':\n"
        "    os.unlink(__file__)\n"
        "    os.mkdir(__file__)\n"  # a directory where the script was
        "elif step == 'link':\n"
        "    os.link(__file__, '/tmp/linked.py')\n"
        "elif step == 'shm':\n"
        "    open('/dev/shm/left', 'w').write('x')\n"
        "elif step == 'fifo':\n"
        "    os.mkfifo('/tmp/work/pipe')\n"
        "print('clean' if not left else f'dirty {left}')\n"
    )
    result = pool.run(ExecutionJob(suite, code, RunLimits(timeout_s=4.0)))
    assert result.taco() == [True] * len(steps), result.detail
