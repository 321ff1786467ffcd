"""Device workers: one per device, each loading the model once and generating what the shared queue
(``work_queue``) hands it until the queue is empty.

``serve`` is a worker's whole life, the same wherever it runs; it talks to the driver through a
``Channel``.  ``LocalDevices`` runs the workers of this machine: in this process for one device, else
one per device as ``DeviceWorkers`` says: a thread each in this process (the default: a worker starts
at once, with torch and the model code already imported), or a spawned process each with a pipe of its
own to the driver (isolated from the others' crashes in native code, and no shared GIL).
(``harness.cluster`` runs them as Ray actors instead.)  A worker that raises fails the run with its
reason at once, and the others stop at their next call to the driver.  A spawned worker that dies
without a word (killed, out of host memory, a crash in native code) is lost: its unfinished samples go
back to the queue for the others, and the run fails only when no worker is left.
"""

from __future__ import annotations

import enum
import gc
import multiprocessing
import threading
import time
import traceback
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from harness.data.prompts import extract_code, truncate_at_eof
from harness.errors import DeviceError, GenerationError
from harness.generation.end_sharing import SlotState
from harness.generation.engine import Engine, FinishedSample
from harness.generation.factory import EngineFactory
from harness.generation.journal import JournalEntry, prompt_sha
from harness.generation.plan import PromptJob
from harness.generation.work_queue import Dispatcher, Done, Failed, Finished, Ready, Reply, Said, Want, WorkerEvent

# Seconds to wait for a worker whose pipe closed to exit (it closes only by exiting).
EXIT_WAIT_S = 10.0


class DeviceWorkers(enum.Enum):
    """How the workers of several local devices run (``--device-workers``)."""

    THREADS = "threads"  # a thread each in this process: no start-up cost, one GIL for their host loops
    PROCESSES = "processes"  # a spawned process each: isolated, but each imports torch and the model code anew


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

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        if self._first:
            first, self._first = self._first, []
            return first
        return self._channel.ask(Want(samples, slots=slots))


def serve(
    device: str,
    engine_factory: EngineFactory,
    planned: Sequence[PromptJob],
    channel: Channel,
    take_code: bool,
    where: str = "",
    empty_cache: bool = True,
) -> None:
    """Build the engine on ``device``, then run it on work from the queue until the queue has none left
    for it.  ``planned`` holds every job the queue may hand out (the engine sizes itself for them).
    At the end the device memory its engine held goes back to the driver, unless ``empty_cache`` is
    False (worker threads: the driver empties every device's cache once they have all stopped)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(f"{device}: no CUDA device is visible here")
        torch.cuda.set_device(device)  # streams, events and graphs use the current device (of this thread)
        torch.cuda.reset_peak_memory_stats(device)
    building = time.perf_counter()
    engine = engine_factory(device, lambda text: channel.send(Said(text)))
    channel.send(Ready(device, where, time.perf_counter() - building))
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
    # The model and its KV slots go back now, not when the process ends: a caller that generates again
    # in this process (a benchmark, a notebook) gets the whole GPU.
    held = _references(engine)
    del engine
    # A full collection costs 0.2 s with torch and transformers loaded, and with worker threads it holds
    # every other worker's thread meanwhile (on the H200 machine the other GPU's last samples waited for
    # it): only when a reference cycle keeps the engine or its model.  (The device memory still
    # allocated says nothing: cuBLAS keeps its workspaces there, 64-96 MB after every run.)
    if any(reference() is not None for reference in held):
        gc.collect()
    if device.startswith("cuda") and empty_cache:
        torch.cuda.empty_cache()
    channel.send(Done(peak))


def _references(engine: Engine) -> list[weakref.ref]:
    """Weak references to ``engine`` and its model: alive after the last strong one is dropped only if
    a reference cycle holds them."""
    references = []
    for held in (engine, getattr(engine, "model", None)):
        try:
            references.append(weakref.ref(held))
        except TypeError:  # None, or an object without weak references (a test's stand-in): nothing to watch
            pass
    return references


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
    """Workers on this machine's ``devices``: in this process for one, else one each as ``mode`` says."""

    def __init__(self, devices: Sequence[str], mode: DeviceWorkers = DeviceWorkers.THREADS):
        self.devices, self.mode = tuple(devices), mode

    def run(self, dispatcher: Dispatcher, planned: Sequence[PromptJob], engine_factory: EngineFactory, take_code: bool) -> None:
        if len(self.devices) == 1:
            _run_here(self.devices[0], dispatcher, planned, engine_factory, take_code)
        elif self.mode is DeviceWorkers.THREADS:
            _run_threads(self.devices, dispatcher, planned, engine_factory, take_code)
        else:
            _run_processes(self.devices, dispatcher, planned, engine_factory, take_code)


def _worker_labels(devices: Sequence[str]) -> list[str]:
    """The dispatcher's name for each device's worker: the device, numbered where it repeats."""
    return [device if devices.count(device) == 1 else f"{device} #{index}" for index, device in enumerate(devices)]


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


class _Stopped(BaseException):
    """Raised in a worker thread at its next call to the driver once the run has failed or been
    interrupted, so that its engine's run unwinds.  Not an error (a BaseException: no engine's error
    handling takes it for a failure of its own, such as running out of memory)."""


