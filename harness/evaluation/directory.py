"""Where an evaluation keeps its journal in its output directory, and starting that directory over.

Rerunning an evaluation into the same directory resumes from the journal (``journal.jsonl``);
discarding it (``--restart``) makes every job run again, though the verdict cache may still answer.
"""

from __future__ import annotations

from pathlib import Path

JOURNAL_FILE = "journal.jsonl"


def journal_path(directory: Path) -> Path:
    return directory / JOURNAL_FILE


def discard_journal(directory: Path) -> None:
    """Forget what earlier runs into *directory* finished (nothing happens when there is none)."""
    journal_path(directory).unlink(missing_ok=True)
