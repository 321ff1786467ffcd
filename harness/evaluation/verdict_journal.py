"""The evaluation's journal (``OUT/journal.jsonl``): one record per finished job, its key and its
result.  Rerunning the same evaluation skips every job recorded here."""

from __future__ import annotations

from pathlib import Path

from harness.data.journal import Journal
from harness.judging.verdicts import SampleResult, result_from_record, result_record


class VerdictJournal:
    def __init__(self, path: Path):
        self.path = path
        self._journal = Journal(path)

    def load(self) -> dict[str, SampleResult]:
        """Results recorded so far, by job key (later records win)."""
        recorded: dict[str, SampleResult] = {}
        for record in self._journal.records():
            try:
                recorded[record["key"]] = result_from_record(record["result"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours, or damaged: that job simply runs again
        return recorded

    def append(self, key: str, result: SampleResult) -> None:
        self._journal.append({"key": key, "result": result_record(result)})

    def close(self) -> None:
        self._journal.close()

    def __enter__(self) -> VerdictJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
