"""The seam between the evaluator and whatever runs the runner: one sandbox = one runner process.

A ``SandboxBackend`` starts sandboxes (the Docker one starts a container per sandbox on one Docker
host; a pool may hold backends for several hosts).  A ``Sandbox`` exchanges framed messages with its
runner.  Anything that goes wrong below this seam raises ``SandboxError``: an infrastructure
failure, which the pool retries on a fresh sandbox and never scores as a wrong answer.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Protocol

from harness.errors import SandboxError


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

    def send(self, message: dict) -> None: ...

    def recv(self, timeout: float) -> dict:
        """Next message from the runner; raise SandboxError when none comes within *timeout*."""
        ...

    def close(self) -> None: ...


class SandboxBackend(Protocol):
    name: str
    capacity: int  # how many sandboxes this backend should run at once

    def start(self) -> Sandbox: ...


def encode_frame(message: dict) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload


class FrameDecoder:
    """Reassembles length-prefixed JSON frames from a byte stream."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> dict | None:
        if len(self._buf) < 4:
            return None
        (size,) = struct.unpack(">I", self._buf[:4])
        if len(self._buf) < 4 + size:
            return None
        payload = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise SandboxError(f"runner sent a malformed frame: {exc}") from exc
