"""A pool of long-lived sandboxes that runs jobs concurrently and survives sandbox failures.

Each slot is a thread that owns one sandbox at a time (Docker's attach sockets are blocking and
the work is in the containers, so threads are enough).  Slots are spread over the backends, so a
pool can span several Docker hosts.  A job whose sandbox fails is retried on a fresh sandbox; after
``retries`` failed attempts it is reported as an infrastructure error, never as a verdict.

A backend that keeps failing to start sandboxes (a Docker host that died) is taken out of rotation:
after ``BENCH_AFTER_START_FAILURES`` failed starts in a row its slots stop taking jobs, and a job
whose sandbox could not start there goes back to the queue for the other backends' slots, without
losing an attempt (the job never ran).  After a cool-down (doubling each time) one of its slots tries
again.  Only when every backend is out of rotation do failed starts cost jobs their attempts, so a
pool with one dead host and one live one ends with no infrastructure error.

The pool knows nothing of TACO: a job is any ``SandboxTask``, which knows how to run itself on a
sandbox and what its result is when no sandbox could run it.  The evaluation stage's TACO job is
one; the tests use others.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from harness.errors import SandboxError
from harness.sandbox.interface import Sandbox, SandboxBackend

log = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class SandboxTask(Protocol[R_co]):
    """A unit of work the pool can run: on a sandbox, or, when every attempt failed, as a result
    that says so (an infrastructure error, never a verdict on the work)."""

    def run(self, sandbox: Sandbox) -> R_co:
        """Run on *sandbox*; raise ``SandboxError`` (or let a backend error through) when the
        sandbox fails, so that the pool retries on a fresh one."""
        ...

    def infrastructure_error(self, reason: str) -> R_co:
        """The result to deliver when no sandbox could run this task."""
        ...


# Failed sandbox starts in a row after which a backend is taken out of rotation, and its first cool-down.
BENCH_AFTER_START_FAILURES = 3
BENCH_COOL_DOWN_S = 30.0
_BENCH_COOL_DOWN_MAX_S = 600.0


@dataclass(frozen=True)
class HostStats:
    """Hosts of an execution service that spans machines (``harness.cluster``); None for a local pool."""

    up: int  # hosts serving jobs when the stats were taken
    lost: int  # hosts that died during the run (their jobs in flight were re-queued)
    refused: int = 0  # hosts whose sandbox identity differs from the driver's: never used
    requeued: int = 0  # jobs sent again because their host died or failed them (not sandbox failures)


@dataclass(frozen=True)
class PoolStats:
    jobs: int
    sandbox_failures: int
    sandboxes_started: int
    sandboxes_retired: int = 0  # replaced at the runner's request after a job (not failures)
    slots: int = 0  # sandboxes the pool runs at once
    sandboxes_live: int = 0  # sandboxes up when the stats were taken
    backends_out_of_rotation: int = 0  # backends that kept failing to start sandboxes, when the stats were taken
    hosts: HostStats | None = None


class _BackendHealth:
    """Whether a backend's sandboxes start: failed starts in a row, and until when it is out of rotation."""

    __slots__ = ("cool_down_s", "failures_in_a_row", "out_until")

    def __init__(self) -> None:
        self.failures_in_a_row = 0
        self.out_until = 0.0  # monotonic time; out of rotation while now < out_until
        self.cool_down_s = BENCH_COOL_DOWN_S

    def out(self, now: float) -> bool:
        return now < self.out_until


class _Drained(Exception):
    """The pool is closed and no job is left for a slot to end."""


class _StartFailed(Exception):
    """A sandbox could not be started (as opposed to one that failed while running a job)."""


