"""The pool's own logic on in-memory sandboxes (harness/sandbox/fake.py): retries on fresh sandboxes,
infrastructure errors instead of verdicts, priority order, warm-up, close, retirement, slots per
backend, ``map``'s order and the stats.  No Docker: every test runs in milliseconds, and faults are
scripted exactly rather than provoked by killing containers (tests/sandbox/test_pool.py does that on
real ones).  The tasks are small SandboxTask classes defined here: the pool knows no TACO."""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from harness.errors import SandboxError
from harness.sandbox import pool as pool_module
from harness.sandbox.fake import (
    DIES_ON_FIRST_MESSAGE,
    FAILS_TO_START,
    HEALTHY,
    RETIRES_AFTER_FIRST_JOB,
    FakeBackend,
    FakeCounts,
    SandboxScript,
    finish_every_job,
)
from harness.sandbox.interface import Sandbox, SandboxBackend
from harness.sandbox.pool import PoolStats, SandboxPool, SandboxTask
from sandbox_image.taco_runner.protocol import (
    PROTOCOL_VERSION,
    Compiled,
    CompileStatus,
    Hello,
    HostMessage,
    JobDone,
    Ready,
    RunCallJob,
    RunnerMessage,
)

T = TypeVar("T")
PATIENCE_S = 5.0  # how long a test waits for something that takes microseconds when the pool works


# ---------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class Outcome:
    """What the test tasks return: the sandbox that ran the task, or why none could."""

    label: str
    sandbox: str = ""
    infrastructure_error: str = ""


_job_ids = itertools.count(1)


def job_named(label: str) -> RunCallJob:
    """A job for the fake runner (which ends it at once); *label* rides in its function name."""
    return RunCallJob(
        next(_job_ids), timeout_s=1.0, output_limit_bytes=1 << 10, compile_only=False, program="", fn_name=label, args=()
    )


@dataclass(frozen=True)
class Ask:
    """Runs *jobs* jobs in its sandbox, reading each to its end as ``run_job`` does (a retire_reason
    in JobDone marks the sandbox for replacement): the simplest real use of a sandbox."""

    label: str
    jobs: int = 1

    def run(self, sandbox: Sandbox) -> Outcome:
        for _ in range(self.jobs):
            job = job_named(self.label)
            sandbox.send(job)
            while True:
                reply = sandbox.recv(timeout=PATIENCE_S)
                if not isinstance(reply, (Compiled, JobDone)) or reply.job_id != job.job_id:
                    raise AssertionError(f"{sandbox.name} answered another message: {reply}")
                if isinstance(reply, JobDone):
                    if reply.retire_reason:
                        sandbox.retire = reply.retire_reason
                    break
        return Outcome(self.label, sandbox=sandbox.name)

    def infrastructure_error(self, reason: str) -> Outcome:
        return Outcome(self.label, infrastructure_error=reason)


@dataclass(frozen=True)
class Recorded(Ask):
    """An Ask that notes its label in *order* when it runs."""

    order: list[str] = field(default_factory=list, compare=False)

    def run(self, sandbox: Sandbox) -> Outcome:
        self.order.append(self.label)
        return super().run(sandbox)


@dataclass(frozen=True)
class Held(Ask):
    """Occupies its slot: says it started, then waits for *release*."""

    started: threading.Event = field(default_factory=threading.Event, compare=False)
    release: threading.Event = field(default_factory=threading.Event, compare=False)

    def run(self, sandbox: Sandbox) -> Outcome:
        self.started.set()
        if not self.release.wait(PATIENCE_S):
            raise AssertionError("never released")
        return super().run(sandbox)


@dataclass(frozen=True)
class MeetsOthers(Ask):
    """Waits at *barrier* until as many tasks run at once as the barrier has parties."""

    barrier: threading.Barrier = field(default_factory=lambda: threading.Barrier(1), compare=False)

    def run(self, sandbox: Sandbox) -> Outcome:
        self.barrier.wait(PATIENCE_S)
        return super().run(sandbox)


