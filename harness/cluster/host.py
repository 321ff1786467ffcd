"""One sandbox host of a cluster: the work of the Ray actor that runs on each node offering
``taco_sandbox_host``.

It owns the node's local ``SandboxPool`` (Docker on the node's daemon, or namespaces with
``--sandbox namespace``), opened as ``harness evaluate`` opens one on a single machine.  The driver
sends it ``HostJob``s: the program and its limits, and the problem's tests by reference, fetched from
the object store the first time this host sees them and kept (``SUITES_KEPT`` problems), so each
problem's tests cross the network to a node once.  Every result says which host produced it
(``SampleResult.host``).

Before any job, the driver compares the host's ``SandboxIdentity`` with its own: verdicts from a
different image, limits, runner protocol or Python would not be the verdicts the journal's keys say.
"""

from __future__ import annotations

import logging
import platform
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import ray

from harness.data.testcases import TestSuite
from harness.evaluation.execution import ExecutionJob
from harness.judging.verdicts import SampleResult
from harness.sandbox.choice import SandboxChoice
from harness.sandbox.docker.backend import DockerBackend, sandbox_containers
from harness.sandbox.interface import SandboxLimits
from harness.sandbox.pool import PoolStats, SandboxPool
from sandbox_image.taco_runner.protocol import PROTOCOL_VERSION

log = logging.getLogger(__name__)

# Problems' tests a host keeps deserialized (least recently used go first).  The driver re-sends a
# problem's reference once it has sent SUITES_KEPT // 2 other problems to the host since, so a job
# never finds its tests dropped.
SUITES_KEPT = 512
_TESTS_WAIT_S = 120.0  # a job whose tests are still being fetched by another job waits this long
_REMOVAL_GRACE_S = 15.0  # for the daemon to remove closed sandboxes' containers


@dataclass(frozen=True)
class SandboxIdentity:
    """What a host's verdicts depend on besides the program and the tests."""

    sandbox: str  # SandboxChoice.identity(): the image tag (a hash of the runner and its base image) and memory
    limits: SandboxLimits
    runner_protocol: int
    python: str  # the harness's Python (major.minor) on the host

    @classmethod
    def of(cls, choice: SandboxChoice) -> SandboxIdentity:
        return cls(
            sandbox=choice.identity(),
            limits=SandboxLimits(memory_mb=choice.memory_mb),
            runner_protocol=PROTOCOL_VERSION,
            python=".".join(platform.python_version_tuple()[:2]),
        )

    def differences(self, driver: SandboxIdentity) -> list[str]:
        """What differs from the *driver*'s identity, in words (empty when they match)."""
        return [
            f"{name} {mine!s} here, {theirs!s} on the driver"
            for name, mine, theirs in (
                ("sandbox", self.sandbox, driver.sandbox),
                ("limits", self.limits, driver.limits),
                ("runner protocol", self.runner_protocol, driver.runner_protocol),
                ("Python", self.python, driver.python),
            )
            if mine != theirs
        ]


@dataclass(frozen=True)
class HostDescription:
    label: str  # "hostname/node-id": recorded on each verdict
    identity: SandboxIdentity


@dataclass(frozen=True)
class HostJob:
    """An ``ExecutionJob`` without its test cases: those travel by reference, once per host.  The
    job itself travels whole (cases emptied), so that every field it gains reaches the host."""

    tests: int  # the driver's token for the problem's tests
    job: ExecutionJob  # its suite's cases removed

    @classmethod
    def of(cls, job: ExecutionJob, tests: int) -> HostJob:
        return cls(tests, replace(job, suite=replace(job.suite, cases=())))


class SandboxHost:
    """The body of the host actor (``ray.remote`` is applied by the driver, with this node's affinity
    and as many concurrent calls as jobs it may hold: each call waits in its own thread)."""

    def __init__(self, sandbox: SandboxChoice) -> None:
        self._choice = sandbox
        self._pool: SandboxPool[SampleResult] | None = None
        self._suites: OrderedDict[int, TestSuite] = OrderedDict()
        self._suites_lock = threading.Lock()
        self._arriving: dict[int, threading.Event] = {}  # tests being fetched, by token
        node = ray.get_runtime_context().get_node_id()
        self.label = f"{socket.gethostname()}/{node[:8]}"

    def describe(self) -> HostDescription:
        return HostDescription(self.label, SandboxIdentity.of(self._choice))

    def open(self) -> int:
        """Open the node's pool (building the sandbox image here if it is missing); its slots."""
        if self._pool is None:
            opened = self._choice.opener(say=lambda message: log.info("%s: %s", self.label, message))()
            self._pool = opened
        return self._pool.size

    def warm_up(self) -> None:
        if self._pool is not None:
            self._pool.warm_up()

    def run(self, job: HostJob, tests: list[ray.ObjectRef]) -> SampleResult:
        """Run *job* on this node's pool.  *tests* holds the reference to its problem's tests (in a
        list, so that Ray passes the reference rather than the tests) when the driver has not sent
        them to this host recently; else it is empty."""
        if self._pool is None:
            raise RuntimeError(f"{self.label}: the host's pool is not open")
        suite = self._suite(job.tests, tests[0] if tests else None)
        result = self._pool.run(replace(job.job, suite=suite))
        return replace(result, host=self.label)

    def stats(self) -> PoolStats | None:
        return self._pool.stats() if self._pool is not None else None

    def close(self) -> int:
        """Remove every sandbox of this host (queued and running jobs end as infrastructure errors);
        how many of its containers its Docker daemon still shows after a grace period (0 for namespaces)."""
        if self._pool is None:
            return 0
        self._pool.close()
        deadline = time.monotonic() + _REMOVAL_GRACE_S
        while True:
            left = self._containers_left()
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def _containers_left(self) -> int:
        assert self._pool is not None
        left = 0
        for backend in self._pool.backends:
            if isinstance(backend, DockerBackend):
                left += len(sandbox_containers(backend.client, backend.session))
        return left

    def _suite(self, token: int, reference: ray.ObjectRef | None) -> TestSuite:
        """The tests of *token*: kept, or fetched by the call that brings their reference (the
        driver sends it with a host's first job of a problem only); a call without it waits for
        that one."""
        with self._suites_lock:
            suite = self._suites.get(token)
            if suite is not None:
                self._suites.move_to_end(token)
                return suite
            arrived = self._arriving.setdefault(token, threading.Event())
        if reference is not None:
            suite = ray.get(reference)  # outside the lock: a large problem must not hold up the others
            with self._suites_lock:
                self._suites[token] = suite
                while len(self._suites) > SUITES_KEPT:
                    self._suites.popitem(last=False)
                self._arriving.pop(token, None)
            arrived.set()
            return suite
        if not arrived.wait(_TESTS_WAIT_S):
            raise RuntimeError(f"{self.label}: the tests of job {token} never arrived")
        with self._suites_lock:
            suite = self._suites.get(token)
        if suite is None:
            raise RuntimeError(f"{self.label}: the tests of job {token} were dropped before use")
        return suite
