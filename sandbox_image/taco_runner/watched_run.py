"""One run of a stdin program, watched from outside: ``subprocess.run(['python', path], ...,
timeout=timeout)`` without a single signal handler.

The program runs in a child the fork server forks (or, in fresh-interpreter mode, a new ``python``
exec'd by it), with the descriptors the runner made for it.  The runner never waits blindly: it
selects on the child's pipes, then on the fork server's report of its exit, against one deadline,
feeds stdin and drains stdout and stderr; past the deadline it reads where the run's time went
(``cpuclock``: CPU time, waits for a CPU, throttling) and kills the program; then the fork server
sweeps whatever the program started.
"""

from __future__ import annotations

import codecs
import os
import select
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from types import CodeType
from typing import NoReturn, Protocol, cast

from .cpuclock import RunClock
from .forkserver import RUN_FRESH, RUN_ON_PIPES, ForkServer, LoadedProgram, RunExit
from .hygiene import kill_program
from .interpreter import run_program_child
from .isolation import hard_exit, prepare_child, redirect_fds
from .protocol import TimedOut

SCRIPT_NAME = "solution.py"
STDERR_KEEP = 4096  # bytes of a program's stderr kept for diagnostics
READ_CHUNK = 1 << 16
# How long a run whose input went into its pipe at once is watched for its end alone, before its
# pipes are watched too (``_watch``).
EXIT_FIRST_S = 0.005


class RunStatus(Enum):
    EXITED = "exit"
    TIMED_OUT = "timeout"
    OVERFLOWED = "overflow"  # more stdout than the limit


@dataclass(frozen=True, slots=True)
class RunResult:
    status: RunStatus
    returncode: int | None  # when EXITED
    stdout: bytes
    stdout_ok: bool  # valid UTF-8 (as ``text=True`` would decode it)
    stderr_ok: bool
    stderr_tail: bytes
    timed_out: TimedOut | None = None  # when TIMED_OUT: where the run's time went

    @property
    def decodable(self) -> bool:
        return self.stdout_ok and self.stderr_ok


@dataclass(slots=True)
class _Streams:
    """The descriptors of one run: the three the child gets as 0, 1 and 2, and the parent's ends."""

    child_in: int
    child_out: int
    child_err: int
    stdin_writer: int | None  # the parent writes stdin_data here
    stdout_reader: int | None  # with capture
    stderr_reader: int | None
    parent_closes: tuple[int, ...]  # what the parent no longer needs once the child has forked

    @classmethod
    def open(cls, stdin_data: bytes | None, stdin_path: str | None, capture: bool) -> _Streams:
        needs_devnull = not capture or (stdin_data is None and stdin_path is None)
        devnull = os.open(os.devnull, os.O_RDWR) if needs_devnull else None
        in_r = in_w = out_r = out_w = err_r = err_w = stdin_file = None
        child_in: int
        if stdin_data is not None:
            in_r, in_w = os.pipe()
            child_in = in_r
        elif stdin_path is not None:
            stdin_file = child_in = os.open(stdin_path, os.O_RDONLY)
        else:
            assert devnull is not None
            child_in = devnull
        if capture:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            child_out, child_err = out_w, err_w
        else:
            assert devnull is not None
            child_out = child_err = devnull
        closes = tuple(fd for fd in (in_r, out_w, err_w, stdin_file, devnull) if fd is not None)
        return cls(child_in, child_out, child_err, in_w, out_r, err_r, closes)

    def close_child_ends(self) -> None:
        for fd in self.parent_closes:
            os.close(fd)


def program_child(fds: Sequence[int], flags: int, timeout: float, program: object) -> NoReturn:
    """A run's child, as the fork server forks it (``forkserver.ChildBody``): set up, write the
    script, run it.  *fds* become its 0, 1 and 2; *program* is ``_loaded_program``'s.  Never returns."""
    source, code, workdir, path, script = cast(LoadedProgram, program)
    try:
        prepare_child(workdir, timeout)
        redirect_fds(fds)
    except BaseException:
        hard_exit(126)
    try:  # the script exists on disk, as the official one does (``open(__file__)`` works)
        _write_script(path, script)
        if flags & RUN_FRESH:
            # The official procedure, for benchmarks and fidelity checks: a new interpreter per run.
            os.execv(sys.executable, [sys.executable, path])
    except BaseException:
        hard_exit(126)
    try:
        run_program_child(source, workdir, path, code, bool(flags & RUN_ON_PIPES))
    finally:
        hard_exit(1)  # reached only if the program broke the normal way out