class SandboxPool(Generic[R]):
    def __init__(self, backends: SandboxBackend | Sequence[SandboxBackend], size: int | None = None, retries: int = 3):
        self.backends = [backends] if not isinstance(backends, Sequence) else list(backends)
        if not self.backends:
            raise ValueError("a pool needs at least one backend")
        capacity = sum(b.capacity for b in self.backends)
        self.size = size or capacity
        self.retries = retries
        # (priority, arrival, job, deliver, attempts failed): lower priority values run first, ties in
        # arrival order.  A job handed back by a slot whose backend cannot start sandboxes keeps its place.
        self._waiting: list[tuple[float, int, SandboxTask[R], Callable[[R], None], int]] = []
        # Slots asked by warm_up to start their sandbox.  Addressed to each slot: a shared "start one"
        # token could be taken twice by one slot whose start is quick (or fails fast), leaving another
        # slot cold.
        self._warm_wanted: set[int] = set()
        self._work = threading.Condition()  # guards _waiting, _warm_wanted and _health; slots wait on it
        self._arrivals = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        self._sandboxes: dict[int, Sandbox] = {}
        self._health = {id(b): _BackendHealth() for b in self.backends}
        self._failures = 0
        self._started = 0
        self._retired = 0
        self._done = 0
        # Slot i runs on backend i mod len(backends), weighted by capacity.
        plan = [b for b in self.backends for _ in range(b.capacity)] or self.backends
        self._threads = [
            threading.Thread(target=self._slot, args=(i, plan[i % len(plan)]), name=f"sandbox-slot-{i}", daemon=True)
            for i in range(self.size)
        ]
        for thread in self._threads:
            thread.start()

    # -- public API ------------------------------------------------------------------------
    def submit(self, job: SandboxTask[R]) -> queue.Queue[R]:
        """Queue *job*; its result arrives on the returned queue."""
        reply: queue.Queue[R] = queue.Queue(maxsize=1)
        self._enqueue(job, lambda result: reply.put(result))
        return reply

    def submit_with_callback(self, job: SandboxTask[R], deliver: Callable[[R], None], priority: float = 0.0) -> None:
        """Queue *job*; ``deliver(result)`` is called from a pool thread when it finishes.  For
        callers that feed jobs as they appear (``harness run``) and must not block on each one.
        Of the jobs waiting, the lowest *priority* runs first (then the earliest queued)."""
        self._enqueue(job, deliver, priority)

    def warm_up(self) -> None:
        """Start the sandboxes now rather than at the first jobs (for callers whose jobs trickle in
        later, such as ``harness run`` while the model loads).  A sandbox that fails to start here
        is simply started again by the job that needs it."""
        with self._work:
            if self._closed:
                raise RuntimeError("pool is closed")
            self._warm_wanted.update(range(self.size))
            self._work.notify_all()

    def run(self, job: SandboxTask[R]) -> R:
        return self.submit(job).get()

    def map_unordered(self, jobs: Iterable[SandboxTask[R]]) -> Iterator[tuple[int, R]]:
        """Run all *jobs* concurrently; yield (index, result) as each finishes."""
        results: queue.Queue[tuple[int, R]] = queue.Queue()

        def deliver_as(index: int) -> Callable[[R], None]:
            return lambda result: results.put((index, result))

        count = 0
        for index, job in enumerate(jobs):
            self._enqueue(job, deliver_as(index))
            count += 1
        for _ in range(count):
            yield results.get()

    def map(self, jobs: Iterable[SandboxTask[R]]) -> list[R]:
        """Run all *jobs* concurrently; their results in the order of *jobs*."""
        indexed = dict(self.map_unordered(jobs))
        return [indexed[index] for index in range(len(indexed))]

    def stats(self) -> PoolStats:
        now = time.monotonic()
        with self._work:
            out = sum(health.out(now) for health in self._health.values())
        with self._lock:
            return PoolStats(
                jobs=self._done,
                sandbox_failures=self._failures,
                sandboxes_started=self._started,
                sandboxes_retired=self._retired,
                slots=self.size,
                sandboxes_live=len(self._sandboxes),
                backends_out_of_rotation=out,
            )

    def close(self) -> None:
        """Stop all slots and remove every sandbox (safe to call twice, and from Ctrl-C handling)."""
        with self._work:
            if self._closed:
                return
            # Slots end each queued job as an infrastructure error, then stop.
            self._closed = True
            self._warm_wanted.clear()
            self._work.notify_all()
        with self._lock:
            sandboxes = list(self._sandboxes.values())
            self._sandboxes.clear()
        for sandbox in sandboxes:  # running jobs see their sandbox vanish and end
            _close_quietly(sandbox)
        for thread in self._threads:
            thread.join(timeout=30)

    def __enter__(self) -> SandboxPool[R]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _enqueue(self, job: SandboxTask[R], deliver: Callable[[R], None], priority: float = 0.0) -> None:
        with self._work:
            if self._closed:
                raise RuntimeError("pool is closed")
            heapq.heappush(self._waiting, (priority, next(self._arrivals), job, deliver, 0))
            self._work.notify()

    def _in_rotation(self, backend: SandboxBackend, now: float) -> bool:
        """Whether *backend*'s slots take jobs (under ``_work``): yes unless it is out of rotation
        while another backend is not (with every backend out, jobs must still end somewhere)."""
        if not self._health[id(backend)].out(now):
            return True
        return all(health.out(now) for health in self._health.values())

    def _elsewhere(self, backend: SandboxBackend, now: float) -> bool:
        """Whether a backend other than *backend* is in rotation (under ``_work``)."""
        return any(id(b) != id(backend) and not self._health[id(b)].out(now) for b in self.backends)

    def _start(self, slot: int, backend: SandboxBackend) -> Sandbox:
        try:
            sandbox = backend.start()
        except Exception as exc:
            with self._work:
                health = self._health[id(backend)]
                health.failures_in_a_row += 1
                if health.failures_in_a_row >= BENCH_AFTER_START_FAILURES and not health.out(time.monotonic()):
                    log.warning(
                        "backend %s failed to start %d sandboxes in a row: out of rotation for %.0fs",
                        backend.name, health.failures_in_a_row, health.cool_down_s,
                    )  # fmt: skip
                    health.out_until = time.monotonic() + health.cool_down_s
                    health.cool_down_s = min(2 * health.cool_down_s, _BENCH_COOL_DOWN_MAX_S)
                    self._work.notify_all()  # slots of the other backends take its jobs
            raise _StartFailed(str(exc)) from exc
        with self._work:
            health = self._health[id(backend)]
            health.failures_in_a_row = 0
            health.cool_down_s = BENCH_COOL_DOWN_S
        with self._lock:
            self._started += 1
            self._sandboxes[slot] = sandbox
        return sandbox

    def _next_work(
        self, slot: int, backend: SandboxBackend
    ) -> tuple[float, int, SandboxTask[R], Callable[[R], None], int] | None:
        """Wait for a job this slot may take, or a warm-up request (None); _Drained once closed with no job left."""
        with self._work:
            while True:
                now = time.monotonic()
                if slot in self._warm_wanted:  # before jobs, as a job would start it anyway
                    self._warm_wanted.discard(slot)
                    return None
                if self._waiting and (self._closed or self._in_rotation(backend, now)):
                    return heapq.heappop(self._waiting)
                if self._closed:
                    raise _Drained
                # Out of rotation: look again when the cool-down ends (or when woken).
                health = self._health[id(backend)]
                self._work.wait(timeout=max(0.05, health.out_until - now) if health.out(now) else None)

    def _slot(self, slot: int, backend: SandboxBackend) -> None:
        sandbox: Sandbox | None = None
        try:
            while True:
                try:
                    work = self._next_work(slot, backend)
                except _Drained:
                    return  # closed, and no job left to end
                if work is None:  # warm-up
                    if sandbox is None and not self._closed:
                        with self._work:
                            skip = self._health[id(backend)].out(time.monotonic())
                        if not skip:
                            try:
                                sandbox = self._start(slot, backend)
                            except _StartFailed as exc:  # the next job retries on a fresh one
                                log.warning("sandbox failed to start while warming up: %s", exc)
                    continue
                priority, arrival, job, deliver, attempts = work
                ran: list[R] = []  # the job's result once it ran (which may legitimately be None)
                error = ""
                handed_back = False
                while attempts < self.retries and not self._closed:
                    try:
                        if sandbox is None:
                            sandbox = self._start(slot, backend)
                        ran.append(job.run(sandbox))
                        if getattr(sandbox, "retire", ""):
                            log.info("replacing sandbox %s: %s", sandbox.name, sandbox.retire)
                            with self._lock:
                                self._retired += 1
                                self._sandboxes.pop(slot, None)
                            _close_quietly(sandbox)
                            sandbox = None
                        break
                    except _StartFailed as exc:
                        error = str(exc)
                        log.warning("sandbox failed to start on %s: %s", backend.name, exc)
                        with self._lock:
                            self._failures += 1
                        with self._work:
                            if self._elsewhere(backend, time.monotonic()) and not self._closed:
                                # The job never ran: it goes back, attempts intact, for a slot whose
                                # backend starts sandboxes.
                                heapq.heappush(self._waiting, (priority, arrival, job, deliver, attempts))
                                self._work.notify_all()
                                handed_back = True
                        if handed_back:
                            break
                        attempts += 1
                    except Exception as exc:  # SandboxError, or a daemon/API hiccup below it
                        error = str(exc)
                        if not isinstance(exc, SandboxError):
                            log.exception("unexpected error while running a job")
                        log.warning("sandbox failure (retrying on a fresh sandbox): %s", exc)
                        with self._lock:
                            self._failures += 1
                            self._sandboxes.pop(slot, None)
                        if sandbox is not None:
                            _close_quietly(sandbox)
                        sandbox = None
                        attempts += 1
                if handed_back:
                    continue
                result = ran[0] if ran else job.infrastructure_error(error or "pool closed")
                with self._lock:
                    self._done += 1
                deliver(result)
        finally:
            if sandbox is not None:
                with self._lock:
                    self._sandboxes.pop(slot, None)
                _close_quietly(sandbox)


def _close_quietly(sandbox: Sandbox) -> None:
    try:
        sandbox.close()
    except Exception as exc:  # removal problems must not mask the real outcome
        log.warning("could not remove sandbox %s: %s", getattr(sandbox, "name", "?"), exc)
