"""Faults on a real local Ray cluster: a sandbox node removed mid-run (and its Docker daemon killed),
and the driver killed with SIGKILL mid-run then started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cluster.choice import ClusterChoice
from harness.cluster.service import RayExecutionService
from harness.data.generations import TaskSamples
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import EvaluationOutcome, evaluate
from harness.evaluation.verdict_journal import VerdictJournal
from harness.judging.verdicts import SampleStatus
from harness.sandbox.choice import SandboxChoice
from tests.cluster.conftest import new_second_dockerd
from tests.cluster.corpus import EXAMPLES, corpus, write_generations
from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[2]
SANDBOXES = SandboxChoice(workers=2)
PATIENCE_S = 240.0


def journal_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_for(condition, what: str, timeout: float = PATIENCE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fault_free(ray_cluster, tmp_path_factory) -> tuple[list[TaskSamples], EvaluationOutcome]:
    """The fault tests' samples (each job lasts a second or so, so that a fault lands mid-run), and
    their evaluation through the cluster without a fault."""
    tasks = corpus(12, sleep_s=0.3)
    with VerdictJournal(tmp_path_factory.mktemp("fault-free") / "journal.jsonl") as journal:
        whole = evaluate(tasks, ClusterChoice().opener(SANDBOXES), EvaluationSettings(), journal)
    assert whole.infra_errors == 0
    return tasks, whole


def assert_same_verdicts_once_each(tasks: list[TaskSamples], faulted: EvaluationOutcome, whole: EvaluationOutcome, path: Path):
    """Every sample scored exactly once, none unscored, the same verdicts as without the fault, and
    each job journaled once."""
    assert faulted.infra_errors == 0
    for task in tasks:
        ours, clean = faulted.results[task.problem.task_id], whole.results[task.problem.task_id]
        assert len(ours) == len(task.outputs)
        assert [r.status for r in ours] == [SampleStatus.JUDGED] * len(ours)
        assert [r.verdicts for r in ours] == [r.verdicts for r in clean]
    keys = Counter(r["key"] for r in journal_records(path))
    assert len(keys) == faulted.executed and set(keys.values()) == {1}


def test_a_node_removed_mid_run_loses_nothing_and_scores_every_sample_once(ray_cluster, sandbox_image, fault_free, tmp_path):
    tasks, whole = fault_free
    settings = EvaluationSettings()

    doomed_daemon = new_second_dockerd(sandbox_image)
    services: list[RayExecutionService] = []

    def open_cluster() -> RayExecutionService:
        service = RayExecutionService(None, SANDBOXES)
        services.append(service)
        return service

    try:
        doomed = ray_cluster.add_sandbox_node(doomed_daemon.url)
        doomed_label = f"/{doomed.node_id[:8]}"
        path = tmp_path / "faulted.jsonl"
        outcome: list[EvaluationOutcome] = []

        def run() -> None:
            with VerdictJournal(path) as journal:
                outcome.append(evaluate(tasks, open_cluster, settings, journal))

        runner = threading.Thread(target=run)
        runner.start()
        # Once the doomed host has finished a job (it holds more, in flight), it goes.
        wait_for(lambda: any(r["result"].get("host", "").endswith(doomed_label) for r in journal_records(path)), "a doomed job")
        done_before = len(journal_records(path))
        ray_cluster.remove(doomed)
        doomed_daemon.kill()
        runner.join(PATIENCE_S)
        assert not runner.is_alive()
    finally:
        doomed_daemon.stop()
    faulted = outcome[0]
    assert done_before < whole.executed // 2, "the removal must land mid-run"

    assert_same_verdicts_once_each(tasks, faulted, whole, path)
    stats = faulted.pool
    assert stats is not None and stats.hosts is not None
    assert (stats.hosts.up, stats.hosts.lost) == (2, 1) and stats.hosts.requeued >= 1
    assert stats.jobs == faulted.executed  # one delivery per job: a re-queued job is not counted twice
    # The surviving hosts removed all their sandboxes on close.
    survivors = services[0].sandboxes_left
    assert len(survivors) == 2 and set(survivors.values()) == {0}
    assert ray_cluster.second_daemon.client().containers.list(all=True) == []


def test_a_host_whose_docker_dies_has_its_jobs_retried_on_the_others(ray_cluster, sandbox_image, fault_free, tmp_path):
    """The node stays in Ray, but its Docker daemon dies: its jobs end there as infrastructure errors,
    and each one is tried again on another host; the host leaves the rotation."""
    tasks, whole = fault_free
    failing_daemon = new_second_dockerd(sandbox_image)
    said: list[str] = []
    try:
        node = ray_cluster.add_sandbox_node(failing_daemon.url)
        label = f"/{node.node_id[:8]}"
        path = tmp_path / "journal.jsonl"
        outcome: list[EvaluationOutcome] = []

        def run() -> None:
            with VerdictJournal(path) as journal:
                opener = lambda: RayExecutionService(None, SANDBOXES, say=said.append)  # noqa: E731
                outcome.append(evaluate(tasks, opener, EvaluationSettings(), journal))

        runner = threading.Thread(target=run)
        runner.start()
        wait_for(lambda: any(r["result"].get("host", "").endswith(label) for r in journal_records(path)), "a job on that host")
        done_before = len(journal_records(path))
        failing_daemon.kill()
        runner.join(PATIENCE_S)
        assert not runner.is_alive()
        ray_cluster.remove(node)
    finally:
        failing_daemon.stop()
    faulted = outcome[0]
    assert done_before < whole.executed // 2, "the daemon must die mid-run"
    assert_same_verdicts_once_each(tasks, faulted, whole, path)
    stats = faulted.pool
    assert stats is not None and stats.hosts is not None
    assert stats.hosts.lost == 0 and stats.hosts.requeued >= 1
    assert any("keeps failing jobs: out of rotation" in line for line in said)


def test_the_driver_killed_mid_run_resumes_and_runs_nothing_journaled_again(ray_cluster, tmp_path):
    tasks = corpus(10, sleep_s=0.3)
    generations = write_generations(tasks, tmp_path / "generations.json")
    ids = ",".join(str(t.problem.task_id) for t in tasks)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "harness", "evaluate", "--dataset", str(shared_file(EXAMPLES)), "--indices", ids,
        "--generations", str(generations), "--output", str(out), "--no-cache", "--workers", "2",
        "--cluster", "ray", "--ray-address", ray_cluster.address,
    ]  # fmt: skip
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = out / "journal.jsonl"
    total = sum(len(t.outputs) for t in tasks)
    try:
        wait_for(lambda: len(journal_records(journal)) >= 4, "the first verdicts journaled")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    recorded = len(journal_records(journal))
    assert recorded < total, "the kill must land mid-run"
    assert not (out / "results.json").exists()

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PATIENCE_S)
    assert resumed.returncode == 0, resumed.stderr
    records = journal_records(journal)
    assert f"{total - recorded} run, 0 cached, {recorded} resumed" in resumed.stdout
    keys = Counter(r["key"] for r in records)
    assert len(keys) == total and set(keys.values()) == {1}  # nothing journaled ran twice
    stats = json.loads((out / "run_stats.json").read_text())
    assert stats["evaluation"]["infra_errors"] == 0
    assert stats["sandboxes"]["hosts"] == {"up": 2, "lost": 0, "refused": 0, "requeued": 0}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == total and all("/" in s["host"] for s in samples)  # each verdict names its host
