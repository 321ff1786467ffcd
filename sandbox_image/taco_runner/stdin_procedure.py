"""TACO's procedure for one standard-input test (HEAD's ``execute_std_code`` for one input).

The program runs with the input on a pipe.  When it exits non-zero, it runs again with stdin from a
regular file (retry A), then with the input in ``input.txt`` and its answer read from
``output.txt`` (retry B).  What the program did is reported as an outcome; the host compares.  A
retry that ran past its deadline is reported beside the outcome with its figures: a retry that timed
out on a busy machine may have changed the verdict.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from types import CodeType
from typing import cast

from .forkserver import ForkServer
from .hygiene import STDIN_FEED, clean_scratch, remove_path
from .isolation import PROGRAM_UID, SEPARATED
from .protocol import NonZeroExit, Outcome, Output, OutputOverflow, RuntimeFailure, TimedOut
from .watched_run import READ_CHUNK, SCRIPT_NAME, Outbox, RunResult, RunStatus, run_stdin_program

STDERR_REPORTED = 1000  # bytes of the first run's stderr reported with a non-zero exit


@dataclass(frozen=True, slots=True)
class StdinTest:
    """What one test's runs came to."""

    outcome: Outcome
    retry_timeout: TimedOut | None = None  # a retry (A or B) that ran past its deadline


@dataclass(slots=True)
class _Program:
    """One test's program, runnable with stdin from different places."""

    forks: ForkServer
    source: str
    workdir: str
    timeout: float
    output_limit: int
    fresh: bool
    code: CodeType | None  # source compiled ahead
    outbox: Outbox | None
    retry_timeout: TimedOut | None = None  # the retry timeout that lost most time to waiting, if any

    def run(self, *, stdin_data: bytes | None = None, stdin_path: str | None = None, capture: bool = True) -> RunResult:
        return run_stdin_program(
            self.forks, self.source, self.workdir, stdin_data=stdin_data, stdin_path=stdin_path, capture=capture,
            timeout=self.timeout, output_limit=self.output_limit, fresh=self.fresh, code=self.code, outbox=self.outbox,
        )  # fmt: skip

    def retry(self, *, stdin_path: str | None = None, capture: bool = True) -> RunResult:
        result = self.run(stdin_path=stdin_path, capture=capture)
        if result.timed_out is not None and (
            self.retry_timeout is None or _waited(result.timed_out) >= _waited(self.retry_timeout)
        ):
            self.retry_timeout = result.timed_out
        return result

    def ended(self, outcome: Outcome) -> StdinTest:
        return StdinTest(outcome, self.retry_timeout)


def _waited(timed_out: TimedOut) -> float:
    return (timed_out.wait_ms or 0.0) + (timed_out.throttled_ms or 0.0)


def stdin_test(
    forks: ForkServer,
    source: str,
    stdin_text: str,
    workdir: str,
    timeout: float,
    output_limit: int,
    fresh: bool = False,
    code: CodeType | None = None,
    outbox: Outbox | None = None,
) -> StdinTest:
    """Run one test (each run a child of the fork server *forks*): the first run on a pipe, then
    TACO's retries while it exits non-zero.  *code* is *source* compiled ahead; *outbox*'s messages
    are flushed when due while the runs go."""
    clean_scratch(workdir, likely=(SCRIPT_NAME,))
    try:
        data = stdin_text.encode("utf-8")
    except UnicodeEncodeError:
        return StdinTest(RuntimeFailure("input is not encodable"))
    program = _Program(forks, source, workdir, timeout, output_limit, fresh, code, outbox)
    first = program.run(stdin_data=data)
    if first.status is RunStatus.TIMED_OUT:
        return StdinTest(first.timed_out or TimedOut())
    if first.status is RunStatus.OVERFLOWED:
        return StdinTest(OutputOverflow())
    if not first.decodable:
        return StdinTest(RuntimeFailure("output is not valid UTF-8"))
    if first.returncode == 0:
        return StdinTest(Output(_as_text(first.stdout)))
    last_returncode = cast(int, first.returncode)  # a run that exited has one
    retry = _retry_with_stdin_from_a_file(program, data)
    if retry is not None:
        if retry.status is RunStatus.OVERFLOWED:
            return program.ended(OutputOverflow())
        if retry.status is RunStatus.EXITED and retry.decodable:
            last_returncode = cast(int, retry.returncode)
            if retry.returncode == 0:
                return program.ended(Output(_as_text(retry.stdout)))
    return program.ended(_retry_with_input_txt(program, data, last_returncode, first.stderr_tail))


def _retry_with_stdin_from_a_file(program: _Program, data: bytes) -> RunResult | None:
    """Retry A: stdin from a regular file (rescues ``os.read(0, fstat(0).st_size)`` idioms).  The
    file is opened here and handed over as fd 0; if it cannot be written (a program filled /tmp),
    retry A fails as the official temp-file write would (None), and retry B follows."""
    try:
        _write_private_file(STDIN_FEED, data)
        return program.retry(stdin_path=STDIN_FEED)
    except OSError:
        return None
    finally:
        try:
            os.unlink(STDIN_FEED)
        except OSError:
            pass


def _retry_with_input_txt(program: _Program, data: bytes, last_returncode: int, stderr_tail: bytes) -> Outcome:
    """Retry B: input.txt in the working directory, stdin from /dev/null, the answer read from
    output.txt.  When it fails too, the outcome is the last exit status seen."""
    reported_stderr = stderr_tail[-STDERR_REPORTED:].decode("utf-8", "replace")
    try:
        _write_private_file(os.path.join(program.workdir, "input.txt"), data, 0o666)
    except OSError:
        return NonZeroExit(last_returncode, reported_stderr)
    third = program.retry(capture=False)
    if third.status is RunStatus.EXITED:
        last_returncode = cast(int, third.returncode)
        if third.returncode == 0:
            try:
                produced = _read_program_file(os.path.join(program.workdir, "output.txt"), program.output_limit)
                if len(produced) > program.output_limit:
                    return OutputOverflow()
                return Output(_as_text(produced), from_output_file=True)
            except (OSError, UnicodeDecodeError):
                pass
    return NonZeroExit(last_returncode, reported_stderr)


def _as_text(data: bytes) -> str:
    """bytes -> str the way ``subprocess.run(..., text=True)`` delivers it (universal newlines)."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _write_private_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """Create *path* afresh with *data*: whatever a program put there (a FIFO, a symlink) is removed
    first, and the open neither follows links nor blocks."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        remove_path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _read_program_file(path: str, limit: int) -> bytes:
    """Read a file the program wrote (output.txt) as the program could: a regular file, not through
    a symlink, readable by the program's uid, without blocking; at most *limit* + 1 bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if SEPARATED:
            bit = stat.S_IRUSR if info.st_uid == PROGRAM_UID else stat.S_IROTH
            if not info.st_mode & bit:
                raise PermissionError(f"{path} is not readable by the program")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(READ_CHUNK * 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
