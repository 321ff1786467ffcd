"""Which sandboxes a command evaluates in, and how its pool is opened.

``docker`` (the default) runs each sandbox as a locked-down container on a Docker host.
``namespace`` runs the same runner as PID 1 of fresh Linux namespaces on this machine, for
machines without Docker (such as a lent GPU box); its isolation is weaker and it says so.  Each
choice has an identity string that goes into every job key, so verdicts from one kind of sandbox
are never reused for another.  Neither the Docker SDK nor the namespace backend is imported until
a pool is actually described or opened.  ``load_warnings`` says what will make programs wait for a
CPU (more sandboxes than CPUs, other evaluations on the same Docker daemon); the CLI words it.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from harness.errors import DockerUnavailable, ImageBuildError, SandboxUnavailable
from harness.sandbox.interface import SandboxLimits
from harness.sandbox.pool import SandboxPool

log = logging.getLogger(__name__)


class SandboxKind(str, enum.Enum):
    DOCKER = "docker"
    NAMESPACE = "namespace"


# -- what may make programs wait for a CPU (``SandboxChoice.load_warnings``) -------------------------
@dataclass(frozen=True)
class Oversubscribed:
    """More CPUs asked for by the sandboxes at once than the machine that runs them has."""

    sandboxes: int
    cpus_per_sandbox: float
    machine_cpus: int


@dataclass(frozen=True)
class OtherEvaluations:
    """Sandboxes of other evaluations (other pools' sessions) running on the same Docker daemon."""

    evaluations: int
    sandboxes: int


LoadWarning: TypeAlias = Oversubscribed | OtherEvaluations


@dataclass(frozen=True)
class SandboxChoice:
    kind: SandboxKind = SandboxKind.DOCKER
    workers: int | None = None  # sandboxes at once; default one per CPU
    memory_mb: int = 2048
    base_image: str | None = None  # docker only; default $TACO_HARNESS_BASE_IMAGE or python:3.11-slim

    @property
    def capacity(self) -> int:
        return self.workers or os.cpu_count() or 1

    def identity(self) -> str:
        """What the verdicts depend on besides the program and the tests."""
        if self.kind is SandboxKind.DOCKER:
            from harness.sandbox.docker.image import chosen_base_image, image_tag

            return f"{image_tag(chosen_base_image(self.base_image))} memory={self.memory_mb}MB"
        from harness.sandbox.namespace.backend import NamespaceBackend

        return NamespaceBackend.identity_for(memory_mb=self.memory_mb)

    def load_warnings(self, own_session: str | None = None) -> list[LoadWarning]:
        """What will make this choice's programs wait for a CPU, as far as can be seen now: more
        sandboxes x CPUs each than the machine's CPUs (the Docker daemon's machine for Docker), and
        other evaluations' live sandboxes on the same daemon (any session but *own_session*).  An
        unreachable daemon is no warning here: opening the pool reports it."""
        cpus = SandboxLimits().cpus
        machine = os.cpu_count() or 1
        others: dict[str, int] = {}
        if self.kind is SandboxKind.DOCKER:
            try:
                from harness.sandbox.docker.backend import connect, daemon_cpus, live_sessions

                client = connect(timeout=10)  # a look, not worth a long wait
                try:
                    machine = daemon_cpus(client) or machine
                    others = {session: n for session, n in live_sessions(client).items() if session != own_session}
                finally:
                    client.close()
            except Exception as exc:  # no daemon, no SDK, an API error: a warning is not worth failing for
                log.info("cannot look at the Docker daemon's load: %s", exc)
        found: list[LoadWarning] = []
        if self.capacity * cpus > machine:
            found.append(Oversubscribed(self.capacity, cpus, machine))
        if others:
            found.append(OtherEvaluations(len(others), sum(others.values())))
        return found

    def opener(self, say: Callable[[str], None] = lambda message: None) -> Callable[[], SandboxPool]:
        """A function that opens the pool (called only when some job must run)."""
        if self.kind is SandboxKind.DOCKER:
            return lambda: self._docker_pool(say)
        return lambda: self._namespace_pool(say)

    def _docker_pool(self, say: Callable[[str], None]) -> SandboxPool:
        from harness.sandbox.docker.backend import DockerBackend, connect
        from harness.sandbox.docker.image import ensure_image

        try:
            client = connect()
            image = ensure_image(client, self.base_image, say=say)
        except (DockerUnavailable, ImageBuildError) as exc:
            raise SandboxUnavailable(str(exc)) from exc
        limits = SandboxLimits(memory_mb=self.memory_mb)
        return SandboxPool(DockerBackend(image, client=client, limits=limits, capacity=self.capacity))

    def _namespace_pool(self, say: Callable[[str], None]) -> SandboxPool:
        from harness.sandbox.namespace.backend import (
            NamespaceBackend,
            namespace_sandbox_unavailable,
        )

        reason = namespace_sandbox_unavailable()
        if reason is not None:
            raise SandboxUnavailable(f"namespace sandboxes cannot run here: {reason}")
        say(
            "namespace sandboxes: weaker isolation than Docker "
            "(same kernel without seccomp, host system directories visible read-only)"
        )
        return SandboxPool(NamespaceBackend(capacity=self.capacity, memory_mb=self.memory_mb))