@dataclass(frozen=True)
class FinishesAfter(Ask):
    """Finishes only after *other* has (then sets *finished*): fixes the order of completion."""

    finished: threading.Event = field(default_factory=threading.Event, compare=False)
    other: threading.Event | None = field(default=None, compare=False)

    def run(self, sandbox: Sandbox) -> Outcome:
        if self.other is not None and not self.other.wait(PATIENCE_S):
            raise AssertionError("the other task never finished")
        outcome = super().run(sandbox)
        self.finished.set()
        return outcome


@dataclass(frozen=True)
class Hangs:
    """Asks its runner for something it never answers (see ``hang_on_request``)."""

    label: str

    def run(self, sandbox: Sandbox) -> Outcome:
        sandbox.send(job_named("hang"))
        sandbox.recv(timeout=30.0)
        return Outcome(self.label, sandbox=sandbox.name)

    def infrastructure_error(self, reason: str) -> Outcome:
        return Outcome(self.label, infrastructure_error=reason)


@dataclass(frozen=True)
class ReturnsNone:
    """A task whose legitimate result is None."""

    def run(self, sandbox: Sandbox) -> None:
        return None

    def infrastructure_error(self, reason: str) -> None:
        raise AssertionError(f"a task that ran is not an infrastructure error ({reason})")


def hang_on_request(message: HostMessage) -> list[RunnerMessage]:
    """A runner that never answers a job named "hang" (and ends the others at once)."""
    return [] if isinstance(message, RunCallJob) and message.fn_name == "hang" else finish_every_job(message)


# The pool is generic over the SandboxTask protocol and the fakes stand in for the seam: mypy checks both.
_TASKS: tuple[SandboxTask[Outcome], ...] = (Ask("x"), Hangs("x"), Recorded("x"), Held("x"), MeetsOthers("x"), FinishesAfter("x"))
_BACKEND: SandboxBackend = FakeBackend()


# ---------------------------------------------------------------------------------------------
# helpers


def finishes_within(seconds: float, work: Callable[[], T]) -> T:
    """``work()``, failing the test (rather than hanging the suite) if it takes over *seconds*."""
    box: queue.Queue[tuple[bool, object]] = queue.Queue()

    def target() -> None:
        try:
            box.put((True, work()))
        except BaseException as exc:  # handed to the test thread
            box.put((False, exc))

    threading.Thread(target=target, daemon=True).start()
    try:
        ok, value = box.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"did not finish within {seconds}s")
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.002)


def outcome_pool(backends: FakeBackend | list[FakeBackend], size: int | None = None, retries: int = 3) -> SandboxPool[Outcome]:
    """A pool of test tasks (typed, so that mypy checks the tasks against the pool)."""
    return SandboxPool(backends, size=size, retries=retries)


def result_of(reply: queue.Queue[T]) -> T:
    return reply.get(timeout=PATIENCE_S)


# ---------------------------------------------------------------------------------------------
# failures: retried on a fresh sandbox, then an infrastructure error


@pytest.mark.parametrize(
    "first",
    [FAILS_TO_START, DIES_ON_FIRST_MESSAGE, SandboxScript(dies_after_messages=1)],
    ids=["fails to start", "dies on its first message", "dies mid-task"],
)
def test_a_failed_attempt_is_retried_on_a_fresh_sandbox(first):
    backend = FakeBackend(script=[first])
    with outcome_pool(backend, retries=2) as pool:
        outcome = finishes_within(PATIENCE_S, lambda: pool.run(Ask("job", jobs=2)))
        stats = pool.stats()
    started_first = not first.fails_to_start
    assert outcome == Outcome("job", sandbox="fake-2")  # the second start's sandbox ran it, whole
    assert stats.sandbox_failures == 1 and stats.jobs == 1
    assert stats.sandboxes_started == 1 + started_first
    if started_first:  # the failed sandbox was removed, not left behind
        assert backend.sandboxes[0].closed and backend.sandboxes[0].dead
    assert backend.counts().live == 0  # after close


