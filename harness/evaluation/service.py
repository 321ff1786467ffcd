"""What the evaluation session needs from whatever runs its jobs: an execution service.

The session queues each job with a callback and a priority, may start the sandboxes early, reads the
figures for the progress bars and ``run_stats.json``, and closes the service at the end.  The local
``SandboxPool`` (sandboxes on this machine's Docker daemon or namespaces) is one; the Ray service of
``harness.cluster`` (a pool on every node of a cluster) is another.  The session is written against
this protocol only, so it does not know which one it drives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from harness.evaluation.execution import ExecutionJob
from harness.judging.verdicts import SampleResult
from harness.sandbox.pool import PoolStats, SandboxPool


class ExecutionService(Protocol):
    """Runs ``ExecutionJob``s somewhere and calls back with each one's ``SampleResult``: a verdict, or
    an infrastructure error when nothing could run it (never a wrong answer)."""

    @property
    def size(self) -> int:
        """Jobs it takes at once, the session's admission limit: its sandboxes (the local pool), or
        every host's sandboxes and the few jobs each holds beside them (a cluster)."""
        ...

    def submit_with_callback(self, job: ExecutionJob, deliver: Callable[[SampleResult], None], priority: float = 0.0) -> None:
        """Queue *job*; ``deliver(result)`` is called once, from a service thread, when it ends.  Of
        the jobs waiting, the lowest *priority* runs first.  RuntimeError once closed."""
        ...

    def warm_up(self) -> None:
        """Start the sandboxes now rather than at the first jobs."""
        ...

    def stats(self) -> PoolStats:
        """Figures so far (cheap: the session reads them at every result)."""
        ...

    def close(self) -> None:
        """Stop, end queued jobs as infrastructure errors, remove every sandbox (safe to call twice)."""
        ...

    def __enter__(self) -> ExecutionService: ...

    def __exit__(self, *exc: object) -> None: ...


if TYPE_CHECKING:  # mypy checks that the local pool is an execution service

    def _local_pool_is_a_service(pool: SandboxPool[SampleResult]) -> ExecutionService:
        return pool
