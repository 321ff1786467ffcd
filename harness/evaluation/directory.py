"""Where an evaluation keeps its journal in its output directory, starting that directory over, and
the lock that keeps two evaluations out of one directory.

Rerunning an evaluation into the same directory resumes from the journal (``journal.jsonl``);
discarding it (``--restart``) makes every job run again, though the verdict cache may still answer.

While an evaluation (or a ``harness run``) writes into a directory it holds ``fcntl.flock`` on
``harness.lock`` there; a second one into the same directory is refused at once
(``DirectoryInUse``).  The kernel releases the lock when the holder's process ends, however it
ends, so a crashed run never leaves the directory locked.  Within one process the lock is
re-entrant (the command holds it around the flow, which holds it too).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import HarnessError

JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = "harness.lock"


class DirectoryInUse(HarnessError):
    """Another harness process is writing into the output directory."""


def journal_path(directory: Path) -> Path:
    return directory / JOURNAL_FILE


def discard_journal(directory: Path) -> None:
    """Forget what earlier runs into *directory* finished (nothing happens when there is none)."""
    journal_path(directory).unlink(missing_ok=True)


_held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, holders in this process)
_held_lock = threading.Lock()


@contextmanager
def hold_directory(directory: Path) -> Iterator[None]:
    """Hold *directory* (created if need be) for this process while the block runs; raise
    ``DirectoryInUse`` at once when another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / LOCK_FILE).resolve()
    with _held_lock:
        if path in _held:
            fd, holders = _held[path]
            _held[path] = (fd, holders + 1)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise DirectoryInUse(
                    f"{directory} is in use by another harness process{holder}: wait for it to finish, or choose another --output"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held[path] = (fd, 1)
    try:
        yield
    finally:
        with _held_lock:
            fd, holders = _held[path]
            if holders > 1:
                _held[path] = (fd, holders - 1)
            else:
                del _held[path]
                os.close(fd)  # releases the lock (the file stays: it is harmless, and reused)


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
