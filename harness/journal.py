"""The evaluation journal: one JSON line per finished job, written as results arrive.

Rerunning the same evaluation reads it back and skips every job already recorded, so a crash or
Ctrl-C loses at most the jobs that were running.  A torn last line (killed mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .verdicts import SampleResult, result_from_record, result_record


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._handle = None

    def load(self) -> dict[str, SampleResult]:
        """Results recorded so far, by job key (later lines win)."""
        if not self.path.exists():
            return {}
        recorded: dict[str, SampleResult] = {}
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    recorded[entry["key"]] = result_from_record(entry["result"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill, or not ours: that job simply runs again
        return recorded

    def append(self, key: str, result: SampleResult) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
            if self._handle.tell() > 0 and not _ends_with_newline(self.path):
                self._handle.write("\n")  # seal a torn line so the next entry stays readable
        self._handle.write(json.dumps({"key": key, "result": result_record(result)}) + "\n")
        self._handle.flush()  # in the OS once written: survives the process being killed

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
