"""The generation journal: ``FILE.journal/`` beside the ``generations.json`` being written.

It holds ``settings.json`` (what the samples depend on: a rerun with other settings is refused) and
one ``part-<worker>.jsonl`` per worker process, a record per finished sample written as it finishes;
a rerun with the same settings skips the samples found there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.atomic import write_json_atomic
from harness.data.journal import Journal
from harness.errors import GenerationError
from harness.generation.plan import GenerationSettings


@dataclass(frozen=True)
class JournalEntry:
    task_id: int
    index: int
    seed: int
    output: str  # truncated at the EOF strings, as it goes into generations.json
    n_tokens: int
    finish_reason: str
    prompt_sha: str  # the prompt it was generated from, so a changed dataset is noticed on resume


def prompt_sha(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:16]


class SampleJournal:
    def __init__(self, directory: Path):
        self.directory = directory

    @classmethod
    def open(cls, output: Path, settings: GenerationSettings) -> SampleJournal:
        directory = output.with_name(output.name + ".journal")
        directory.mkdir(parents=True, exist_ok=True)
        recorded = directory / "settings.json"
        wanted = settings.fingerprint()
        if recorded.exists():
            try:
                found = json.loads(recorded.read_text(encoding="utf-8"))
            except ValueError:
                found = None
            if found != wanted:
                raise GenerationError(
                    f"{directory} holds samples generated with other settings ({_difference(found, wanted)}); "
                    "use another --output or delete the journal"
                )
        else:
            write_json_atomic(recorded, wanted)
        return cls(directory)

    def entries(self) -> dict[tuple[int, int], JournalEntry]:
        found: dict[tuple[int, int], JournalEntry] = {}
        for part in sorted(self.directory.glob("part-*.jsonl")):
            for record in Journal(part).records():
                try:
                    entry = JournalEntry(**record)
                except TypeError:
                    continue  # not a sample record: that sample is generated again
                found[(entry.task_id, entry.index)] = entry
        return found

    def part(self, worker: int) -> Journal:
        """The journal one worker appends its finished samples to (one file per worker process)."""
        return Journal(self.directory / f"part-{worker}.jsonl")


def _difference(found: Any, wanted: dict) -> str:
    if not isinstance(found, dict):
        return "unreadable settings.json"
    return ", ".join(
        f"{key}: {found.get(key)!r} there, {value!r} now" for key, value in wanted.items() if found.get(key) != value
    )
