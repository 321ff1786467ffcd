"""Device workers: one per device, each loading the model once and generating what the shared queue
(``work_queue``) hands it until the queue is empty.

``serve`` is a worker's whole life, the same wherever it runs; it talks to the driver through a
``Channel``.  ``LocalDevices`` runs the workers of this machine: in this process for one device, else
one spawned process per device, each with a pipe of its own to the driver.  (``harness.cluster``
runs them as Ray actors instead.)  A spawned worker that dies without a word (killed, out of host
memory, a crash in native code) is lost: its unfinished samples go back to the queue for the others,
and the run fails only when no worker is left.  One that raises fails the run with its reason at once.
"""

from __future__ import annotations

import gc
import multiprocessing
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from harness.data.prompts import extract_code, truncate_at_eof
from harness.errors import DeviceError, GenerationError
from harness.generation.engine import FinishedSample
from harness.generation.factory import EngineFactory
from harness.generation.journal import JournalEntry, prompt_sha
from harness.generation.plan import PromptJob
from harness.generation.work_queue import Dispatcher, Done, Failed, Finished, Ready, Reply, Said, Want, WorkerEvent

# Seconds to wait for a worker whose pipe closed to exit (it closes only by exiting).
EXIT_WAIT_S = 10.0


def postprocess(text: str, take_code: bool = False) -> str:
    """A decoded sample as it goes into generations.json: cut at the official EOF strings, then (with
    ``--extract-code``) the program of its first fenced code block."""
    output = truncate_at_eof(text)
    return extract_code(output) if take_code else output


class Channel(Protocol):
    """A worker's line to the driver."""

    def send(self, event: WorkerEvent) -> None: ...

    def ask(self, want: Want) -> tuple[PromptJob, ...]:
        """Send ``want`` and wait for the driver's answer."""
        ...


class QueueSource:
    """The engine's ``JobSource`` in a worker: each take asks the driver's queue."""

    def __init__(self, planned: Sequence[PromptJob], channel: Channel, first: Sequence[PromptJob]):
        self.planned, self._channel, self._first = planned, channel, list(first)

    def take(self, samples: int) -> Sequence[PromptJob]:
        if self._first:
            first, self._first = self._first, []
            return first
        return self._channel.ask(Want(samples))


