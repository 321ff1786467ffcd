"""``harness cache info`` and ``harness cache clear``: the persistent verdict cache
(``harness.evaluation.cache``, under ``$TACO_HARNESS_CACHE_DIR`` or ``~/.cache/taco-harness``)."""

from __future__ import annotations

import datetime

import click

from harness.evaluation.cache import cache_info, clear_cache

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


@click.group("cache")
def cache_group() -> None:
    """Look after the persistent verdict cache."""


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@cache_group.command("info")
def info_command() -> None:
    """Where the cache is, its size, its entries (and how many hold timeouts), the oldest and newest."""
    info = cache_info()
    if not info.exists:
        click.echo(f"cache: {info.path} (none yet)")
        return
    undated = f" ({info.undated} undated: written before entries were dated)" if info.undated else ""
    click.echo(f"cache: {info.path}")
    click.echo(f"size: {_size(info.size_bytes)}")
    click.echo(f"entries: {info.entries} ({info.timeouts} holding a timeout)")
    click.echo(f"oldest: {_when(info.oldest)}{undated}")
    click.echo(f"newest: {_when(info.newest)}")


@cache_group.command("clear")
@click.option(
    "--older-than",
    type=click.DateTime(_DATE_FORMATS),
    default=None,
    help="Only entries written before this local date/time (YYYY-MM-DD[THH:MM[:SS]]); undated ones too.",
)
@click.option("--timeouts-only", is_flag=True, help="Only entries holding a timeout verdict.")
def clear_command(older_than: datetime.datetime | None, timeouts_only: bool) -> None:
    """Remove cached verdicts: all of them, or those the options select (both: entries that match both)."""
    cutoff = older_than.timestamp() if older_than is not None else None  # a naive date/time is local time
    removed = clear_cache(older_than=cutoff, timeouts_only=timeouts_only)
    click.echo(f"removed {removed} cached verdict(s) from {cache_info().path}")