@pytest.mark.parametrize("retries", [1, 3])
@pytest.mark.parametrize("fault", ["every sandbox dies", "no sandbox starts"])
def test_after_retries_failed_attempts_the_result_is_an_infrastructure_error(retries, fault):
    if fault == "no sandbox starts":
        backend = FakeBackend(always_fails_to_start=True)
    else:
        backend = FakeBackend(default=DIES_ON_FIRST_MESSAGE)
    with outcome_pool(backend, retries=retries) as pool:
        outcome = finishes_within(PATIENCE_S, lambda: pool.run(Ask("job")))
        later = finishes_within(PATIENCE_S, lambda: pool.run(Ask("next")))
        stats = pool.stats()
    # Never a verdict: the task's own infrastructure_error result, with the last failure's reason.
    assert outcome.sandbox == "" and outcome.label == "job"
    assert ("failed to start" if fault == "no sandbox starts" else "runner died") in outcome.infrastructure_error
    assert later.infrastructure_error  # the pool itself survives and serves the next task the same way
    counts = backend.counts()
    assert counts.start_attempts == 2 * retries  # exactly `retries` attempts per task, each on a fresh sandbox
    assert stats.sandbox_failures == 2 * retries and stats.jobs == 2
    if fault == "every sandbox dies":
        attempts = 2 * retries
        assert counts == FakeCounts(start_attempts=attempts, start_failures=0, started=attempts, closed=attempts, died=attempts)
        assert all(len(s.received) == 1 for s in backend.sandboxes)  # one attempt per sandbox
    else:
        assert counts.started == 0 and stats.sandboxes_started == 0


def test_a_result_of_none_is_delivered_as_none():
    pool: SandboxPool[None] = SandboxPool(FakeBackend())
    with pool:
        assert finishes_within(PATIENCE_S, lambda: pool.run(ReturnsNone())) is None
        assert pool.stats().sandbox_failures == 0


# ---------------------------------------------------------------------------------------------
# order


def test_waiting_tasks_run_lowest_priority_first_ties_in_arrival_order():
    """The evaluation submits with priority = -expected cost: the longest expected runs first."""
    order: list[str] = []
    done: queue.Queue[Outcome] = queue.Queue()
    with outcome_pool(FakeBackend(), size=1) as pool:
        blocker = Held("blocker")
        pool.submit_with_callback(blocker, done.put)
        assert blocker.started.wait(PATIENCE_S)  # the only slot is busy: everything below waits
        expected_costs = [("short 1", 1.0), ("long 1", 30.0), ("medium", 5.0), ("long 2", 30.0), ("short 2", 1.0), ("free", 0.0)]
        for label, cost in expected_costs:
            pool.submit_with_callback(Recorded(label, order=order), done.put, priority=-cost)
        pool.submit_with_callback(Recorded("last resort", order=order), done.put, priority=math.inf)
        blocker.release.set()
        outcomes = [done.get(timeout=PATIENCE_S) for _ in range(len(expected_costs) + 2)]
    assert order == ["long 1", "long 2", "medium", "short 1", "short 2", "free", "last resort"]
    assert [o.label for o in outcomes] == ["blocker", *order]
    assert not any(o.infrastructure_error for o in outcomes)


def test_map_keeps_the_order_of_the_tasks_whatever_the_order_they_finish_in():
    # Four tasks at once, each finishing only after the next one: they finish 3, 2, 1, 0.
    tasks: list[FinishesAfter] = []
    for label in ["3", "2", "1", "0"]:
        tasks.insert(0, FinishesAfter(label, other=tasks[0].finished if tasks else None))
    with outcome_pool(FakeBackend(capacity=4)) as pool:
        unordered = finishes_within(PATIENCE_S, lambda: list(pool.map_unordered(tasks)))
        assert [index for index, _ in unordered] == [3, 2, 1, 0]
        for task in tasks:
            task.finished.clear()
        ordered = finishes_within(PATIENCE_S, lambda: pool.map(tasks))
        assert finishes_within(PATIENCE_S, lambda: pool.map([])) == []
    assert [o.label for o in ordered] == ["0", "1", "2", "3"]
    assert all(o.sandbox for o in ordered)