class _SharedDispatcher:
    """The dispatcher as the worker threads share it: each event is handled under one lock by the
    thread that sends it (journaling included); an answer for a worker other than the caller (one
    waiting for work) waits in ``answers`` until that worker wakes up on ``condition``."""

    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher
        self.condition = threading.Condition()
        self.answers: dict[int, tuple[PromptJob, ...]] = {}
        self.failure: BaseException | None = None  # the first, which the driver raises
        self.stopping = False
        self.running: set[int] = set()  # the workers whose thread has started and not ended

    def started(self, worker: int) -> None:
        with self.condition:
            self.running.add(worker)

    def ended(self, worker: int) -> None:
        with self.condition:
            self.running.discard(worker)
            self.condition.notify_all()

    def wait_for_workers(self) -> None:
        """Until every started worker thread has ended.  (Not ``Thread.join``: on Python 3.11 a join
        interrupted by Ctrl-C marks a thread that still runs as stopped, and a second join returns at once.)"""
        with self.condition:
            while self.running:
                self.condition.wait()

    def send(self, worker: int, event: WorkerEvent) -> None:
        with self.condition:
            self._handle(worker, event)

    def ask(self, worker: int, want: Want) -> tuple[PromptJob, ...]:
        with self.condition:
            self._handle(worker, want)
            while worker not in self.answers:
                if self.stopping:
                    raise _Stopped
                self.condition.wait()
            return self.answers.pop(worker)

    def worker_failed(self, worker: int, exc: BaseException) -> None:
        """``worker``'s thread raised ``exc``: the run fails with its reason (as a worker process's
        ``Failed``), unless it is stopping already."""
        with self.condition:
            if self.stopping:
                return
            try:
                self.dispatcher.handle(worker, Failed(describe_failure(exc)))
            except BaseException as failure:  # the GenerationError that names the worker
                self._stop(failure)

    def stop(self) -> None:
        with self.condition:
            self._stop(None)

    def _handle(self, worker: int, event: WorkerEvent) -> None:
        if self.stopping:
            raise _Stopped
        try:
            replies = self.dispatcher.handle(worker, event)
        except BaseException as failure:  # the driver's own (a journal that cannot be written): the run's
            self._stop(failure)
            raise _Stopped from None
        for to, jobs in replies:
            self.answers[to] = jobs
        if replies:
            self.condition.notify_all()

    def _stop(self, failure: BaseException | None) -> None:
        if self.failure is None:
            self.failure = failure
        self.stopping = True
        self.condition.notify_all()


class _ThreadChannel:
    """The channel of a worker thread: calls into the shared dispatcher under its lock."""

    def __init__(self, shared: _SharedDispatcher, worker: int):
        self.shared, self.worker = shared, worker

    def send(self, event: WorkerEvent) -> None:
        self.shared.send(self.worker, event)

    def ask(self, want: Want) -> tuple[PromptJob, ...]:
        return self.shared.ask(self.worker, want)


def _run_threads(
    devices: Sequence[str], dispatcher: Dispatcher, planned: Sequence[PromptJob], engine_factory: EngineFactory, take_code: bool
) -> None:
    shared = _SharedDispatcher(dispatcher)
    # The workers build their engines at once (what must not run twice at once in one process, reading
    # a model with transformers, takes a lock of its own: engine.FROM_PRETRAINED_LOCK); each starts
    # generating as soon as its own is built.

    def work(worker: int, device: str) -> None:
        try:
            serve(device, engine_factory, planned, _ThreadChannel(shared, worker), take_code, empty_cache=False)
        except _Stopped:
            pass
        except BaseException as exc:  # the run fails with its reason; the other workers stop
            shared.worker_failed(worker, exc)
        finally:
            shared.ended(worker)

    threads: dict[int, threading.Thread] = {}
    for device, label in zip(devices, _worker_labels(devices)):
        worker = dispatcher.add_worker(label)
        threads[worker] = threading.Thread(target=work, args=(worker, device), name=f"generate-{label}", daemon=True)
    try:
        for worker, thread in threads.items():
            shared.started(worker)
            try:
                thread.start()
            except RuntimeError:  # no thread could be started
                shared.ended(worker)
                raise
        shared.wait_for_workers()
    finally:
        # After a failure or an interrupt (Ctrl-C reaches only this thread): the workers stop at their
        # next call; what they journaled stays journaled.  One still building its engine finishes that first.
        shared.stop()
        shared.wait_for_workers()
        for thread in threads.values():
            if thread.ident is not None:  # started: it has ended its work, and now ends
                thread.join()
        # The engines' device memory back to the driver, every device's in one call, once no worker
        # thread can be capturing a graph (an emptying must not overlap a capture).
        if any(device.startswith("cuda") for device in devices):
            import torch

            torch.cuda.empty_cache()
    if shared.failure is not None:
        raise shared.failure
    if not dispatcher.queue.all_finished:
        raise GenerationError(f"the generation workers stopped with {dispatcher.queue.remaining} samples unfinished")


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
    for device in devices:
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
    for label in _worker_labels(devices):
        dispatcher.add_worker(label)
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
