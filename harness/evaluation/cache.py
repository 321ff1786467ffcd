"""A persistent verdict cache shared by all evaluations of this user.

Keyed by a digest of everything that decides the verdicts: the problem's tests, the program, the
judge and its code, the limits and the sandbox image.  Re-evaluating a file already seen runs
nothing.  SQLite (stdlib) keeps it safe for several harness processes at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from harness.judging.verdicts import (
    SampleResult,
    SampleStatus,
    result_from_record,
    result_record,
)

_SCHEMA = "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, record TEXT NOT NULL)"


def default_cache_dir() -> Path:
    explicit = os.environ.get("TACO_HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "taco-harness"


class VerdictCache:
    def __init__(self, directory: Path | None = None):
        self.path = (directory or default_cache_dir()) / "verdicts-v1.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
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
        self._db.execute("INSERT OR REPLACE INTO verdicts (key, record) VALUES (?, ?)", (key, json.dumps(result_record(result))))
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