# ---------------------------------------------------------------------------------------------
# warm-up


def test_warm_up_starts_every_slot_before_any_task():
    gate = threading.Event()  # holds the starts, to see them all under way at once
    backend = FakeBackend(capacity=3, start_gate=gate)
    with outcome_pool(backend) as pool:
        pool.warm_up()
        assert backend.wait_for_starts_in_progress(3), backend.counts()
        gate.set()
        wait_until(lambda: pool.stats().sandboxes_live == 3, "three sandboxes up")
        assert pool.stats() == PoolStats(jobs=0, sandbox_failures=0, sandboxes_started=3, slots=3, sandboxes_live=3)
        outcomes = finishes_within(PATIENCE_S, lambda: pool.map([Ask(str(i)) for i in range(9)]))
        assert {o.sandbox for o in outcomes} <= {"fake-1", "fake-2", "fake-3"}  # the warm ones served
        assert backend.counts().start_attempts == 3
    assert backend.counts().live == 0


def test_a_failed_warm_up_start_is_started_again_by_the_next_task():
    backend = FakeBackend(script=[FAILS_TO_START])
    # retries=1: the failed warm-up start must not have cost the task its only attempt.
    with outcome_pool(backend, retries=1) as pool:
        pool.warm_up()
        wait_until(lambda: backend.counts().start_failures == 1, "the warm-up start failed")
        assert pool.stats().sandboxes_live == 0
        outcome = finishes_within(PATIENCE_S, lambda: pool.run(Ask("job")))
        assert outcome == Outcome("job", sandbox="fake-2")
        assert pool.stats() == PoolStats(jobs=1, sandbox_failures=0, sandboxes_started=1, slots=1, sandboxes_live=1)


# ---------------------------------------------------------------------------------------------
# close


def test_close_removes_every_sandbox_and_queued_tasks_end_as_infrastructure_errors():
    backend = FakeBackend(capacity=2, responder=hang_on_request)
    pool = outcome_pool(backend)
    running = [pool.submit(Hangs(f"running {i}")) for i in range(2)]
    wait_until(lambda: sum(len(s.received) for s in backend.sandboxes) == 2, "both slots inside a task")
    queued = [pool.submit(Ask(f"queued {i}")) for i in range(3)]
    began = time.monotonic()
    pool.close()
    assert time.monotonic() - began < 2.0  # hung tasks do not hold close up: their sandboxes vanish
    counts = backend.counts()
    assert counts.started == 2 and counts.live == 0  # removed, and none started for the queued tasks
    assert pool.stats().sandboxes_live == 0
    for reply in running:
        outcome = result_of(reply)
        assert outcome.sandbox == "" and "closed" in outcome.infrastructure_error, outcome
    for reply in queued:
        assert result_of(reply).infrastructure_error == "pool closed"
    with pytest.raises(RuntimeError):
        pool.submit(Ask("too late"))
    pool.close()  # a second close (Ctrl-C handling after the with block) is harmless


def test_warm_up_with_instant_starts_warms_every_slot_and_close_removes_them():
    # Starts that take no time: one slot must not take the warm-up of another (it did, when warm-up
    # was a shared "start one" token in the job queue, and that slot stayed cold).
    backend = FakeBackend(capacity=4)
    pool = outcome_pool(backend)
    pool.warm_up()
    wait_until(lambda: pool.stats().sandboxes_live == 4, "four warm sandboxes")
    assert backend.counts().start_attempts == 4
    finishes_within(PATIENCE_S, pool.close)
    assert backend.counts().live == 0 and all(s.close_calls >= 1 for s in backend.sandboxes)
    with pytest.raises(RuntimeError):
        pool.warm_up()


# ---------------------------------------------------------------------------------------------
# retirement


