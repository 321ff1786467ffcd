"""Fault injection shared by the pool tests of every backend: kill sandboxes from outside while a
pool runs jobs, as an OOM killer or an operator would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from harness.evaluation.execution import ExecutionJob
from harness.sandbox.pool import PoolStats, SandboxPool


def map_while_killing(
    pool: SandboxPool, jobs: Sequence[ExecutionJob], kill_one: Callable[[], str | None], interval_s: float, most: int = 3
) -> tuple[list, list[str], PoolStats]:
    """Run *jobs* on *pool* while ``kill_one`` (which kills one running sandbox and names it, or
    returns None when none is running) is called every *interval_s*, at most *most* times.  The kills
    are spaced so that no single job can be hit on all of its attempts.  Returns the results, the
    names of the killed sandboxes and the pool's stats."""
    stop = threading.Event()
    kills: list[str] = []

    def killer() -> None:
        while not stop.is_set() and len(kills) < most:
            time.sleep(interval_s)
            killed = kill_one()
            if killed is not None:
                kills.append(killed)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        results = pool.map(jobs)
    finally:
        stop.set()
        thread.join()
    return results, kills, pool.stats()
