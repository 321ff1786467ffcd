"""Checking the model a generation names before anything is loaded, so that a typo fails at once
rather than in each worker process after the dataset is read."""

from __future__ import annotations

from pathlib import Path

from harness.errors import ModelNotFound


def check_model_path(model: str) -> None:
    """Accept a Hugging Face model directory (one with ``config.json``) or something shaped like a
    hub id (``owner/name``, loaded from the cache or the hub); raise ``ModelNotFound`` otherwise."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{model}: not a Hugging Face model directory (no config.json)")
    elif path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelNotFound(f"model not found: {model} (expected a local model directory or a hub id)")