def test_a_retiring_sandbox_is_replaced_after_its_task_without_counting_a_failure():
    backend = FakeBackend(script=[RETIRES_AFTER_FIRST_JOB])
    with outcome_pool(backend, retries=1) as pool:
        # Retirement takes effect after the task: the sandbox still runs the task's later jobs.
        first = finishes_within(PATIENCE_S, lambda: pool.run(Ask("first", jobs=3)))
        assert first == Outcome("first", sandbox="fake-1")  # its result stands
        assert backend.sandboxes[0].closed  # removed at once, not when the next task comes
        second = finishes_within(PATIENCE_S, lambda: pool.run(Ask("second")))
        assert second == Outcome("second", sandbox="fake-2")
        assert pool.stats() == PoolStats(
            jobs=2, sandbox_failures=0, sandboxes_started=2, sandboxes_retired=1, slots=1, sandboxes_live=1
        )


# ---------------------------------------------------------------------------------------------
# several backends


@pytest.mark.parametrize("size, small_share, big_share", [(None, 1, 2), (6, 2, 4)])
def test_slots_spread_over_backends_by_capacity(size, small_share, big_share):
    small, big = FakeBackend("small", capacity=1), FakeBackend("big", capacity=2)
    with outcome_pool([small, big], size=size) as pool:
        assert pool.size == small_share + big_share
        barrier = threading.Barrier(pool.size)  # every slot holds a task at once
        tasks = [MeetsOthers(str(i), barrier=barrier) for i in range(pool.size)]
        outcomes = finishes_within(PATIENCE_S, lambda: pool.map(tasks))
    assert sum(o.sandbox.startswith("small-") for o in outcomes) == small_share
    assert sum(o.sandbox.startswith("big-") for o in outcomes) == big_share
    assert (small.counts().started, big.counts().started) == (small_share, big_share)
    assert small.counts().live == big.counts().live == 0


@dataclass(frozen=True)
class AsksOnceBenched(Ask):
    """``Ask``, once *pool* has taken a backend out of rotation: until then it holds its (live) slot,
    so that the dead backend's slots, not a fast live one, take the waiting jobs and fail to start."""

    pool: SandboxPool | None = None

    def run(self, sandbox: Sandbox) -> Outcome:
        deadline = time.monotonic() + PATIENCE_S
        while self.pool is not None and self.pool.stats().backends_out_of_rotation == 0:
            if time.monotonic() > deadline:
                raise AssertionError("no backend left the rotation")
            time.sleep(0.005)
        return Ask.run(self, sandbox)


def test_a_backend_that_cannot_start_sandboxes_leaves_rotation_and_its_jobs_run_on_the_others():
    """The single-machine black hole: one dead host beside a live one ends with no infrastructure error."""
    dead, live = FakeBackend("dead", capacity=2, always_fails_to_start=True), FakeBackend("live", capacity=2)
    with outcome_pool([dead, live], retries=1) as pool:  # one attempt: a start failure there must not cost it
        tasks = [AsksOnceBenched(str(i), pool=pool) for i in range(40)]
        outcomes = finishes_within(PATIENCE_S, lambda: pool.map(tasks))
        stats = pool.stats()
    assert [o.infrastructure_error for o in outcomes] == [""] * 40
    assert all(o.sandbox.startswith("live-") for o in outcomes)
    assert stats.backends_out_of_rotation == 1 and stats.jobs == 40
    # Out of rotation after BENCH_AFTER_START_FAILURES failures in a row (each of its 2 slots may have
    # been starting one at that moment), not once per job.
    assert dead.counts().start_attempts <= pool_module.BENCH_AFTER_START_FAILURES + 1


def test_with_every_backend_out_of_rotation_jobs_end_as_infrastructure_errors():
    dead = [FakeBackend(f"dead{i}", capacity=1, always_fails_to_start=True) for i in range(2)]
    with outcome_pool(dead, retries=2) as pool:
        outcomes = finishes_within(PATIENCE_S, lambda: pool.map([Ask(str(i)) for i in range(6)]))
        assert pool.stats().backends_out_of_rotation == 2
    assert all("failed to start" in o.infrastructure_error for o in outcomes)


