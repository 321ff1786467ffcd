"""Killing a node of a local Ray cluster (``ray.cluster_utils.Cluster``) as a machine dies."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.support.second_dockerd import descendants


def kill_node(cluster: Any, node: Any) -> None:
    """The node's machine dies: its raylet and every worker process under it (actors with their work in
    flight) are killed at once (``remove_node`` alone leaves the workers running for a while, and they
    can still finish and deliver what they hold).  Returns once the cluster has noticed (health checks),
    so that whatever is opened next does not count the node as alive."""
    import ray
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    workers = descendants(raylet)
    cluster.remove_node(node, allow_graceful=False)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 60
    while (
        ray.is_initialized()
        and time.monotonic() < deadline
        and any(n.get("NodeID") == node.node_id and n.get("Alive") for n in ray.nodes())
    ):
        time.sleep(0.2)
