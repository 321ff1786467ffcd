"""Evaluation through a real local Ray cluster (tests/cluster/conftest.py): two sandbox hosts, one on
this machine's Docker daemon and one on a second daemon, against the local pool on real TACO rows;
hosts with a different sandbox identity refused; Ray never imported without --cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

from harness.cluster.choice import ClusterChoice
from harness.cluster.service import RayExecutionService, extra_jobs
from harness.errors import ClusterUnavailable
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from harness.judging.verdicts import SampleStatus, Verdict
from harness.sandbox.choice import SandboxChoice
from tests.cluster.corpus import corpus

ROOT = Path(__file__).resolve().parents[2]
SANDBOXES = SandboxChoice(workers=2)


def test_verdicts_through_the_cluster_equal_the_local_pools_test_by_test(ray_cluster, pool, sandbox_image):
    tasks = corpus(12)
    settings = EvaluationSettings(early_exit=False)  # every test of every sample: the most to compare
    local = evaluate(tasks, lambda: nullcontext(pool), settings)
    opened: list[RayExecutionService] = []

    def open_cluster() -> RayExecutionService:
        service = ClusterChoice().opener(SANDBOXES)()
        assert isinstance(service, RayExecutionService)
        opened.append(service)
        return service

    through = evaluate(tasks, open_cluster, settings)
    assert local.infra_errors == through.infra_errors == 0
    assert through.executed == local.executed > 40
    for task in tasks:
        ours, theirs = through.results[task.problem.task_id], local.results[task.problem.task_id]
        assert [r.status for r in ours] == [SampleStatus.JUDGED] * len(theirs)
        assert [r.verdicts for r in ours] == [r.verdicts for r in theirs], task.problem.task_id
    verdicts = {v for rs in through.results.values() for r in rs for v in r.verdicts}
    assert {Verdict.PASSED, Verdict.RUNTIME_ERROR} <= verdicts and len(verdicts) >= 3  # the corpus is not trivial
    # Both hosts ran jobs, and each verdict says which one (the local pool's say none).
    hosts = {r.host for rs in through.results.values() for r in rs}
    assert len(hosts) == 2 and "" not in hosts
    assert {r.host for rs in local.results.values() for r in rs} == {""}
    stats = through.pool
    assert stats is not None and stats.hosts is not None
    assert (stats.hosts.up, stats.hosts.lost, stats.hosts.refused, stats.hosts.requeued) == (2, 0, 0, 0)
    assert stats.sandbox_failures == 0 and stats.slots == 4
    assert opened[0].sandboxes_left == dict.fromkeys(hosts, 0)
    assert [c for c in ray_cluster.second_daemon.client().containers.list(all=True)] == []


def test_a_host_whose_sandboxes_differ_is_refused_with_what_differs(ray_cluster):
    said: list[str] = []
    odd = ray_cluster.add_sandbox_node(TACO_HARNESS_BASE_IMAGE="python:3.12-slim")  # another image tag
    try:
        with RayExecutionService(None, SANDBOXES, say=said.append) as service:
            stats = service.stats()
            assert stats.hosts is not None and (stats.hosts.up, stats.hosts.refused) == (2, 1)
            assert stats.slots == 4 and service.size == 2 * (2 + extra_jobs(2))  # sandboxes, and what the hosts hold
    finally:
        ray_cluster.remove(odd)
    refusals = [line for line in said if "refused" in line]
    assert len(refusals) == 1
    assert "its sandboxes differ from the driver's (sandbox taco-harness-sandbox:" in refusals[0]
    assert "on the driver" in refusals[0]


def test_with_every_host_refused_opening_fails_with_the_reasons(ray_cluster):
    # A memory limit the hosts would not apply (their identity is computed from the same choice, so
    # mismatch it the other way: the driver believes in a different base image).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TACO_HARNESS_BASE_IMAGE", "python:3.12-slim")
        with pytest.raises(ClusterUnavailable, match=r"no usable sandbox host in the Ray cluster: host .* refused"):
            RayExecutionService(None, SANDBOXES)


def test_neither_import_harness_nor_a_plain_evaluate_imports_ray(tmp_path, sandbox_image):
    probe = (
        "import sys, harness\n"
        "from harness.cli import main\n"
        "try:\n"
        f"    main(['evaluate', '--dataset', 'samples/problems.jsonl', '--generations', 'samples/generations.json',"
        f" '--output', {str(tmp_path / 'out')!r}, '--no-cache', '--workers', '1'])\n"
        "except SystemExit:\n"  # its status says whether every sample was scored: not the point here
        "    pass\n"
        "print('ray' in sys.modules, 'harness.cluster.service' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False False"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["counts"]["samples"] == 24  # it did evaluate
