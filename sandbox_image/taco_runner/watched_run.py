"""One run of a stdin program, watched from outside: ``subprocess.run(['python', path], ...,
timeout=timeout)`` without a single signal handler.

The program runs in a forked child (or, in fresh-interpreter mode, a new ``python`` exec'd by it).
The runner never waits blindly: it selects on the child's pipes and a pidfd against one deadline,
feeds stdin, drains stdout and stderr, and past the deadline kills the child's whole process tree,
after reading where the run's time went (``cpuclock``: CPU time, waits for a CPU, throttling).
"""

from __future__ import annotations

import codecs
import os
import select
import sys
import time
from dataclasses import dataclass
from enum import Enum
from types import CodeType
from typing import NoReturn, Protocol

from .cpuclock import RunClock
from .hygiene import kill_tree, sweep_processes
from .interpreter import run_program_child
from .isolation import hard_exit, prepare_child, redirect_std_fds
from .protocol import TimedOut

SCRIPT_NAME = "solution.py"
STDERR_KEEP = 4096  # bytes of a program's stderr kept for diagnostics
READ_CHUNK = 1 << 16


class RunStatus(Enum):
    EXITED = "exit"
    TIMED_OUT = "timeout"
    OVERFLOWED = "overflow"  # more stdout than the limit


@dataclass(frozen=True)
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


class _Pipe(Enum):
    STDOUT = 1
    STDERR = 2


@dataclass
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


def _become_program(
    source: str, code: CodeType | None, workdir: str, path: str, streams: _Streams, timeout: float, fresh: bool
) -> NoReturn:
    """The child's side of the fork: set up, write the script, run it.  Never returns."""
    try:
        prepare_child(workdir, timeout)
        redirect_std_fds(streams.child_in, streams.child_out, streams.child_err)
    except BaseException:
        hard_exit(126)
    try:  # the script exists on disk, as the official one does (``open(__file__)`` works)
        _write_script(path, source.encode("utf-8", "surrogatepass"))
        if fresh:
            # The official procedure, for benchmarks and fidelity checks: a new interpreter per run.
            os.execv(sys.executable, [sys.executable, path])
    except BaseException:
        hard_exit(126)
    try:
        run_program_child(source, workdir, path, code)
    finally:
        hard_exit(1)  # reached only if the program broke the normal way out


class Outbox(Protocol):
    """Messages to the host that must go out by a given time, whatever the run does meanwhile
    (``channel.HostChannel``)."""

    def flush_due(self) -> float | None: ...

    def flush(self) -> None: ...


