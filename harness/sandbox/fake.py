"""An in-memory ``SandboxBackend`` and ``Sandbox`` for fast tests of what sits above the seam (the
pool's scheduling, retries and bookkeeping) without Docker or namespaces.

A fake sandbox is a runner that answers each host message with ``responder(message)``: the runner
messages it sends back (by default it greets, and ends every job at once).  Faults are scripted per
start: the n-th call of ``FakeBackend.start()`` follows the n-th ``SandboxScript`` of the backend's
script (then ``default``), so a test can say "the first sandbox fails to start, the second dies on its
first message, the third asks to be replaced after its first job".  Faults may also come from the
work itself: a responder that raises ``SandboxError`` kills its sandbox, and one that answers nothing
leaves the host waiting (a hung runner).  What a test may want to check afterwards is counted
(``FakeBackend.counts()``).

As with the real runners, asking to be replaced is a ``JobDone.retire_reason``; whoever reads it (in
the harness, ``run_job``) sets ``sandbox.retire``, which the pool acts on after the job.

It satisfies the ``Sandbox`` and ``SandboxBackend`` protocols (mypy checks it below), and nothing in it
sleeps unless told to: tests that use it run in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NoReturn

from harness.errors import SandboxError
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
    RunStdinJob,
)

if TYPE_CHECKING:
    from harness.sandbox.interface import Sandbox, SandboxBackend

# What a fake runner sends back for one host message; nothing: it never answers (recv times out).
# Raising SandboxError kills the sandbox, as a runner crashing on that message would.
Responder = Callable[[HostMessage], Sequence[RunnerMessage]]


def finish_every_job(message: HostMessage) -> list[RunnerMessage]:
    """The default runner: greets, and ends every job at once (compiled, no test run)."""
    if isinstance(message, Hello):
        return [Ready(PROTOCOL_VERSION, python_version="fake")]
    if isinstance(message, (RunStdinJob, RunCallJob)):
        return [Compiled(message.job_id, CompileStatus.OK, error=""), JobDone(message.job_id, stopped=False, retire_reason="")]
    return []  # StopJob: its job has already ended


@dataclass(frozen=True)
class SandboxScript:
    """What one started sandbox does."""

    fails_to_start: bool = False
    # The runner dies when it is sent a message after this many (0: on the first message).
    dies_after_messages: int | None = None
    # From its n-th job on, the runner's JobDone asks for the sandbox to be replaced.
    retire_after_jobs: int | None = None
    retire_reason: str = "fake runner asked to be replaced"


HEALTHY = SandboxScript()
FAILS_TO_START = SandboxScript(fails_to_start=True)
DIES_ON_FIRST_MESSAGE = SandboxScript(dies_after_messages=0)
RETIRES_AFTER_FIRST_JOB = SandboxScript(retire_after_jobs=1)


@dataclass(frozen=True)
class FakeCounts:
    """A snapshot of what a fake backend has done so far."""

    start_attempts: int  # calls of start(), failed ones included
    start_failures: int
    started: int  # sandboxes that came up
    closed: int  # sandboxes closed at least once (a second close is harmless, as with Docker)
    died: int  # sandboxes whose runner died (scripted, or the responder raised)

    @property
    def live(self) -> int:
        """Sandboxes up and not yet closed (a dead one counts until it is closed, as a crashed
        container stays until it is removed)."""
        return self.started - self.closed


class FakeSandbox:
    """One fake runner: ``send`` queues the responder's answer, ``recv`` hands it out."""

    def __init__(self, name: str, script: SandboxScript, responder: Responder, on_death: Callable[[], None]) -> None:
        self.name = name
        self.retire = ""
        self.script = script
        self._responder = responder
        self._on_death = on_death
        self._replies: deque[RunnerMessage] = deque()
        self._changed = threading.Condition()
        self.received: list[HostMessage] = []  # every message sent to it, in order
        self.jobs_done = 0
        self.dead = ""  # why the runner died; empty while it lives
        self.closed = False
        self.close_calls = 0

    def send(self, message: HostMessage) -> None:
        with self._changed:
            self._check_usable()
            dies_after = self.script.dies_after_messages
            if dies_after is not None and len(self.received) >= dies_after:
                self.received.append(message)
                self._die(f"{self.name}: runner died (scripted, on message {len(self.received)})")
            self.received.append(message)
            try:
                replies = list(self._responder(message))
            except SandboxError as exc:
                self._die(f"{self.name}: runner died: {exc}")
            for reply in replies:
                if isinstance(reply, JobDone):
                    self.jobs_done += 1
                    retire_after = self.script.retire_after_jobs
                    if retire_after is not None and self.jobs_done >= retire_after:
                        reply = replace(reply, retire_reason=self.script.retire_reason)
                self._replies.append(reply)
            self._changed.notify_all()

    def recv(self, timeout: float) -> RunnerMessage:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._check_usable()
                if self._replies:
                    return self._replies.popleft()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxError(f"{self.name}: no message from the runner within {timeout:g}s")
                self._changed.wait(left)

    def close(self) -> None:
        with self._changed:
            self.close_calls += 1
            self.closed = True
            self._changed.notify_all()  # a recv waiting in another thread fails now, as on a removed container

    def _check_usable(self) -> None:
        if self.closed:
            raise SandboxError(f"{self.name}: sandbox was closed")
        if self.dead:
            raise SandboxError(self.dead)

    def _die(self, reason: str) -> NoReturn:
        self.dead = reason
        self._on_death()
        self._changed.notify_all()
        raise SandboxError(reason)


