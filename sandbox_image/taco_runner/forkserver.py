"""The fork server: the one process that forks programs, so that the runner never forks while it
serves a job.

Why.  A fork makes every writable page of the process that forks copy-on-write, in it as in the
child, until one of them writes the page.  The runner's own work around each test (watching the
run, reporting it, cleaning up) wrote some 170 such pages per test, each one a page fault (1-3 us
here), and its heap grew with each job, which makes every fork dearer: together a third of what a
trivial test cost.  The fork server is forked from the warm runner once, before the first job
(after the imports and ``gc.freeze``), so it holds the heap every program starts from; per test it
only receives a request, forks and waits, writing few pages; the runner, which no longer forks,
writes to pages of its own.

Roles.  The runner still owns every run: it makes the child's descriptors, feeds stdin, reads
stdout and stderr, enforces the deadline and, past it, kills the program itself
(``hygiene.kill_program``).  The fork server

* forks a child per request, with the descriptors the runner passes along (SCM_RIGHTS) and the body
  the request names (a stdin run, or a sample's checker process), and reports its pid;
* for a run, waits for the child and reports its wait status, and whether any other program process
  was alive when it ended: the server is their child subreaper, so every process a program starts is
  its descendant, and none left means nothing to sweep;
* on request, sweeps: kills every process of the sandbox but itself and the runner (``kill(-1)``, as
  the runner did when it forked) and reaps them all (``hygiene.sweep_descendants``).

It runs as root like the runner, is not dumpable, and has no signal handlers: programs (uid 65534)
can neither signal nor trace it.  It blocks only on its socket and on its own children.  When it is
gone (its socket ends), the runner stops (``ForkServerLost``): a test it could not run is never
reported, and the host retries the job on a fresh sandbox.

Messages travel on one Unix stream socket pair, in fixed layouts: a request is REQUEST (kind, flags,
timeout, payload size) then its payload, a fork's descriptors riding with its REQUEST; a reply is
REPLY (kind, alone, pid, value).
"""

from __future__ import annotations

import _socket  # the C module alone: socket.py would add selectors and array to the heap programs start from
import marshal
import os
import struct
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import NoReturn

from .hygiene import sweep_descendants
from .isolation import IN_SANDBOX, hard_exit, set_child_subreaper, set_dumpable

REQUEST = struct.Struct("=BBxxdI")  # kind, flags, timeout (s), payload bytes
REPLY = struct.Struct("=BBxxii")  # kind, alone, pid, value (a wait status, or an errno)
MAX_FDS = 8
_FDS_SPACE = _socket.CMSG_SPACE(MAX_FDS * 4)

# Request kinds (a wire format, so plain numbers).
_LOAD = 1  # payload: marshal of the program every following run executes
_RUN = 2  # fork a run of the loaded program; flags: RUN_FRESH, RUN_ON_PIPES; descriptors: its fds 0, 1, 2
_CHECKER = 3  # fork a checker; payload: marshal of its arguments; descriptors: as its body wants them
_SWEEP = 4  # kill and reap every program process
# Reply kinds.
_READY = 1  # the server runs (once, at start)
_STARTED = 2  # pid: the child forked
_FAILED = 3  # value: the errno of a fork that failed
_EXITED = 4  # pid, value: its wait status; alone: no other program process was alive
_SWEPT = 5

RUN_FRESH = 1  # a new interpreter per run (the official procedure, for benchmarks and fidelity checks)
RUN_ON_PIPES = 2  # the run's fds 0-2 are all pipes

# What a forked child runs: (descriptors, flags, timeout, argument) -> never returns.  A run's argument
# is the loaded program, a checker's the arguments of its request.
ChildBody = Callable[[Sequence[int], int, float, object], NoReturn]
# What every run of a job executes: its source, the source compiled ahead (or None), its working directory.
LoadedProgram = tuple[str, "CodeType | None", str]


class ForkServerLost(RuntimeError):
    """The fork server has gone: nothing more can run in this sandbox."""


@dataclass(frozen=True, slots=True)
class RunExit:
    pid: int
    wait_status: int
    alone: bool  # no other program process was alive when the run ended: nothing to sweep


