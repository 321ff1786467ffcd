"""``--cluster ray``: which cluster the command's sandboxes run on, and how its service is opened.

Parsing and describing only: Ray is imported when the service opens (``opener``), never before.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import SandboxNotInstalled
from harness.evaluation.service import ExecutionService
from harness.sandbox.choice import SandboxChoice

# The custom resource a node offers to say "this machine runs sandboxes" (one host actor takes it).
HOST_RESOURCE = "taco_sandbox_host"


class ClusterKind(str, enum.Enum):
    RAY = "ray"


@dataclass(frozen=True)
class ClusterChoice:
    kind: ClusterKind = ClusterKind.RAY
    address: str | None = None  # the head's address (host:port, or ray://...); None: $RAY_ADDRESS

    def resolved_address(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def opener(self, sandbox: SandboxChoice, say: Callable[[str], None] = lambda message: None) -> Callable[[], ExecutionService]:
        """A function that connects to the cluster and opens the service (called only when some job
        must run).  *sandbox* is what each host runs (its ``workers``: sandboxes per host)."""

        def open_service() -> ExecutionService:
            try:
                from harness.cluster.service import RayExecutionService
            except ImportError as exc:
                raise SandboxNotInstalled(f"--cluster ray needs {exc.name} (pip install '.[ray]')") from exc
            return RayExecutionService(self.resolved_address(), sandbox, say=say)

        return open_service
