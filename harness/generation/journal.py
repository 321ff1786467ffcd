"""The generation journal: ``FILE.journal/`` beside the ``generations.json`` being written.

It holds ``settings.json`` (what the samples depend on: a rerun with other settings is refused) and
``part-<n>.jsonl`` files, a record per finished sample written as it finishes (the driver writes
``part-0`` for every worker; earlier versions wrote one part per worker process; all are read); a
rerun with the same settings skips the samples found there.

``settings.json`` is written once the model has loaded (``record_settings``, called by the driver
when the first worker reports its model loaded), not when the journal is opened: a run that fails before that (a model that
does not load, a wrong option) leaves nothing that would refuse the corrected command.  The number of
samples per task is not among the settings: a sample is identified by (task_id, index) and its seed
by (seed, task_id, index), so a rerun with a larger ``n`` keeps the samples it finds and generates
the rest, and one with a smaller ``n`` takes the first ``n``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.atomic import write_json_atomic
from harness.data.journal import Journal
from harness.errors import GenerationError
from harness.generation.plan import GenerationSettings, model_identity

SETTINGS_FILE = "settings.json"
# Settings added after the first journals were written, with the value those journals were made with.
# Settings that journals of earlier versions do not record: they were generated with these.
_EARLIER_DEFAULTS: dict[str, Any] = {
    "chat_template": False,
    "system_prompt": None,
    "extract_code": False,
    "quantize": "none",
    "kv_cache": "model",
}


@dataclass(frozen=True)
class JournalEntry:
    task_id: int
    index: int
    seed: int
    output: str  # as it goes into generations.json: truncated at the EOF strings (and its code extracted)
    n_tokens: int
    finish_reason: str
    prompt_sha: str  # the prompt it was generated from, so a changed dataset is noticed on resume


def prompt_sha(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:16]


def journal_directory(output: Path) -> Path:
    """Where the journal of the generations file *output* lives."""
    return output.with_name(output.name + ".journal")


def discard_journal(output: Path) -> None:
    """Forget every sample journaled for *output* (``--restart``); nothing to discard is fine."""
    shutil.rmtree(journal_directory(output), ignore_errors=True)


class SampleJournal:
    def __init__(self, directory: Path, settings: dict | None = None):
        self.directory = directory
        self.settings = settings  # the fingerprint record_settings writes

    @classmethod
    def open(cls, output: Path, settings: GenerationSettings) -> SampleJournal:
        """The journal of *output*, refused (GenerationError) if it holds samples of other settings.
        Nothing is written yet."""
        directory = journal_directory(output)
        wanted = settings.fingerprint()
        recorded = directory / SETTINGS_FILE
        if recorded.exists():
            try:
                found = json.loads(recorded.read_text(encoding="utf-8"))
            except ValueError:
                found = None
            difference = _difference(found, wanted)
            if difference:
                raise GenerationError(
                    f"{directory} holds samples generated with other settings ({difference}); "
                    "use another --output, or --restart to discard them"
                )
        return cls(directory, wanted)

    def record_settings(self) -> None:
        """Write ``settings.json`` unless it is there (called once a model has loaded)."""
        recorded = self.directory / SETTINGS_FILE
        if self.settings is None or recorded.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(recorded, self.settings)

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
        """The journal part ``worker`` (the driver appends every finished sample to part 0)."""
        return Journal(self.directory / f"part-{worker}.jsonl")


def _difference(found: Any, wanted: dict) -> str:
    """What differs between the recorded settings and these ("" when they match)."""
    if not isinstance(found, dict):
        return "unreadable settings.json"
    found = {**_EARLIER_DEFAULTS, **found}
    found.pop("n", None)  # recorded by earlier versions; no longer has to match
    if isinstance(found.get("model"), str):
        found["model"] = model_identity(found["model"])
    return ", ".join(
        f"{key}: {found.get(key)!r} there, {value!r} now" for key, value in wanted.items() if found.get(key) != value
    )
