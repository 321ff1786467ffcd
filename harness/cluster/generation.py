"""Generation on every GPU of a Ray cluster: one actor per GPU, fed from the driver's shared queue.

``RayGenerationWorkers`` is a ``WorkerPool`` (as ``LocalDevices`` is): it starts a
``GenerationActor`` for each GPU the cluster has, and relays between them and the driver's
``Dispatcher`` (``generation.work_queue``), which decides everything: who gets which prompts, what is
journaled, what goes back to the queue.  Each actor runs ``generation.workers.serve`` (the worker
loop every device worker runs) in a thread: it loads the model once, and its engine asks the queue for
more prompts as its slots free up.  The actor and the driver talk through ``exchange``, a long poll
that carries the driver's answers to the actor and returns the actor's events (finished samples,
requests) as soon as there are any.  An actor that dies (its node removed, its process killed) is
lost: its unfinished samples go back to the queue for the others.  The journal stays on the driver,
so a driver that dies resumes as on one machine.

Ray is imported only when a pool runs, never by importing this module.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import GenerationError
from harness.generation.factory import EngineFactory
from harness.generation.plan import PromptJob
from harness.generation.work_queue import Dispatcher, Failed, Reply, Want, WorkerEvent
from harness.generation.workers import describe_failure, serve

# Seconds an exchange waits for the actor's first event before returning with none.
EXCHANGE_WAIT_S = 0.5
# Events returned by one exchange at most (the rest come with the next).
EXCHANGE_BATCH = 1024


class GenerationActor:
    """The body of one GPU's actor (``ray.remote`` is applied by the driver): the worker loop in a
    thread, and two queues between it and the driver's exchanges."""

    def __init__(self, device: str, engine_factory: EngineFactory, planned: Sequence[PromptJob], take_code: bool) -> None:
        import ray

        self._events: queue.Queue[WorkerEvent] = queue.Queue()
        self._answers: queue.Queue[tuple[PromptJob, ...]] = queue.Queue()
        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        node = ray.get_runtime_context().get_node_id()[:12]
        where = f"{socket.gethostname()} GPU {gpus}, node {node}" if gpus else f"{socket.gethostname()}, node {node}"
        thread = threading.Thread(
            target=self._serve, args=(device, engine_factory, planned, take_code, where), name="generation-worker", daemon=True
        )
        thread.start()

    def _serve(
        self, device: str, engine_factory: EngineFactory, planned: Sequence[PromptJob], take_code: bool, where: str
    ) -> None:
        try:
            serve(device, engine_factory, planned, self, take_code, where)
        except BaseException as exc:  # reported to the driver, which fails the run with it
            self._events.put(Failed(f"on {where}: {describe_failure(exc)}"))

    # The worker loop's channel (``generation.workers.Channel``).
    def send(self, event: WorkerEvent) -> None:
        self._events.put(event)

    def ask(self, want: Want) -> tuple[PromptJob, ...]:
        self._events.put(want)
        return self._answers.get()

    def exchange(self, answers: list[tuple[PromptJob, ...]], wait_s: float) -> list[WorkerEvent]:
        """Hand the worker the driver's ``answers`` (to its requests, in order); return its events
        since the last exchange, waiting up to ``wait_s`` for the first."""
        for answer in answers:
            self._answers.put(answer)
        try:
            events = [self._events.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while len(events) < EXCHANGE_BATCH:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return events


@dataclass(frozen=True)
class RayGenerationWorkers:
    """A ``WorkerPool`` of one actor per GPU of the Ray cluster at ``address`` (None: the one this
    process is connected to).  ``device`` is the torch device inside an actor: ``cuda`` (the GPU Ray
    gave it), or ``cpu`` for nodes whose GPUs are logical (tests)."""

    address: str | None = None
    device: str = "cuda"
    cpus_per_worker: float = 1.0  # the engine's host loop

    def run(self, dispatcher: Dispatcher, planned: Sequence[PromptJob], engine_factory: EngineFactory, take_code: bool) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        started_ray = False
        if not ray.is_initialized():
            if self.address is None:
                raise GenerationError("--cluster ray needs the head node's address: --ray-address or RAY_ADDRESS")
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # ConnectionError, a bad address, a version mismatch
                raise GenerationError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from exc
            started_ray = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < 1:
            raise GenerationError(
                "the Ray cluster has no GPUs for generation (start GPU nodes with `ray start --num-gpus N ...`)"
            )
        device = "cuda:0" if self.device == "cuda" else self.device  # Ray shows an actor only its own GPU
        actor_class: Any = ray.remote(GenerationActor).options(num_gpus=1, num_cpus=self.cpus_per_worker, max_restarts=0)
        planned_ref = ray.put(list(planned))  # in the object store once, not once per actor
        actors = []
        for index in range(gpus):
            actors.append(actor_class.remote(device, engine_factory, planned_ref, take_code))
            dispatcher.add_worker(f"ray worker {index}")
        answers: dict[int, list[tuple[PromptJob, ...]]] = {worker: [] for worker in range(len(actors))}
        in_flight: dict[Any, int] = {}

        def poll(worker: int) -> None:
            in_flight[actors[worker].exchange.remote(answers[worker], EXCHANGE_WAIT_S)] = worker
            answers[worker] = []

        def deliver(replies: list[Reply]) -> None:
            for worker, jobs in replies:
                answers[worker].append(jobs)  # sent with that worker's next exchange

        try:
            for worker in range(len(actors)):
                poll(worker)
            while not dispatcher.complete:
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=4 * EXCHANGE_WAIT_S)
                for reference in done:
                    worker = in_flight.pop(reference)
                    try:
                        events = ray.get(reference)
                    except (RayActorError, ActorUnavailableError) as exc:
                        deliver(dispatcher.lose(worker, _first_line(exc)))
                        continue
                    for event in events:
                        deliver(dispatcher.handle(worker, event))
                    if not dispatcher.settled(worker):
                        poll(worker)
        finally:
            for actor in actors:  # the GPUs go back to the cluster (a worker still loading is not waited for)
                ray.kill(actor, no_restart=True)
            if started_ray:
                ray.shutdown()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