class ForkServer:
    """The runner's end: requests out, replies in, one at a time in order."""

    def __init__(self, pid: int, sock: _socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self.fd = sock.fileno()  # readable when a reply has come
        self._replies = bytearray()
        self._loaded: LoadedProgram | None = None
        self._run_pid: int | None = None  # the run in progress, once its STARTED has been read

    @classmethod
    def start(cls, run_body: ChildBody, checker_body: ChildBody) -> ForkServer:
        """Fork the server from this (warm) process; returns once it serves."""
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                _serve(theirs, run_body, checker_body)
            except BaseException:
                traceback.print_exc()
            finally:
                hard_exit(70)
        theirs.close()
        server = cls(pid, ours)
        kind, _, _, _ = server._reply()
        if kind != _READY:
            raise ForkServerLost("the fork server did not start")
        return server

    # -- runs -------------------------------------------------------------------------------------

    def start_run(self, program: LoadedProgram, fds: Sequence[int], timeout: float, flags: int) -> None:
        """Fork a run of *program* with *fds* as its 0, 1 and 2; its pid and exit come as replies
        (``run_pid``, ``poll_exit``, ``run_exit``)."""
        loaded = self._loaded
        if loaded is None or any(a is not b for a, b in zip(program, loaded)):
            self._send(_LOAD, 0, 0.0, marshal.dumps(program))
            self._loaded = program
        self._send(_RUN, flags, timeout, b"", fds)

    def run_pid(self) -> int:
        """The pid of the run in progress (waits for the server to have forked it)."""
        if self._run_pid is None:
            self._run_pid = self._started(self._reply())
        return self._run_pid

    def poll_exit(self) -> RunExit | None:
        """Once select has found the socket readable: the run's exit, if it has come."""
        chunk = os.read(self.fd, 4096)
        if not chunk:
            raise ForkServerLost("the fork server has gone")
        self._replies += chunk
        if self._run_pid is None and len(self._replies) >= REPLY.size:
            self._run_pid = self._started(self._take())
        if self._run_pid is not None and len(self._replies) >= REPLY.size:
            return self._exited(self._take())
        return None

    def run_exit(self) -> RunExit:
        """The run's exit (waits for it: call once the program is dead or dying)."""
        self.run_pid()
        return self._exited(self._reply())

    # -- checkers and sweeps ----------------------------------------------------------------------

    def start_checker(self, arguments: tuple[str | int | tuple[str, str] | None, ...], fds: Sequence[int]) -> int:
        """Fork a checker process running the checker body on *arguments* and *fds*; its pid."""
        self._send(_CHECKER, 0, 0.0, marshal.dumps(arguments), fds)
        return self._started(self._reply())

    def sweep(self) -> None:
        """Kill and reap every program process (returns when they are all gone)."""
        self._send(_SWEEP, 0, 0.0, b"")
        kind, _, _, _ = self._reply()
        if kind != _SWEPT:
            raise ForkServerLost(f"the fork server answered a sweep with {kind}")

    # -- the wire ---------------------------------------------------------------------------------

    def _send(self, kind: int, flags: int, timeout: float, payload: bytes, fds: Sequence[int] = ()) -> None:
        data = REQUEST.pack(kind, flags, timeout, len(payload)) + payload
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        try:
            sent = self._sock.sendmsg([data], rights)
            while sent < len(data):
                sent += self._sock.send(data[sent:])
        except OSError as exc:
            raise ForkServerLost(f"the fork server has gone ({exc})") from None

    def _reply(self) -> tuple[int, int, int, int]:
        while len(self._replies) < REPLY.size:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise ForkServerLost("the fork server has gone")
            self._replies += chunk
        return self._take()

    def _take(self) -> tuple[int, int, int, int]:
        reply = REPLY.unpack_from(self._replies)
        del self._replies[: REPLY.size]
        return reply

    @staticmethod
    def _started(reply: tuple[int, int, int, int]) -> int:
        kind, _, pid, value = reply
        if kind == _FAILED:
            raise OSError(value, f"fork: {os.strerror(value)}")
        if kind != _STARTED:
            raise ForkServerLost(f"the fork server answered a fork with {kind}")
        return pid

    def _exited(self, reply: tuple[int, int, int, int]) -> RunExit:
        kind, alone, pid, status = reply
        if kind != _EXITED or pid != self._run_pid:
            raise ForkServerLost(f"the fork server answered a run with {kind}")
        self._run_pid = None
        return RunExit(pid, status, bool(alone))


# -- the server ---------------------------------------------------------------------------------


def _serve(sock: _socket.socket, run_body: ChildBody, checker_body: ChildBody) -> NoReturn:
    """The server's loop.  One function with local names, on purpose: every page it writes between
    two forks (reference counts included) costs it a page fault, so it touches as little as it can."""
    set_dumpable(False)  # inherited from the runner already; said again where it matters
    if not set_child_subreaper():
        raise OSError("PR_SET_CHILD_SUBREAPER failed")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the runner's channel to the host is the runner's alone
    os.dup2(devnull, 1)
    os.close(devnull)
    fd = sock.fileno()
    recvmsg, unpack, pack = sock.recvmsg, REQUEST.unpack, REPLY.pack
    fork, close, write, waitpid, loads = os.fork, os.close, os.write, os.waitpid, marshal.loads
    header, fds_space = REQUEST.size, _FDS_SPACE
    program: object = None
    groups: list[int] = []  # outside a sandbox: the process groups of the children, for the sweep
    write(fd, pack(_READY, 0, os.getpid(), 0))
    while True:
        try:
            head, ancillary, _, _ = recvmsg(header, fds_space)
        except ConnectionResetError:
            head, ancillary = b"", []
        if len(head) < header:
            if not head:
                hard_exit(0)  # the runner has gone
            head += _read_exactly(fd, header - len(head))
        kind, flags, timeout, size = unpack(head)
        fds = memoryview(ancillary[0][2]).cast("i").tolist() if ancillary else ()
        payload = _read_exactly(fd, size) if size else b""
        if kind in (_RUN, _CHECKER):
            body, argument = (run_body, program) if kind == _RUN else (checker_body, loads(payload))
            try:
                pid = fork()
            except OSError as exc:
                for child_fd in fds:
                    close(child_fd)
                write(fd, pack(_FAILED, 0, 0, exc.errno or 0))
                continue
            if pid == 0:
                try:
                    body(fds, flags, timeout, argument)
                finally:
                    hard_exit(1)  # a body never returns
            for child_fd in fds:
                close(child_fd)
            if not IN_SANDBOX:
                groups.append(pid)
            write(fd, pack(_STARTED, 0, pid, 0))
            if kind == _RUN:
                _, status = waitpid(pid, 0)
                write(fd, pack(_EXITED, _alone(), pid, status))
        elif kind == _SWEEP:
            sweep_descendants(groups)
            groups.clear()
            write(fd, pack(_SWEPT, 1, 0, 0))
        elif kind == _LOAD:
            program = loads(payload)


def _alone() -> bool:
    """Whether no child is left (zombies are reaped on the way).  As the subreaper of every program
    process, and called once the run has been reaped: every one of its processes still alive has a
    live parent chain up to here, so no child means none is left."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return False
        except ChildProcessError:
            return True


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            hard_exit(0)  # the runner has gone
        data += chunk
    return bytes(data)
