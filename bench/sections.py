"""Writing one `## ` section of docs/BENCHMARKS.md (and its JSON figures) without touching the others."""

from __future__ import annotations

import json
import os
from pathlib import Path


def figures_dir() -> Path:
    """Where benchmarks keep their figures: docs/bench, or $TACO_BENCH_FIGURES (quick checks)."""
    explicit = os.environ.get("TACO_BENCH_FIGURES")
    return Path(explicit) if explicit else Path(__file__).resolve().parents[1] / "docs" / "bench"


def write_section(path: Path, heading: str, section: str, first: bool = False) -> None:
    """Replace the `## ` section that starts with *heading*, keeping the others; a new section goes
    at the end, or before every other section when *first*."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured by `make bench`.\n\n"
    section = section.rstrip("\n") + "\n"
    start = text.find(heading)
    if start == -1 and first:
        at = text.find("\n## ")
        text = text.rstrip("\n") + "\n\n" + section if at == -1 else text[: at + 1] + section + "\n" + text[at + 1 :]
    elif start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end == -1 else "\n" + text[end + 1 :])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_figures(path: Path, figures: dict | list) -> None:
    """The headline figures of one benchmark, for `bench/run_all.py`'s summary table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
