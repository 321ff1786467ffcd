"""Generation on a real local Ray cluster (``ray.cluster_utils.Cluster``: a head with no CPUs and
worker nodes with one logical GPU each, on which the real engine runs on the CPU): one actor per GPU
fed from the driver's shared queue; the merged generations.json equals a one-process run (fp32,
CPU); a worker node removed mid-run loses nothing and journals nothing twice; Ray is never imported
without a cluster."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cluster.generation import RayGenerationWorkers
from harness.generation.factory import ModelEngineFactory
from harness.generation.generate import GenerationSummary, generate
from harness.generation.journal import SampleJournal
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.generation.work_queue import Dispatcher
from tests.support.ray_nodes import kill_node
from tests.support.tiny_model import build_tiny_model

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

OBJECT_STORE_BYTES = 80 * 2**20
FAST_FAILURE_DETECTION = {  # a removed node is declared dead after ~3 s (Ray's default: tens of seconds)
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
}
PROMPTS = [(task_id, f"\nQUESTION:\nproblem {task_id}: " + "ab" * (task_id % 5) + "\nANSWER:\n") for task_id in range(40)]
SAMPLED = SamplingSettings(temperature=0.7, top_k=20, top_p=0.95, seed=3)


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[Any]:
    """Two worker nodes with one logical GPU each.  Another module's cluster this process was
    connected to is reconnected afterwards."""
    from ray.cluster_utils import Cluster

    previous = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    if previous is not None:
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE_BYTES, "_system_config": FAST_FAILURE_DETECTION},
    )
    try:
        for _ in range(2):
            _add_gpu_node(cluster)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if previous is not None:
            ray.init(address=previous, logging_level="WARNING", log_to_driver=False)


def _add_gpu_node(cluster: Any) -> Any:
    return cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=OBJECT_STORE_BYTES)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> GenerationSettings:
    model = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "llama")
    return GenerationSettings(str(model), n=4, max_new_tokens=40, sampling=SAMPLED, dtype="float32")


@pytest.fixture(scope="module")
def one_process(settings, tmp_path_factory) -> Path:
    """The reference: the same job in this process on the CPU, no cluster."""
    output = tmp_path_factory.mktemp("one") / "generations.json"
    generate(PROMPTS, settings, output, _factory(settings))
    return output


def _factory(settings: GenerationSettings) -> ModelEngineFactory:
    return ModelEngineFactory(settings, "fast", batch_size=2, chunk_steps=4)


def _journaled(output: Path) -> Counter:
    journal = SampleJournal(output.with_name(output.name + ".journal"))
    return Counter(
        (record["task_id"], record["index"])
        for path in sorted(journal.directory.glob("part-*.jsonl"))
        for record in journal.part(int(path.stem.split("-")[1])).records()
    )


def _every_sample_once(settings: GenerationSettings) -> Counter:
    return Counter({(task_id, index): 1 for task_id, _ in PROMPTS for index in range(settings.n)})


def test_generation_on_the_cluster_equals_one_process(gpu_cluster, settings, one_process, tmp_path):
    output = tmp_path / "generations.json"
    said: list[str] = []
    summary = generate(PROMPTS, settings, output, _factory(settings), workers=RayGenerationWorkers(device="cpu"), say=said.append)
    assert output.read_bytes() == one_process.read_bytes()
    assert _journaled(output) == _every_sample_once(settings)
    total = len(PROMPTS) * settings.n
    assert summary.generated == total and summary.workers_lost == () and sum(summary.samples_by_worker.values()) == total
    assert len(summary.samples_by_worker) == 2  # one worker per GPU of the cluster
    # Rerunning resumes from the driver's journal: nothing is generated again.
    again = generate(PROMPTS, settings, output, _factory(settings), workers=RayGenerationWorkers(device="cpu"))
    assert (again.resumed, again.generated) == (total, 0) and output.read_bytes() == one_process.read_bytes()


def test_a_worker_node_removed_mid_run_loses_nothing(gpu_cluster, settings, one_process, tmp_path, monkeypatch):
    doomed = _add_gpu_node(gpu_cluster)  # the fixture's nodes stay for the other tests
    gpu_cluster.wait_for_nodes()
    node = f"node {doomed.node_id[:12]}"
    output = tmp_path / "generations.json"
    said: list[str] = []
    outcome: dict[str, Any] = {}
    # The driver's dispatcher (this process), to remove the node while its worker holds samples: on a
    # loaded machine the doomed node may become ready late, and hold nothing for a while.
    dispatchers: list[Dispatcher] = []
    original_add = Dispatcher.add_worker

    def add_worker(self: Dispatcher, label: str) -> int:
        if self not in dispatchers:
            dispatchers.append(self)
        return original_add(self, label)

    monkeypatch.setattr(Dispatcher, "add_worker", add_worker)

    def doomed_holds() -> int:
        if not dispatchers:
            return 0
        dispatcher = dispatchers[0]
        labels = list(dispatcher.finished_by_worker)
        return sum(dispatcher.queue.holds(index) for index, label in enumerate(labels) if node in label)

    def run() -> None:
        try:
            outcome["summary"] = generate(
                PROMPTS, settings, output, _factory(settings), workers=RayGenerationWorkers(device="cpu"), say=said.append
            )
        except BaseException as exc:
            outcome["error"] = exc

    driver = threading.Thread(target=run)
    driver.start()
    # Once the doomed node's model is loaded and more samples have come back, it holds some of its own
    # (a worker takes prompts as soon as it is ready, and keeps its slots full while the queue has any).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.is_alive():
        if any(node in line and "model loaded" in line for line in said):
            break
        time.sleep(0.05)
    loaded_at = sum(_journaled(output).values())
    while time.monotonic() < deadline and driver.is_alive() and sum(_journaled(output).values()) < loaded_at + 4:
        time.sleep(0.05)
    while time.monotonic() < deadline and driver.is_alive() and not doomed_holds():
        time.sleep(0.01)
    assert driver.is_alive(), f"the run ended before the node could be removed: {outcome}, {said}"
    journaled_before = sum(_journaled(output).values())
    kill_node(gpu_cluster, doomed)
    driver.join(timeout=300)
    assert not driver.is_alive() and "error" not in outcome, outcome.get("error")
    summary: GenerationSummary = outcome["summary"]
    assert journaled_before < len(PROMPTS) * settings.n
    assert len(summary.workers_lost) == 1 and node in summary.workers_lost[0] and summary.requeued >= 1
    assert any(node in line and "lost" in line and "back in the queue" in line for line in said)
    assert _journaled(output) == _every_sample_once(settings)
    assert output.read_bytes() == one_process.read_bytes()


def test_ray_is_never_imported_without_a_cluster():
    code = (
        "import sys, harness.pipeline, harness.cli, harness.cluster.generation, harness.generation.generate; "
        "from harness.cli import main; "
        "sys.exit('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr or "ray was imported"