def _write_script(path: str, data: bytes) -> None:
    """``open(path, "w").write(...)`` as plain system calls (same flags and mode, no stream objects)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _Watch:
    """The parent's side of one run, against one deadline.  Finished means: the child exited and
    both pipes reached EOF, like ``communicate``."""

    def __init__(
        self,
        pid: int,
        streams: _Streams,
        stdin_data: bytes | None,
        clock: RunClock,
        timeout: float,
        output_limit: int,
        outbox: Outbox | None,
    ) -> None:
        self.pid = pid
        self.clock = clock
        self.pidfd = os.pidfd_open(pid)
        self.deadline = clock.started + timeout
        self.output_limit = output_limit
        self.outbox = outbox
        self.readers: dict[int, _Pipe] = {}  # open until EOF, in the order they are selected on
        if streams.stdout_reader is not None and streams.stderr_reader is not None:
            # Read only once select says so, which a pipe's read then never blocks on.
            self.readers[streams.stdout_reader] = _Pipe.STDOUT
            self.readers[streams.stderr_reader] = _Pipe.STDERR
        self.writer = streams.stdin_writer
        self.pending = memoryview(stdin_data) if stdin_data is not None else memoryview(b"")
        self.status = RunStatus.EXITED
        self.exited = False
        self.wait_status = 0
        self.stdout_chunks: list[bytes] = []
        self.stdout_size = 0
        self.stderr_ok = True
        self.err_decoder: codecs.IncrementalDecoder | None = None  # made at the first stderr bytes
        self.err_tail = bytearray()
        if self.writer is not None:
            os.set_blocking(self.writer, False)
            self._feed_stdin()  # most inputs fit in the pipe at once: no wait for it to be writable

    def follow(self) -> None:
        """Feed, drain and wait until the run is finished, the deadline passes or stdout overflows."""
        while not (self.exited and not self.readers):
            now = time.monotonic()
            if now >= self.deadline:
                self.status = RunStatus.TIMED_OUT
                return
            wake = self.deadline
            due = self.outbox.flush_due() if self.outbox is not None else None
            if due is not None:
                if due <= now:
                    self.outbox.flush()  # type: ignore[union-attr]  # due is only set with an outbox
                else:
                    wake = min(wake, due)
            rlist = list(self.readers)
            if not self.exited:
                rlist.append(self.pidfd)
            wlist = [self.writer] if self.writer is not None else []
            try:
                ready_r, ready_w, _ = select.select(rlist, wlist, [], wake - now)
            except InterruptedError:
                continue
            if ready_w:
                self._feed_stdin()
            for fd in ready_r:
                if fd == self.pidfd:
                    _, self.wait_status = os.waitpid(self.pid, 0)
                    self.exited = True
                elif not self._drain(fd):
                    self.status = RunStatus.OVERFLOWED
                    return

    def _feed_stdin(self) -> None:
        assert self.writer is not None
        try:
            if self.pending:
                self.pending = self.pending[os.write(self.writer, self.pending[:READ_CHUNK]) :]
        except BlockingIOError:
            pass
        except BrokenPipeError:
            self.pending = self.pending[:0]
        if not self.pending:
            os.close(self.writer)
            self.writer = None

    def _drain(self, fd: int) -> bool:
        """Read what *fd* holds; False when stdout went past the limit."""
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return True
        if not chunk:
            os.close(fd)
            del self.readers[fd]
            return True
        if self.readers[fd] is _Pipe.STDOUT:
            self.stdout_size += len(chunk)
            if self.stdout_size > self.output_limit:
                return False
            self.stdout_chunks.append(chunk)  # checked as UTF-8 once, at the end
        else:
            if self.stderr_ok:
                if self.err_decoder is None:
                    self.err_decoder = codecs.getincrementaldecoder("utf-8")("strict")
                try:
                    self.err_decoder.decode(chunk)
                except UnicodeDecodeError:
                    self.stderr_ok = False
            self.err_tail += chunk
            if len(self.err_tail) > STDERR_KEEP:
                del self.err_tail[: len(self.err_tail) - STDERR_KEEP]
        return True

    def finish(self) -> RunResult:
        """Kill what is left of a run that did not finish, release the descriptors, sum up."""
        timed_out = None
        if self.status is RunStatus.TIMED_OUT:  # read while the program still runs
            timed_out = self.clock.timed_out(self.pid)
        if self.status is not RunStatus.EXITED or not self.exited:
            kill_tree(self.pid)
            if not self.exited:
                try:
                    os.waitpid(self.pid, 0)
                except ChildProcessError:
                    pass
        for fd in list(self.readers):
            os.close(fd)
        if self.writer is not None:
            os.close(self.writer)
        os.close(self.pidfd)
        returncode = None
        stdout = b"".join(self.stdout_chunks)
        stdout_ok = True
        if self.status is RunStatus.EXITED:
            try:
                stdout.decode("utf-8")
            except UnicodeDecodeError:
                stdout_ok = False
            if self.err_decoder is not None:
                try:
                    self.err_decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    self.stderr_ok = False
            returncode = os.waitstatus_to_exitcode(self.wait_status)
        return RunResult(self.status, returncode, stdout, stdout_ok, self.stderr_ok, bytes(self.err_tail), timed_out)


def run_stdin_program(
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
    """Fork and run *source* like ``subprocess.run(['python', path], ..., timeout=timeout)``.

    stdin comes from the bytes *stdin_data* on a pipe, or from the file *stdin_path*, or /dev/null.
    With *capture* stdout/stderr are read (and UTF-8 checked, as ``text=True`` would decode them);
    without, they go to /dev/null.  Past the deadline the whole process tree is killed, and after
    the run every other process of the sandbox is.  *code* is *source* compiled ahead
    (``interpreter.precompiled_script``); *outbox*'s messages are flushed when due while the run goes.
    """
    path = os.path.join(workdir, SCRIPT_NAME)
    streams = _Streams.open(stdin_data, stdin_path, capture)
    clock = RunClock.start()
    pid = os.fork()
    if pid == 0:
        _become_program(source, code, workdir, path, streams, timeout, fresh)
    streams.close_child_ends()
    watch = _Watch(pid, streams, stdin_data, clock, timeout, output_limit, outbox)
    watch.follow()
    result = watch.finish()
    sweep_processes()
    return result
