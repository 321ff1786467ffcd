"""The single-machine black hole: a pool over two Docker hosts, one of them dead (a client pointed at
a socket no daemon listens on), scores every sample: the dead host leaves the rotation and its jobs
run on the live one, with no infrastructure error."""

from __future__ import annotations

from contextlib import nullcontext

import docker

from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from harness.judging.verdicts import SampleResult
from harness.sandbox.docker.backend import DockerBackend
from harness.sandbox.pool import SandboxPool
from tests.cluster.corpus import corpus


def test_a_pool_with_a_dead_docker_host_beside_a_live_one_scores_every_sample(docker_client, sandbox_image, tmp_path):
    nobody = tmp_path / "no-daemon.sock"
    dead = DockerBackend(
        sandbox_image, client=docker.DockerClient(base_url=f"unix://{nobody}", version="1.41", timeout=5), capacity=2
    )
    live = DockerBackend(sandbox_image, client=docker_client, capacity=2)
    tasks = corpus(8)
    with SandboxPool[SampleResult]([dead, live]) as pool:
        outcome = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings())
        stats = pool.stats()
    assert outcome.infra_errors == 0
    assert outcome.executed == sum(len(t.outputs) for t in tasks) > 20
    assert stats.backends_out_of_rotation == 1
    assert stats.sandbox_failures >= 3  # the dead host's failed starts, before it left the rotation