def serve(
    device: str, engine_factory: EngineFactory, planned: Sequence[PromptJob], channel: Channel, take_code: bool, where: str = ""
) -> None:
    """Build the engine on ``device``, then run it on work from the queue until the queue has none
    left for it.  ``planned`` holds every job the queue may hand out (the engine sizes itself for them)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(f"{device}: no CUDA device is visible here")
        torch.cuda.set_device(device)  # streams, events and graphs use the current device
        torch.cuda.reset_peak_memory_stats(device)
    engine = engine_factory(device, lambda text: channel.send(Said(text)))
    channel.send(Ready(device, where))
    shas = {job.task_id: prompt_sha(job.prompt) for job in planned}

    def record(sample: FinishedSample) -> None:
        entry = JournalEntry(
            task_id=sample.task_id,
            index=sample.index,
            seed=sample.seed,
            output=postprocess(sample.text, take_code),
            n_tokens=len(sample.token_ids),
            finish_reason=sample.finish_reason.value,
            prompt_sha=shas[sample.task_id],
        )
        channel.send(Finished(entry))

    # One engine run lasts while the queue has work; after it, the worker waits for samples a lost
    # worker gives back, or for the word that every sample is finished.
    while first := channel.ask(Want(1, wait=True)):
        engine.run(QueueSource(planned, channel, first), record)
    peak = None
    if device.startswith("cuda"):
        peak = int(torch.cuda.max_memory_allocated(device))
        # The model and its KV slots go back to the driver now, not when the process ends: a caller
        # that generates again in this process (a benchmark, a notebook) gets the whole GPU.
        del engine
        gc.collect()
        torch.cuda.empty_cache()
    channel.send(Done(peak))


def describe_failure(exc: BaseException) -> str:
    """An exception as one line, with the place it was raised (the traceback's last frame)."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{place}"


class WorkerPool(Protocol):
    """Where a generation's device workers run."""

    def run(
        self,
        dispatcher: Dispatcher,
        planned: Sequence[PromptJob],
        engine_factory: EngineFactory,
        take_code: bool,
    ) -> None:
        """Start the workers, relay their events to ``dispatcher`` and its replies to them until it is
        complete, and stop them (also when it raises)."""
        ...


class LocalDevices:
    """Workers on this machine's ``devices``: in this process for one, else a spawned process each."""

    def __init__(self, devices: Sequence[str]):
        self.devices = tuple(devices)

    def run(self, dispatcher: Dispatcher, planned: Sequence[PromptJob], engine_factory: EngineFactory, take_code: bool) -> None:
        if len(self.devices) == 1:
            _run_here(self.devices[0], dispatcher, planned, engine_factory, take_code)
        else:
            _run_processes(self.devices, dispatcher, planned, engine_factory, take_code)


class _DirectChannel:
    """The channel of a worker in the driver's own process: calls go straight to the dispatcher."""

    def __init__(self, dispatcher: Dispatcher, worker: int):
        self.dispatcher, self.worker = dispatcher, worker

    def send(self, event: WorkerEvent) -> None:
        self.dispatcher.handle(self.worker, event)  # the only worker: no reply goes to anyone else

    def ask(self, want: Want) -> tuple[PromptJob, ...]:
        replies = self.dispatcher.handle(self.worker, want)
        # Alone, a worker is never kept waiting: what it does not hold and the queue lacks is finished.
        assert [worker for worker, _ in replies] == [self.worker], "the only worker's request went unanswered"
        return replies[0][1]


def _run_here(
    device: str, dispatcher: Dispatcher, planned: Sequence[PromptJob], engine_factory: EngineFactory, take_code: bool
) -> None:
    worker = dispatcher.add_worker(device)
    # An exception propagates as it is: there is no other worker to stop.
    serve(device, engine_factory, planned, _DirectChannel(dispatcher, worker), take_code)


class _PipeChannel:
    """The channel of a spawned worker: its end of a pipe of its own (a worker killed mid-write can
    break only its own pipe, never another's)."""

    def __init__(self, connection: Connection):
        self.connection = connection

    def send(self, event: WorkerEvent) -> None:
        self.connection.send(event)

    def ask(self, want: Want) -> tuple[PromptJob, ...]:
        self.connection.send(want)
        jobs: tuple[PromptJob, ...] = self.connection.recv()
        return jobs


def _run_processes(
    devices: Sequence[str], dispatcher: Dispatcher, planned: Sequence[PromptJob], engine_factory: EngineFactory, take_code: bool
) -> None:
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    ends: list[Connection] = []
    their_ends: list[Connection] = []
    processes = []
    for index, device in enumerate(devices):
        ours, theirs = context.Pipe()
        their_ends.append(theirs)
        processes.append(
            context.Process(
                target=_worker_process,
                args=(device, engine_factory, planned, theirs, take_code),
                daemon=True,
                name=f"generate-{device}",
            )
        )
        ends.append(ours)
        dispatcher.add_worker(device if devices.count(device) == 1 else f"{device} #{index}")
    for process, theirs in zip(processes, their_ends):
        process.start()
        theirs.close()  # the child's now: once it exits, reading ours says so (EOFError)
    by_end = {end: worker for worker, end in enumerate(ends)}
    open_ends = set(ends)

    def deliver(replies: list[Reply]) -> None:
        for worker, jobs in replies:
            try:
                ends[worker].send(jobs)
            except OSError:  # the worker is gone; the liveness check gives its samples back
                pass

    try:
        while not dispatcher.complete:
            if not open_ends:
                raise GenerationError("every generation worker exited before the work was finished")
            for end in wait(list(open_ends)):
                assert isinstance(end, Connection)
                worker = by_end[end]
                try:
                    event = end.recv()
                except (EOFError, OSError):
                    # Every message it sent has been read: what it still held goes back to the queue
                    # (nothing, if it had stopped).
                    open_ends.discard(end)
                    process = processes[worker]
                    process.join(timeout=EXIT_WAIT_S)
                    deliver(dispatcher.lose(worker, f"process exited with code {process.exitcode}"))
                    continue
                deliver(dispatcher.handle(worker, event))
    finally:
        # Stopped workers exit by themselves; the others are stopped here (after a failure, or one
        # still loading its model when the work ran out).
        for worker, process in enumerate(processes):
            if process.is_alive() and not dispatcher.settled(worker):
                process.terminate()
        for process in processes:
            process.join()
        for end in ends:
            end.close()


def _worker_process(
    device: str, engine_factory: EngineFactory, planned: Sequence[PromptJob], connection: Any, take_code: bool
) -> None:
    channel = _PipeChannel(connection)
    try:
        serve(device, engine_factory, planned, channel, take_code)
    except BaseException as exc:  # reported to the driver as one line
        try:
            channel.send(Failed(describe_failure(exc)))
        except OSError:
            pass
        raise SystemExit(1) from None
