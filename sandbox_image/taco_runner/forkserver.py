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

Messages travel in fixed layouts.  Requests, on a Unix stream socket pair: REQUEST (kind, flags,
timeout, payload size) then its payload, a fork's descriptors riding with its REQUEST.  Replies on
that socket: REPLY (kind, alone, pid, value), for a run its end.  Each fork's pid (or -errno) goes
on a pipe of its own, PID, which the runner reads when it needs it: a run's start then wakes nobody,
and the runner, waiting for the run's end, is woken once.
"""

from __future__ import annotations

import _socket  # the C module alone: socket.py would add selectors and array to the heap programs start from
import errno
import marshal
import os
import struct
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

from .hygiene import sweep_descendants
from .isolation import IN_SANDBOX, hard_exit, set_child_subreaper, set_dumpable, take_program_groups

REQUEST = struct.Struct("=BBxxdI")  # kind, flags, timeout (s), payload bytes
REPLY = struct.Struct("=BBxxii")  # kind, alone, pid, value (a wait status, or an errno)
PID = struct.Struct("=i")  # a forked child's pid, or -errno when the fork failed
MAX_FDS = 8
_FDS_SPACE = _socket.CMSG_SPACE(MAX_FDS * 4)

# Request kinds (a wire format, so plain numbers).
_LOAD = 1  # payload: marshal of the program every following run executes
_RUN = 2  # fork a run of the loaded program; flags: RUN_FRESH, RUN_ON_PIPES; descriptors: its fds 0, 1, 2
_CHECKER = 3  # fork a checker; payload: marshal of its arguments; descriptors: as its body wants them
_SWEEP = 4  # kill and reap every program process
# Reply kinds.
_READY = 1  # the server runs (once, at start)
_FAILED = 3  # value: the errno of a run's fork that failed
_EXITED = 4  # pid, value: its wait status; alone: no other program process was alive
_SWEPT = 5

RUN_FRESH = 1  # a new interpreter per run (the official procedure, for benchmarks and fidelity checks)
RUN_ON_PIPES = 2  # the run's fds 0-2 are all pipes

# What a forked child runs: (descriptors, flags, timeout, argument) -> never returns.  A run's argument
# is the loaded program, a checker's the arguments of its request.
ChildBody = Callable[[Sequence[int], int, float, object], NoReturn]
# What every run of a program gets (its body unpacks it), sent to the server once: marshallable values.
LoadedProgram: TypeAlias = tuple[Any, ...]


class ForkServerLost(RuntimeError):
    """The fork server has gone: nothing more can run in this sandbox."""


@dataclass(frozen=True, slots=True)
class RunExit:
    pid: int
    wait_status: int
    alone: bool  # no other program process was alive when the run ended: nothing to sweep


class ForkServer:
    """The runner's end: requests out, replies in, one at a time in order."""

    def __init__(self, pid: int, sock: _socket.socket, pids: int) -> None:
        self.pid = pid
        self._sock = sock
        self.fd = sock.fileno()  # readable when a reply has come
        self._pids = pids  # the PID pipe's reading end
        self._replies = bytearray()
        self._loaded: LoadedProgram | None = None
        self._run_pid: int | None = None  # the run in progress, once its pid has been read

    @classmethod
    def start(cls, run_body: ChildBody, checker_body: ChildBody) -> ForkServer:
        """Fork the server from this (warm) process; returns once it serves."""
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        pids_r, pids_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                os.close(pids_r)
                _serve(theirs, pids_w, run_body, checker_body)
            except BaseException:
                traceback.print_exc()
            finally:
                hard_exit(70)
        theirs.close()
        os.close(pids_w)
        server = cls(pid, ours, pids_r)
        kind, _, _, _ = server._reply()
        if kind != _READY:
            raise ForkServerLost("the fork server did not start")
        return server

    # -- runs -------------------------------------------------------------------------------------

    def start_run(self, program: LoadedProgram, fds: Sequence[int], timeout: float, flags: int) -> None:
        """Fork a run of *program* with *fds* as its 0, 1 and 2; its pid and its end come later
        (``run_pid``, ``poll_exit``, ``run_exit``).  The program travels when it is not the one
        loaded last (the same object)."""
        if program is not self._loaded:
            self._send(_LOAD, 0, 0.0, marshal.dumps(program))
            self._loaded = program
        self._send(_RUN, flags, timeout, b"", fds)

    def run_pid(self) -> int:
        """The pid of the run in progress (waits for the server to have forked it)."""
        if self._run_pid is None:
            self._run_pid = self._forked()
        return self._run_pid

    def poll_exit(self) -> RunExit | None:
        """Once select has found the socket readable: the run's end, if it has come."""
        chunk = os.read(self.fd, 4096)
        if not chunk:
            raise ForkServerLost("the fork server has gone")
        self._replies += chunk
        if len(self._replies) < REPLY.size:
            return None
        return self._ended(self._take())

    def run_exit(self) -> RunExit:
        """The run's end (waits for it: call once the program is dead or dying)."""
        return self._ended(self._reply())

    # -- checkers and sweeps ----------------------------------------------------------------------

    def start_checker(self, arguments: tuple[str | int | tuple[str, str] | None, ...], fds: Sequence[int]) -> int:
        """Fork a checker process running the checker body on *arguments* and *fds*; its pid."""
        self._send(_CHECKER, 0, 0.0, marshal.dumps(arguments), fds)
        return self._forked()

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

    def _forked(self) -> int:
        """The next fork's pid from the PID pipe (a write of 4 bytes arrives whole)."""
        data = os.read(self._pids, PID.size)
        if len(data) != PID.size:
            raise ForkServerLost("the fork server has gone")
        (pid,) = PID.unpack(data)
        if pid < 0:
            raise OSError(-pid, f"fork: {os.strerror(-pid)}")
        return pid

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

    def _ended(self, reply: tuple[int, int, int, int]) -> RunExit:
        kind, alone, pid, value = reply
        started = self.run_pid()  # the PID pipe holds one entry per fork: this run's is taken now (a failed fork raises)
        self._run_pid = None
        if kind != _EXITED or pid != started:
            raise ForkServerLost(f"the fork server answered a run with {kind}")
        return RunExit(pid, value, bool(alone))


# -- the server ---------------------------------------------------------------------------------


def _serve(sock: _socket.socket, pids: int, run_body: ChildBody, checker_body: ChildBody) -> NoReturn:
    """The server's loop.  One function with local names, on purpose: every page it writes between
    two forks (reference counts included) costs it a page fault, so it touches as little as it can."""
    set_dumpable(False)  # inherited from the runner already; said again where it matters
    if not set_child_subreaper():
        raise OSError("PR_SET_CHILD_SUBREAPER failed")
    take_program_groups()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the runner's channel to the host is the runner's alone
    os.dup2(devnull, 1)
    os.close(devnull)
    fd = sock.fileno()
    recvmsg, unpack, pack, pid_of = sock.recvmsg, REQUEST.unpack, REPLY.pack, PID.pack
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
            if len(fds) != 3:  # every fork request carries three: without them a child would run blind
                raise OSError(f"a fork request came with {len(fds)} descriptors")
            body, argument = (run_body, program) if kind == _RUN else (checker_body, loads(payload))
            try:
                pid = fork()
            except OSError as exc:
                for child_fd in fds:
                    close(child_fd)
                failure = exc.errno or errno.EAGAIN
                write(pids, pid_of(-failure))
                if kind == _RUN:
                    write(fd, pack(_FAILED, 0, 0, failure))
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
            write(pids, pid_of(pid))
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