# The program loaded last, and what it was made from: every run of a job's program is the same object.
_last_loaded: tuple[str, CodeType | None, str, LoadedProgram] | None = None


def _loaded_program(source: str, code: CodeType | None, workdir: str) -> LoadedProgram:
    """What the fork server keeps for every run of *source*: the source, its code compiled ahead (or
    None), the working directory, the script's path and its bytes; made once per program, so that
    each run's child finds them ready (a join and an encode per child cost it some 30 page faults)."""
    global _last_loaded
    last = _last_loaded
    if last is not None and last[0] is source and last[1] is code and last[2] is workdir:
        return last[3]
    path = os.path.join(workdir, SCRIPT_NAME)
    loaded = (source, code, workdir, path, source.encode("utf-8", "surrogatepass"))
    _last_loaded = (source, code, workdir, loaded)
    return loaded


class Outbox(Protocol):
    """Messages to the host that must go out by a given time, whatever the run does meanwhile
    (``channel.HostChannel``)."""

    def flush_due(self) -> float | None: ...

    def flush(self) -> None: ...


def _write_script(path: str, data: bytes) -> None:
    """``open(path, "w").write(...)`` as plain system calls (same flags and mode, no stream objects)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        written = os.write(fd, data)
        if written < len(data):  # a regular file takes it all at once, short of a full disk
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _watch(
    forks: ForkServer,
    streams: _Streams,
    stdin_data: bytes | None,
    clock: RunClock,
    timeout: float,
    output_limit: int,
    outbox: Outbox | None,
) -> tuple[RunResult, RunExit]:
    """The runner's side of one run, against one deadline: feed stdin, drain stdout and stderr, wait
    for the child's exit (the fork server reports it); finished means the child exited and both pipes
    reached EOF, like ``communicate``.  Past the deadline, or past the output limit, the program is
    killed.  Returns the result, and how the run ended (RunExit.alone: nothing to sweep).

    Most runs are short and small: their input goes into the pipe at once, and all they write fits
    in the pipes (64 KiB each) until they end.  Such a run is first watched for its end alone, for up
    to EXIT_FIRST_S: once it has ended with no process left, its pipes hold everything and their ends,
    and the runner is woken once per run instead of four or five times (its output, each pipe's end,
    the server's report).  Output that fills a pipe meanwhile waits at most that long; after it, or
    while stdin is still being fed, the pipes are watched as they fill."""
    monotonic, select_, read = time.monotonic, select.select, os.read
    server = forks.fd
    deadline = clock.started + timeout
    out_fd = streams.stdout_reader if streams.stdout_reader is not None else -1  # -1: at EOF, or not captured
    err_fd = streams.stderr_reader if streams.stderr_reader is not None else -1
    writer = streams.stdin_writer if streams.stdin_writer is not None else -1
    pending = memoryview(stdin_data if stdin_data is not None else b"")
    status = RunStatus.EXITED
    ended: RunExit | None = None
    stdout_chunks: list[bytes] = []
    stdout_size = 0
    stderr_ok = True
    err_decoder = None  # made at the first stderr bytes
    err_tail = bytearray()
    exit_first_until = 0.0
    if writer >= 0 and len(pending) <= select.PIPE_BUF:  # it fits in the empty pipe at once (a pipe holds a page at least)
        try:
            os.write(writer, pending)
        except BrokenPipeError:
            pass
        os.close(writer)
        writer = -1
        pending = pending[:0]
    elif writer >= 0:
        os.set_blocking(writer, False)
    if writer < 0:
        exit_first_until = clock.started + EXIT_FIRST_S
    while True:
        if writer >= 0:
            try:
                if pending:
                    pending = pending[os.write(writer, pending[:READ_CHUNK]) :]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                pending = pending[:0]
            if not pending:
                os.close(writer)
                writer = -1
        if ended is not None and out_fd < 0 and err_fd < 0:
            break
        now = monotonic()
        if now >= deadline:
            status = RunStatus.TIMED_OUT
            break
        wake = deadline
        due = outbox.flush_due() if outbox is not None else None
        if due is not None:
            if due <= now:
                outbox.flush()  # type: ignore[union-attr]  # due is only set with an outbox
            elif due < wake:
                wake = due
        if ended is not None and ended.alone:
            ready: list[int] = [fd for fd in (out_fd, err_fd) if fd >= 0]  # every writer is gone: no wait
        else:
            if ended is None and now < exit_first_until:
                rlist = [server]
                wake = min(wake, exit_first_until)
            else:
                rlist = [fd for fd in (out_fd, err_fd) if fd >= 0]
                if not rlist:  # both pipes at EOF (or none captured): now the exit
                    rlist.append(server)
            try:
                ready, _, _ = select_(rlist, [writer] if writer >= 0 else [], [], wake - now)
            except InterruptedError:
                continue
        if out_fd in ready:
            chunk = read(out_fd, READ_CHUNK)
            if not chunk:
                os.close(out_fd)
                out_fd = -1
            else:
                stdout_size += len(chunk)
                if stdout_size > output_limit:
                    status = RunStatus.OVERFLOWED
                    break
                stdout_chunks.append(chunk)  # checked as UTF-8 once, at the end
        if err_fd in ready:  # read only once select says so, which a pipe's read never blocks on
            chunk = read(err_fd, READ_CHUNK)
            if not chunk:
                os.close(err_fd)
                err_fd = -1
            else:
                if stderr_ok:
                    if err_decoder is None:
                        err_decoder = codecs.getincrementaldecoder("utf-8")("strict")
                    try:
                        err_decoder.decode(chunk)
                    except UnicodeDecodeError:
                        stderr_ok = False
                err_tail += chunk
                if len(err_tail) > STDERR_KEEP:
                    del err_tail[: len(err_tail) - STDERR_KEEP]
        if server in ready:
            ended = forks.poll_exit()
    timed_out = None
    pid = forks.run_pid() if ended is None else ended.pid
    if status is RunStatus.TIMED_OUT:  # read while the program still runs
        timed_out = clock.timed_out(pid, (forks.pid,))
    if ended is None:  # past the deadline or the output limit, and still running
        kill_program(pid)
        ended = forks.run_exit()
    for fd in (out_fd, err_fd, writer):
        if fd >= 0:
            os.close(fd)
    stdout = b"".join(stdout_chunks)
    stdout_ok = True
    returncode = None
    if status is RunStatus.EXITED:
        try:
            stdout.decode("utf-8")
        except UnicodeDecodeError:
            stdout_ok = False
        if err_decoder is not None:
            try:
                err_decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                stderr_ok = False
        returncode = os.waitstatus_to_exitcode(ended.wait_status)
    return RunResult(status, returncode, stdout, stdout_ok, stderr_ok, bytes(err_tail), timed_out), ended


def run_stdin_program(
    forks: ForkServer,
    source: str,
    workdir: str,
    *,
    stdin_data: bytes | None = None,
    stdin_path: str | None = None,
    capture: bool,
    timeout: float,
    output_limit: int,
    fresh: bool = False,
    code: CodeType | None = None,
    outbox: Outbox | None = None,
) -> RunResult:
    """Run *source* in a child of the fork server *forks*, like ``subprocess.run(['python', path],
    ..., timeout=timeout)``.

    stdin comes from the bytes *stdin_data* on a pipe, or from the file *stdin_path*, or /dev/null.
    With *capture* stdout/stderr are read (and UTF-8 checked, as ``text=True`` would decode them);
    without, they go to /dev/null.  Past the deadline the program is killed, and after the run every
    other process of the sandbox is.  *code* is *source* compiled ahead
    (``interpreter.precompiled_script``); *outbox*'s messages are flushed when due while the run goes.
    """
    streams = _Streams.open(stdin_data, stdin_path, capture)
    flags = RUN_FRESH if fresh else 0
    if streams.stdin_writer is not None and streams.stdout_reader is not None:
        flags |= RUN_ON_PIPES
    clock = RunClock.start()
    try:
        program = _loaded_program(source, code, workdir)
        forks.start_run(program, (streams.child_in, streams.child_out, streams.child_err), timeout, flags)
    finally:
        streams.close_child_ends()
    result, ended = _watch(forks, streams, stdin_data, clock, timeout, output_limit, outbox)
    if not ended.alone:
        forks.sweep()
    return result
