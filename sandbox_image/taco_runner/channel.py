"""The runner's end of its connection to the host: protocol frames in on fd 0, out on fd 1."""

from __future__ import annotations

import os
import select
from dataclasses import dataclass
from typing import TypeAlias

from .protocol import FrameDecoder, HostMessage, ProtocolError, RunnerMessage, decode_host_message, encode_frame

READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Garbled:
    """A frame from the host that is not a host message (the runner answers NotUnderstood)."""

    reason: str


Received: TypeAlias = HostMessage | Garbled


class HostChannel:
    """Typed messages over a pair of file descriptors.  Messages that arrive while a job runs and
    are not for it wait in a backlog, and are taken before anything new."""

    def __init__(self, read_fd: int = 0, write_fd: int = 1) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._frames = FrameDecoder()
        self._backlog: list[Received] = []

    def send(self, message: RunnerMessage) -> None:
        view = memoryview(encode_frame(message))
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
