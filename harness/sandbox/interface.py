"""The seam between the evaluator and whatever runs the runner: one sandbox = one runner process.

A ``SandboxBackend`` starts sandboxes (the Docker one starts a container per sandbox on one Docker
host; a pool may hold backends for several hosts).  A ``Sandbox`` exchanges the typed messages of
``sandbox_image.taco_runner.protocol`` with its runner.  Anything that goes wrong below this seam
raises ``SandboxError``: an infrastructure failure, which the pool retries on a fresh sandbox and
never scores as a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.errors import SandboxError
from sandbox_image.taco_runner.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    Hello,
    HostMessage,
    ProtocolError,
    Ready,
    RunnerMessage,
    decode_runner_message,
)

GREETING_TIMEOUT_S = 60.0  # a new runner's first answer (its imports, on a loaded host)


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandbox may use, whichever backend runs it."""

    memory_mb: int = 2048  # no swap on top
    pids: int = 256
    cpus: float = 1.0
    tmpfs_mb: int = 256  # /tmp
    shm_mb: int = 16  # /dev/shm


class Sandbox(Protocol):
    name: str
    retire: str  # non-empty once the runner asked to be replaced after its current job

    def send(self, message: HostMessage) -> None: ...

    def recv(self, timeout: float) -> RunnerMessage:
        """Next message from the runner; raise SandboxError when none comes within *timeout*."""
        ...

    def close(self) -> None: ...


class SandboxBackend(Protocol):
    name: str
    capacity: int  # how many sandboxes this backend should run at once

    def start(self) -> Sandbox: ...


class RunnerStream:
    """What the host reads from a runner's stdout: bytes in, in pieces of any size; runner messages
    out.  A frame that is not a runner message means the runner (or the channel) is broken."""

    def __init__(self, sandbox_name: str) -> None:
        self._sandbox_name = sandbox_name
        self._frames = FrameDecoder()

    def feed(self, data: bytes) -> None:
        self._frames.feed(data)

    def next_message(self) -> RunnerMessage | None:
        """The next complete message, or None until one has fully arrived."""
        try:
            wire = self._frames.next_object()
            return None if wire is None else decode_runner_message(wire)
        except ProtocolError as exc:
            raise SandboxError(f"{self._sandbox_name}: runner sent a malformed frame: {exc}") from exc


def greet(sandbox: Sandbox) -> Ready:
    """The first exchange with a freshly started runner: Hello, answered by a Ready of this protocol
    version (SandboxError otherwise: an old image or a broken runner)."""
    sandbox.send(Hello())
    reply = sandbox.recv(GREETING_TIMEOUT_S)
    if not isinstance(reply, Ready):
        raise SandboxError(f"{sandbox.name}: unexpected greeting {reply!r:.300}")
    if reply.protocol_version != PROTOCOL_VERSION:
        raise SandboxError(f"{sandbox.name}: runner speaks protocol {reply.protocol_version}, this harness {PROTOCOL_VERSION}")
    return reply