class FakeBackend:
    """Starts ``FakeSandbox``es named ``<name>-<n>`` (n: the start attempt, from 1) following *script*.

    *always_fails_to_start* makes every start fail (a host whose daemon is gone).  *start_gate*, when
    given, holds every start until it is set (or fails it after *start_gate_timeout_s*), so that a
    test can see how many starts are under way at once (``wait_for_starts_in_progress``)."""

    def __init__(
        self,
        name: str = "fake",
        capacity: int = 1,
        script: Sequence[SandboxScript] = (),
        default: SandboxScript = HEALTHY,
        responder: Responder = finish_every_job,
        always_fails_to_start: bool = False,
        start_gate: threading.Event | None = None,
        start_gate_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.default = default
        self.responder = responder
        self.always_fails_to_start = always_fails_to_start
        self.start_gate = start_gate
        self.start_gate_timeout_s = start_gate_timeout_s
        self._script = list(script)
        self._lock = threading.Condition()
        self._start_attempts = 0
        self._start_failures = 0
        self._starts_in_progress = 0
        self._died = 0
        self.sandboxes: list[FakeSandbox] = []  # every sandbox that came up, in order

    def start(self) -> FakeSandbox:
        with self._lock:
            self._start_attempts += 1
            attempt = self._start_attempts
            script = self._script[attempt - 1] if attempt <= len(self._script) else self.default
            self._starts_in_progress += 1
            self._lock.notify_all()
        try:
            if self.start_gate is not None and not self.start_gate.wait(self.start_gate_timeout_s):
                raise SandboxError(f"{self.name}: start {attempt} held past the gate's timeout")
            if self.always_fails_to_start or script.fails_to_start:
                raise SandboxError(f"{self.name}: sandbox {attempt} failed to start (scripted)")
        except SandboxError:
            with self._lock:
                self._start_failures += 1
                self._starts_in_progress -= 1
                self._lock.notify_all()
            raise
        sandbox = FakeSandbox(f"{self.name}-{attempt}", script, self.responder, self._count_death)
        with self._lock:
            self.sandboxes.append(sandbox)
            self._starts_in_progress -= 1
            self._lock.notify_all()
        return sandbox

    def counts(self) -> FakeCounts:
        with self._lock:
            return FakeCounts(
                start_attempts=self._start_attempts,
                start_failures=self._start_failures,
                started=len(self.sandboxes),
                closed=sum(s.closed for s in self.sandboxes),
                died=self._died,
            )

    def wait_for_starts_in_progress(self, count: int, timeout: float = 5.0) -> bool:
        """True once *count* starts are under way at the same time (held by the start gate)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._starts_in_progress >= count, timeout)

    def _count_death(self) -> None:
        with self._lock:
            self._died += 1


if TYPE_CHECKING:  # mypy checks that the fakes fit the seam they stand in for
    _sandbox: Sandbox = FakeSandbox("check", HEALTHY, finish_every_job, lambda: None)
    _backend: SandboxBackend = FakeBackend()
