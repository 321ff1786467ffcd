"""The runner's end of its connection to the host: protocol frames in on fd 0, out on fd 1."""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from typing import TypeAlias

from .protocol import FrameDecoder, HostMessage, ProtocolError, RunnerMessage, decode_host_message, encode_frame

READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Garbled:
    """A frame from the host that is not a host message (the runner answers NotUnderstood)."""

    reason: str


Received: TypeAlias = HostMessage | Garbled


# How long a message sent with send_soon may wait for others to travel with it.  Each write to the
# host wakes the processes that relay it (in Docker: containerd-shim, dockerd, then the host's reader),
# and encoding a message touches pages of the runner that each fork has made copy-on-write: a trivial
# test takes about a millisecond, so per-test writes and encodings cost a large part of a test.
BATCH_WINDOW_S = 0.005
BATCH_MESSAGES = 256  # pending messages beyond this go out at once


class HostChannel:
    """Typed messages over a pair of file descriptors.  Messages that arrive while a job runs and
    are not for it wait in a backlog, and are taken before anything new.

    Outgoing messages go out at once (``send``), or within BATCH_WINDOW_S, several frames encoded and
    written together (``send_soon``): the frames and their order are the same either way."""

    def __init__(self, read_fd: int = 0, write_fd: int = 1) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._frames = FrameDecoder()
        self._backlog: list[Received] = []
        self._pending: list[RunnerMessage] = []  # not written yet, in order
        self._due: float | None = None  # when the pending messages must be written by

    def send(self, message: RunnerMessage) -> None:
        """Write *message* now (after anything pending, in the same write)."""
        self._pending.append(message)
        self.flush()

    def send_soon(self, message: RunnerMessage) -> None:
        """Write *message* within BATCH_WINDOW_S: with the next ``send``, or at ``flush_due`` (the
        caller's waits end by then and call ``flush``)."""
        self._pending.append(message)
        now = time.monotonic()
        if self._due is None:
            self._due = now + BATCH_WINDOW_S
        if now >= self._due or len(self._pending) >= BATCH_MESSAGES:
            self.flush()

    def flush_due(self) -> float | None:
        """The time.monotonic() by which ``flush`` must be called; None when nothing is pending."""
        return self._due

    def flush(self) -> None:
        """Encode and write every pending message."""
        view = memoryview(b"".join([encode_frame(message) for message in self._pending]))
        self._pending.clear()
        self._due = None
        while view:
            view = view[os.write(self._write_fd, view) :]

    def next_message(self) -> Received | None:
        """The next message (the backlog's first); blocks.  None when the host has gone (EOF)."""
        if self._backlog:
            return self._backlog.pop(0)
        while True:
            message = self._decoded()
            if message is not None:
                return message
            chunk = os.read(self._read_fd, READ_CHUNK)
            if not chunk:
                return None
            self._frames.feed(chunk)

    def poll(self) -> Received | None:
        """A new message if one has already arrived, else None (never blocks; skips the backlog)."""
        message = self._decoded()
        if message is not None:
            return message
        while select.select([self._read_fd], [], [], 0)[0]:
            chunk = os.read(self._read_fd, READ_CHUNK)
            if not chunk:
                return None
            self._frames.feed(chunk)
            message = self._decoded()
            if message is not None:
                return message
        return None

    def defer(self, message: Received) -> None:
        """Keep *message* for next_message (it arrived during a job that it is not for)."""
        self._backlog.append(message)

    def _decoded(self) -> Received | None:
        try:
            wire = self._frames.next_object()
            return None if wire is None else decode_host_message(wire)
        except ProtocolError as exc:
            return Garbled(str(exc))
