"""Hostile programs (tests/adversarial.py) against real sandboxes.

Each attack runs in a sandbox, followed in the same sandbox by a canary that must find nothing left
(no process, no file in /tmp, /dev/shm or the message queues, no SysV IPC object, still no
privileges) and still get the right answer.  Meanwhile a separate pool serves ordinary jobs, which
must all be right: other containers are unaffected.  No attack may break a sandbox (an
infrastructure error would let a hostile sample escape scoring).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import pytest

from harness.errors import SandboxError
from harness.evaluation.execution import ExecutionJob, RunLimits, run_job
from harness.judging.verdicts import SampleStatus
from harness.sandbox.docker.backend import DockerBackend, sandbox_containers
from harness.sandbox.pool import SandboxPool
from tests.support.adversarial import (
    ATTACKS,
    CANARY,
    CANARY_SUITE,
    FAIL,
    ROOMY_TIMEOUT,
    STDIN_SUITE,
    Attack,
)

NORMAL = "a, b = map(int, input().split())\nprint(a + b)"


@dataclass
class Record:
    result: object = None  # SampleResult, or the SandboxError the attack caused
    oracle: object = None
    canary: object = None
    retired: str = ""


def _attack_job(attack: Attack, fresh: bool = False) -> ExecutionJob:
    # The oracle (fresh=True) starts a new interpreter on every run, as the official procedure does,
    # and pays Python's start-up and the TACO header's imports each time: about 0.5 s per run at light
    # load, up to 1.3 s on a 2-core machine loaded with two busy loops and other test suites, too close
    # to the attacks' 2 s.  No oracle attack is meant to reach the deadline
    # (test_oracle_attacks_end_by_themselves), so a roomier limit cannot change an oracle verdict; it
    # only keeps the load from deciding one.
    timeout = max(attack.timeout, ROOMY_TIMEOUT) if fresh else attack.timeout
    return ExecutionJob(attack.suite, attack.code, RunLimits(timeout_s=timeout), fresh_interpreter=fresh)


@pytest.fixture(scope="module")
def corpus(docker_client, sandbox_image):
    backend = DockerBackend(sandbox_image, client=docker_client, capacity=2)
    todo: queue.Queue = queue.Queue()
    for attack in sorted(ATTACKS, key=lambda a: -a.timeout):
        todo.put(attack)
    records: dict[tuple[str, str], Record] = {}
    canary_job = ExecutionJob(CANARY_SUITE, CANARY, RunLimits(timeout_s=10.0))

    def worker():
        sandbox = backend.start()
        try:
            while True:
                try:
                    attack = todo.get_nowait()
                except queue.Empty:
                    return
                record = records[(attack.mode, attack.name)] = Record()
                try:
                    record.result = run_job(sandbox, _attack_job(attack))
                    if attack.oracle and not sandbox.retire:
                        record.oracle = run_job(sandbox, _attack_job(attack, fresh=True))
                except SandboxError as exc:
                    record.result = exc
                if sandbox.retire or isinstance(record.result, SandboxError):
                    record.retired = sandbox.retire or "failed"
                    sandbox.close()
                    sandbox = backend.start()
                record.canary = run_job(sandbox, canary_job)
        finally:
            sandbox.close()

    # Bystanders: an ordinary pool next door keeps getting right answers throughout.
    bystanders = []
    stop = threading.Event()

    def bystander():
        with SandboxPool(DockerBackend(sandbox_image, client=docker_client, capacity=1)) as pool:
            while not stop.is_set():
                bystanders.append(pool.run(ExecutionJob(STDIN_SUITE, NORMAL, RunLimits(timeout_s=10.0))))
                time.sleep(0.5)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    side = threading.Thread(target=bystander)
    side.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    side.join()
    deadline = time.time() + 30
    while sandbox_containers(docker_client, backend.session) and time.time() < deadline:
        time.sleep(0.2)
    return records, bystanders, sandbox_containers(docker_client, backend.session)


def test_corpus_is_large_enough():
    assert len({a.name for a in ATTACKS}) >= 40
    assert len(ATTACKS) == len({(a.mode, a.name) for a in ATTACKS})


def test_oracle_attacks_end_by_themselves():
    """The oracle runs with a roomier limit than the attack (see _attack_job): that changes no verdict
    only while no oracle attack is meant to run into the deadline (a stdin timeout is TACO's -1)."""
    oracles = [a for a in ATTACKS if a.oracle]
    assert oracles
    for attack in oracles:
        assert attack.mode == "stdin" and isinstance(attack.expected, list) and -1 not in attack.expected, attack.name


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{a.mode}: {a.name}" for a in ATTACKS])
def test_attack(corpus, attack):
    records, _, _ = corpus
    record = records[(attack.mode, attack.name)]
    assert not isinstance(record.result, SandboxError), f"the attack broke its sandbox: {record.result}"
    result = record.result
    assert result.status is SampleStatus.JUDGED, result.detail
    if attack.expected == FAIL:
        assert not result.passed, result.taco()
    else:
        assert result.taco() == attack.expected, (result.taco(), result.detail)
    if record.oracle is not None:  # the official procedure (a fresh python per test) agrees
        assert record.oracle.taco() == result.taco(), record.oracle.detail
    assert record.canary.taco() == [True], f"after the attack: {record.canary.detail}"


def test_sandboxes_retire_only_for_what_cannot_be_cleaned(corpus):
    records, _, _ = corpus
    retired = {name: r.retired for (mode, name), r in records.items() if r.retired}
    assert set(retired) == {"SysV shared memory (outlives processes)"}, retired
    assert "sysv shm" in retired["SysV shared memory (outlives processes)"]


def test_other_containers_unaffected_and_nothing_left(corpus):
    _, bystanders, left = corpus
    assert len(bystanders) >= 5
    assert all(r.taco() == [True, True] for r in bystanders), [r.detail for r in bystanders if not r.passed]
    assert left == []


def test_pool_keeps_serving_through_attacks(docker_client, sandbox_image):
    """Bombs interleaved with ordinary jobs in one pool: every ordinary job right, no sandbox failure."""
    nasty = [
        a
        for a in ATTACKS
        if a.name
        in (
            "fork bomb",
            "memory bomb, fast (8 GB at once)",
            "fill /tmp and /dev/shm, then fail (the runner must still write its retry files)",
            "SysV shared memory (outlives processes)",
            "double-fork daemon that outlives the test",
            "forge an oversized result frame",
        )
    ]
    jobs, expected = [], []
    for attack in nasty:
        jobs.append(_attack_job(attack))
        expected.append(attack.expected)
        for _ in range(4):
            jobs.append(ExecutionJob(STDIN_SUITE, NORMAL, RunLimits(timeout_s=10.0)))
            expected.append([True, True])
    backend = DockerBackend(sandbox_image, client=docker_client, capacity=2)
    with SandboxPool(backend) as pool:
        results = pool.map(jobs)
        stats = pool.stats()
    for result, want in zip(results, expected):
        assert result.status is SampleStatus.JUDGED, result.detail
        assert (not result.passed) if want == FAIL else result.taco() == want, (result.taco(), want)
    assert stats.sandbox_failures == 0
    assert stats.sandboxes_retired >= 1


def test_runner_refuses_to_serve_when_it_cannot_drop_privileges(docker_client, sandbox_image):
    """Root without CAP_SETUID: every program would fail to start and read as -3; the runner must
    exit instead (an infrastructure error the pool retries and reports, never a verdict)."""
    container = docker_client.containers.run(
        sandbox_image, user="0:0", cap_drop=["ALL"], network_mode="none", detach=True, labels={"taco-harness.sandbox": "1"}
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        assert b"cannot switch programs to uid 65534" in container.logs()
    finally:
        container.remove(force=True)