def test_a_backend_out_of_rotation_is_tried_again_after_its_cool_down(monkeypatch):
    monkeypatch.setattr(pool_module, "BENCH_COOL_DOWN_S", 0.2)
    flaky = FakeBackend("flaky", script=[FAILS_TO_START] * pool_module.BENCH_AFTER_START_FAILURES)
    held = Held("hold")  # keeps the steady backend's one slot busy, so the flaky one must take the rest
    with outcome_pool([flaky, FakeBackend("steady")]) as pool:
        first = pool.submit(held)
        assert held.started.wait(PATIENCE_S)
        later = [pool.submit(Ask(str(i))) for i in range(3)]
        outcomes = [result_of(reply) for reply in later]  # each waits out the cool-down, then runs on flaky
        held.release.set()
        assert result_of(first).sandbox.startswith("steady-")
        assert pool.stats().backends_out_of_rotation == 0
    assert all(o.sandbox.startswith("flaky-") for o in outcomes)


def test_a_pool_needs_a_backend():
    with pytest.raises(ValueError):
        SandboxPool([])


# ---------------------------------------------------------------------------------------------
# stats


def test_stats_count_jobs_failures_starts_retirements_and_live_sandboxes():
    backend = FakeBackend(script=[FAILS_TO_START, RETIRES_AFTER_FIRST_JOB, DIES_ON_FIRST_MESSAGE, DIES_ON_FIRST_MESSAGE, HEALTHY])
    with outcome_pool(backend, retries=2) as pool:
        assert pool.stats() == PoolStats(jobs=0, sandbox_failures=0, sandboxes_started=0, slots=1)

        def run(label: str) -> Outcome:
            return finishes_within(PATIENCE_S, lambda: pool.run(Ask(label)))

        outcomes = [run(label) for label in "abc"]
        stats = pool.stats()
    # a: start 1 fails, sandbox 2 runs it and retires.  b: sandboxes 3 and 4 die, so an
    # infrastructure error.  c: sandbox 5 runs it and stays up until close.
    assert [o.sandbox for o in outcomes] == ["fake-2", "", "fake-5"]
    assert "runner died" in outcomes[1].infrastructure_error
    assert stats == PoolStats(jobs=3, sandbox_failures=3, sandboxes_started=4, sandboxes_retired=1, slots=1, sandboxes_live=1)
    assert pool.stats().sandboxes_live == 0  # after close
    assert backend.counts() == FakeCounts(start_attempts=5, start_failures=1, started=4, closed=4, died=2)


# ---------------------------------------------------------------------------------------------
# the fake itself: what the tests above rely on


def test_fake_runner_answers_retires_times_out_dies_and_closes():
    backend = FakeBackend(script=[SandboxScript(dies_after_messages=2, retire_after_jobs=1)], responder=hang_on_request)
    sandbox = backend.start()
    sandbox.send(Hello())
    assert sandbox.recv(timeout=1.0) == Ready(PROTOCOL_VERSION, python_version="fake")
    job = job_named("x")
    sandbox.send(job)
    assert sandbox.recv(timeout=1.0) == Compiled(job.job_id, CompileStatus.OK, error="")
    assert sandbox.recv(timeout=1.0) == JobDone(job.job_id, stopped=False, retire_reason="fake runner asked to be replaced")
    assert sandbox.retire == ""  # set by whoever reads the JobDone, as with the real runners
    with pytest.raises(SandboxError, match="no message"):
        sandbox.recv(timeout=0.01)
    with pytest.raises(SandboxError, match="died"):
        sandbox.send(job_named("y"))  # its third message
    with pytest.raises(SandboxError, match="died"):
        sandbox.recv(timeout=1.0)
    sandbox.close()
    sandbox.close()
    assert backend.counts() == FakeCounts(start_attempts=1, start_failures=0, started=1, closed=1, died=1)
    hung = backend.start()
    hung.send(job_named("hang"))
    threading.Timer(0.05, hung.close).start()
    with pytest.raises(SandboxError, match="closed"):
        hung.recv(timeout=PATIENCE_S)  # a close from another thread ends a waiting recv
