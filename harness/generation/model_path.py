"""Checking the model a generation names before anything is loaded, so that a typo fails at once
rather than in each worker process after the dataset is read."""

from __future__ import annotations

from pathlib import Path

from harness.data.problems import HUB_OFFLINE_HINT, hub_offline, hub_unreachable
from harness.errors import ModelNotFound


def check_model_path(model: str) -> None:
    """Accept a Hugging Face model directory (one with ``config.json``) or something shaped like a
    hub id (``owner/name``, loaded from the cache or the hub); raise ``ModelNotFound`` otherwise.

    A hub id is checked at once where that is cheap: offline (``HF_HUB_OFFLINE=1``) it must be in the
    local cache, online the hub must answer; either failure is one line, in seconds, instead of the
    loaders' retries in every worker process."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{model}: not a Hugging Face model directory (no config.json)")
    elif path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelNotFound(f"model not found: {model} (expected a local model directory or a hub id)")
    else:
        _check_hub_model(model)


def _check_hub_model(model: str) -> None:
    if hub_offline():
        if _cached_config(model) is False:
            raise ModelNotFound(f"model {model} is not in the local Hugging Face cache (HF_HUB_OFFLINE is set)")
        return
    unreachable = hub_unreachable()
    if unreachable is None:
        return
    if _cached_config(model):
        hint = "it is in the local cache: set HF_HUB_OFFLINE=1 to use it from there"
    else:
        hint = f"{HUB_OFFLINE_HINT}, or pass a local model directory"
    raise ModelNotFound(f"model {model}: {unreachable}; {hint}")


def _cached_config(model: str) -> bool | None:
    """Whether the local cache holds the model's config.json (None where that cannot be told)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # an id the hub library rejects: the loader will say why
        return None
    return isinstance(found, str)
