"""A persistent verdict cache shared by all evaluations of this user.

Keyed by a digest of everything that decides the verdicts: the problem's tests and Special-Judge
flag, the program, the judges whose verdicts an entry carries (TACO's, and the corrected judge's
unless it is off) and their code, the limits and the sandbox image.  Re-evaluating a file already
seen runs nothing.  SQLite (stdlib) keeps it safe for several harness processes at once.

Only verdicts on the program are stored: never an infrastructure error, and never a result with a
contended timeout (one that came from waiting for a CPU on a busy machine; the session runs those
again, and this is the second line of defence).

Each entry records when it was written and whether it holds a timeout, for ``harness cache info``
and ``harness cache clear --older-than / --timeouts-only``.  A cache file from before these columns
is migrated in place when it is opened (same file name): its entries get ``written`` NULL (shown
as undated, and older than any date) and their timeout flag from their records.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.judging.verdicts import (
    SampleResult,
    SampleStatus,
    Verdict,
    result_from_record,
    result_record,
)

CACHE_FILE = "verdicts-v1.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verdicts "
    "(key TEXT PRIMARY KEY, record TEXT NOT NULL, written REAL, timeout INTEGER NOT NULL DEFAULT 0)"
)
_TIMEOUT_VERDICTS = (Verdict.TIMEOUT, Verdict.CALL_TIMEOUT)
_COMPILE_TIMEOUT_DETAIL = "compile step timed out"  # the runner's words for a compile step past its limit


def default_cache_dir() -> Path:
    explicit = os.environ.get("TACO_HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "taco-harness"


def cache_path(directory: Path | None = None) -> Path:
    return (directory or default_cache_dir()) / CACHE_FILE


def holds_timeout(result: SampleResult) -> bool:
    """Whether some verdict of *result* is a run past its deadline (a test's, a call's, or the
    compile step's)."""
    if any(v in _TIMEOUT_VERDICTS for v in result.verdicts):
        return True
    return result.verdicts == (Verdict.COMPILE_ERROR,) and result.detail == _COMPILE_TIMEOUT_DETAIL


def _migrate(db: sqlite3.Connection) -> None:
    """Add the ``written`` and ``timeout`` columns to a table from before them (once, whichever
    process gets there first)."""

    def columns() -> set[str]:
        return {row[1] for row in db.execute("PRAGMA table_info(verdicts)")}

    if {"written", "timeout"} <= columns():
        return
    db.execute("BEGIN IMMEDIATE")  # one migrating process at a time
    try:
        present = columns()
        if "written" not in present:
            db.execute("ALTER TABLE verdicts ADD COLUMN written REAL")
        if "timeout" not in present:
            db.execute("ALTER TABLE verdicts ADD COLUMN timeout INTEGER NOT NULL DEFAULT 0")
            flagged = []
            for key, record in db.execute("SELECT key, record FROM verdicts"):
                try:
                    if holds_timeout(result_from_record(json.loads(record))):
                        flagged.append((key,))
                except (ValueError, KeyError, TypeError):
                    continue
            db.executemany("UPDATE verdicts SET timeout = 1 WHERE key = ?", flagged)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(_SCHEMA)
    _migrate(db)
    db.isolation_level = "DEFERRED"  # back to implicit transactions (the default), committed by flush()
    return db


class VerdictCache:
    def __init__(self, directory: Path | None = None):
        self.path = cache_path(directory)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)
        self._pending = 0
        self._last_commit = time.monotonic()

    def get_many(self, keys: Iterable[str]) -> dict[str, SampleResult]:
        keys = list(keys)
        found: dict[str, SampleResult] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, record in self._db.execute(f"SELECT key, record FROM verdicts WHERE key IN ({marks})", chunk):
                try:
                    found[key] = result_from_record(json.loads(record))
                except (ValueError, KeyError, TypeError):
                    continue  # unreadable entry: run the job again
        return found

    def put(self, key: str, result: SampleResult) -> None:
        if result.status is not SampleStatus.JUDGED:
            return  # an infrastructure failure says nothing about the program
        if result.contended:
            return  # nor does a timeout that came from waiting for a CPU
        self._db.execute(
            "INSERT OR REPLACE INTO verdicts (key, record, written, timeout) VALUES (?, ?, ?, ?)",
            (key, json.dumps(result_record(result)), time.time(), int(holds_timeout(result))),
        )
        self._pending += 1
        if self._pending >= 200 or time.monotonic() - self._last_commit > 2.0:
            self.flush()

    def flush(self) -> None:
        self._db.commit()
        self._pending = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._db.close()

    def __enter__(self) -> VerdictCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- looking after the cache (``harness cache info`` / ``harness cache clear``) ----------------------


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    exists: bool
    size_bytes: int  # the database with its write-ahead log
    entries: int
    timeouts: int  # entries holding a timeout verdict
    undated: int  # entries written before the cache recorded when (no ``written``)
    oldest: float | None  # unix time of the oldest dated entry
    newest: float | None


def _size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except OSError:
            pass
    return total


def cache_info(directory: Path | None = None) -> CacheInfo:
    """What the cache in *directory* (default: ``default_cache_dir()``) holds; a missing cache is
    reported as such, not created."""
    path = cache_path(directory)
    if not path.exists():
        return CacheInfo(path, False, 0, 0, 0, 0, None, None)
    with VerdictCache(path.parent) as cache:
        entries, timeouts, undated, oldest, newest = cache._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(timeout), 0), COALESCE(SUM(written IS NULL), 0), MIN(written), MAX(written) "
            "FROM verdicts"
        ).fetchone()
    return CacheInfo(path, True, _size(path), entries, timeouts, undated, oldest, newest)


def clear_cache(directory: Path | None = None, *, older_than: float | None = None, timeouts_only: bool = False) -> int:
    """Remove entries from the cache in *directory*: all of them, or only those written before the
    unix time *older_than* (undated ones included), and/or only those holding a timeout.  Returns
    how many were removed; the file is compacted afterwards when no other process holds it."""
    path = cache_path(directory)
    if not path.exists():
        return 0
    conditions, values = [], []
    if older_than is not None:
        conditions.append("(written IS NULL OR written < ?)")
        values.append(older_than)
    if timeouts_only:
        conditions.append("timeout = 1")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    with VerdictCache(path.parent) as cache:
        removed = cache._db.execute(f"DELETE FROM verdicts{where}", values).rowcount
        cache.flush()
        try:
            cache._db.execute("VACUUM")
            cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass  # another evaluation is using it: the space is reused, not returned
    return removed
