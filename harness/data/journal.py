"""The journal: an append-only file of JSON records, one per line, written as results arrive.

Both stages keep theirs in one (generation: a line per finished sample; evaluation: a line per
finished job), so a crash or Ctrl-C loses at most the work that was running: a rerun reads the
records back and skips what they cover.  A record is flushed to the OS as soon as it is written,
so it survives the process being killed.  A torn last line (killed mid-write) is skipped on
reading, and sealed with a newline before the next record, so later records stay readable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._handle: IO[str] | None = None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record so far, in the order written (a torn or foreign line is skipped)."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
            if self._handle.tell() > 0 and not _ends_with_newline(self.path):
                self._handle.write("\n")  # seal a torn line so the next record stays readable
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()  # in the OS once written: survives the process being killed

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
