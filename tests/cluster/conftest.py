"""A real local Ray cluster (``ray.cluster_utils.Cluster``: a head with no CPUs, so that nothing runs
on it, and two sandbox nodes) for the cluster tests, started once per test session.  One node's
sandboxes run on this machine's Docker daemon; the other's on a second, independent Docker daemon
(``tests/support/second_dockerd.py``), as another machine's Docker would.  Tests that remove a node
add their own (``add_sandbox_node``) rather than take one of these away."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ray_nodes import kill_node
from tests.support.second_dockerd import SecondDockerd, copy_image, dockerd_missing, start_second_dockerd

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

HOST_RESOURCE = "taco_sandbox_host"
OBJECT_STORE_BYTES = 80 * 2**20  # small: the tests' problems are small, and CI machines are too
NODE_CPUS = 2  # per sandbox node; it is what each host's pool sizes itself by without --workers
# A removed node is declared dead after about 10 s (ten failed health checks a second apart; a killed
# raylet fails each at once) rather than Ray's default of about 15-25 s, so that the fault tests wait
# less on the detection (which is Ray's, not the harness's).  Each check may take 5 s: a raylet slow to
# answer on a loaded 2-core machine is not taken for a dead one.
FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 5000,
    "health_check_failure_threshold": 10,
}


@dataclass
class LocalCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    main_node: Any  # sandboxes on this machine's Docker daemon
    second_node: Any  # sandboxes on the second daemon
    second_daemon: SecondDockerd
    extra: list[Any] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_sandbox_node(self, docker_host: str | None = None, **environment: str) -> Any:
        """One more sandbox node (its Docker at *docker_host*, else this machine's)."""
        env = dict(environment)
        if docker_host is not None:
            env["DOCKER_HOST"] = docker_host
        node = self.cluster.add_node(
            num_cpus=NODE_CPUS, resources={HOST_RESOURCE: 1}, object_store_memory=OBJECT_STORE_BYTES, env_vars=env or None
        )
        self.cluster.wait_for_nodes()
        self.extra.append(node)
        return node

    def remove(self, node: Any) -> None:
        """The node's machine dies (tests.support.ray_nodes.kill_node)."""
        kill_node(self.cluster, node)
        if node in self.extra:
            self.extra.remove(node)


def new_second_dockerd(image: str) -> SecondDockerd:
    """A second Docker daemon with the sandbox image loaded (skips where there is no dockerd)."""
    reason = dockerd_missing()
    if reason is not None:
        pytest.skip(f"no second Docker daemon: {reason}")
    daemon = start_second_dockerd(Path(tempfile.mkdtemp(prefix="taco-d2-", dir="/tmp")))  # short: a socket path
    try:
        copy_image(image, daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon


@pytest.fixture(scope="session")
def second_dockerd(sandbox_image) -> Iterator[SecondDockerd]:
    daemon = new_second_dockerd(sandbox_image)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def ray_cluster(second_dockerd) -> Iterator[LocalCluster]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE_BYTES, "_system_config": FAST_FAILURE_DETECTION},
    )
    try:
        main = cluster.add_node(num_cpus=NODE_CPUS, resources={HOST_RESOURCE: 1}, object_store_memory=OBJECT_STORE_BYTES)
        second = cluster.add_node(
            num_cpus=NODE_CPUS,
            resources={HOST_RESOURCE: 1},
            object_store_memory=OBJECT_STORE_BYTES,
            env_vars={"DOCKER_HOST": second_dockerd.url},
        )
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        yield LocalCluster(cluster, main, second, second_dockerd)
    finally:
        ray.shutdown()
        cluster.shutdown()
