"""One queue of prompts for every device worker of a generation, wherever the workers run.

The driver (the process that writes the journal) holds a ``WorkQueue`` of the samples still to
generate and a ``Dispatcher`` that answers its workers.  A worker's engine asks for more work as its
slots free up (``Want``) and gets about as many samples as it has room for, so a fast device takes more
and a slow one less, and every device stays busy until the queue is empty; a device whose model is
still loading takes nothing until it is ready.  Each worker's finished samples come back to the driver
(``Finished``), which journals each (task_id, index) once.  A worker that is lost
(its process or node died without a word) gives its unfinished samples back to the front of the queue;
a worker that reports an error (``Failed``: a model that does not load, a bug) fails the run, since
every other worker would meet it too.

The transports differ (calls under a lock from threads and a pipe per spawned process in ``workers``,
Ray calls in ``harness.cluster``); the events, the queue and the dispatcher's decisions are these,
whichever carries them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from harness.errors import GenerationError
from harness.generation.end_sharing import SlotState, WorkerView, is_late, share_now
from harness.generation.journal import JournalEntry
from harness.generation.plan import PromptJob, SampleSpec

SampleKey = tuple[int, int]  # (task_id, sample index)

# The end of a run is shared (``end_sharing``) only while at least this share of the samples finished
# so far ran to the token limit.  Then slots free in rounds and the greedy queue leaves a round to one
# worker; and the prediction, which counts every sample at the limit, holds.  Samples that stop at
# many lengths free slots steadily: the greedy queue ends the workers together (bench/dispatch_sim.py
# --eos 0.5: 0.07 s apart), and the prediction would be far off.
AT_LIMIT_SHARE = 0.8


# -- what a worker tells the driver ------------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    """The worker's model has loaded on ``device``; ``where`` names the machine and accelerator
    where that is not this machine's (a worker of a cluster), else is empty."""

    device: str
    where: str = ""
    build_seconds: float = 0.0  # loading its model and building its engine


@dataclass(frozen=True)
class Want:
    """A request for about ``samples`` samples (see ``WorkQueue.take``).  Answered at once, with
    nothing when the queue is empty for now (the engine then ends its run with what it holds); with
    ``wait`` (a worker with nothing to do) answered only when there is work or nothing will come any
    more, and then with at least one whole prompt (the start of an engine's run).  ``slots`` says
    what the engine's slots are doing (engines that can tell): near the end the dispatcher shares the
    last samples by it (``end_sharing``), and may then answer a worker with fewer, or none."""

    samples: int
    wait: bool = False
    slots: SlotState | None = None


@dataclass(frozen=True)
class Finished:
    entry: JournalEntry


@dataclass(frozen=True)
class Said:
    text: str


@dataclass(frozen=True)
class Done:
    """The worker has stopped: no work is left for it."""

    peak_bytes: int | None  # the device's peak allocated memory (None off CUDA)


@dataclass(frozen=True)
class Failed:
    message: str  # one line: the exception and where it was raised


WorkerEvent = Ready | Want | Finished | Said | Done | Failed
Reply = tuple[int, tuple[PromptJob, ...]]  # (worker, jobs): the answer to that worker's Want


class WorkQueue:
    """The samples of a generation still to hand out, and who holds the ones handed out (pure state).

    Jobs are handed out longest prompt first (the long ones are the worst to start last), and whole
    while the queue has plenty left: a prompt's samples share its prefill (and, in one engine, its KV),
    and what a worker gets beyond its room only waits there for a slot while the others still have work.
    Near the end, when the queue holds fewer samples than that surplus, the prompt that does not fit is
    split (its other samples stay first in the queue): no worker then holds samples waiting for a slot
    while another has nothing left to do.  Samples given back by a lost worker go first of all."""

    def __init__(self, jobs: Sequence[PromptJob]):
        self._pending: deque[PromptJob] = deque(sorted(jobs, key=lambda job: -len(job.prompt)))
        self._pending_samples = sum(len(job.samples) for job in jobs)  # in ``_pending``
        # The most decode steps a sample may take (its token budget), the same for all in a run.
        self.steps_per_sample = max((spec.max_new_tokens for job in jobs for spec in job.samples), default=0)
        self._expected = {(job.task_id, spec.index) for job in jobs for spec in job.samples}
        self._finished: set[SampleKey] = set()
        self._held: dict[int, dict[SampleKey, tuple[PromptJob, SampleSpec]]] = {}
        self.requeued = 0  # samples given back by lost workers

    def take(self, worker: int, samples: int, whole_first: bool = False, at_most: int | None = None) -> tuple[PromptJob, ...]:
        """Jobs holding ``samples`` samples, or as many as are left; the last one whole (holding more)
        while the queue keeps at least as many samples as it adds and the whole stays within ``at_most``
        (a worker's free slots: a sample beyond them would wait a round), and always with ``whole_first``."""
        taken: list[PromptJob] = []
        count = 0
        held = self._held.setdefault(worker, {})
        while self._pending and (count < samples or (whole_first and not taken)):
            job = self._pending.popleft()
            self._pending_samples -= len(job.samples)
            # A sample of a lost worker may have been finished by it after all (a late message).
            job = replace(job, samples=tuple(s for s in job.samples if (job.task_id, s.index) not in self._finished))
            if not job.samples:
                continue
            keep = self._kept(len(job.samples), samples - count, self._pending_samples, whole_first and not taken, count, at_most)
            if keep < len(job.samples):
                surplus = len(job.samples) - keep
                self._pending.appendleft(replace(job, samples=job.samples[-surplus:]))
                self._pending_samples += surplus
                job = replace(job, samples=job.samples[:-surplus])
            for spec in job.samples:
                held[(job.task_id, spec.index)] = (job, spec)
            taken.append(job)
            count += len(job.samples)
        return tuple(taken)

    def would_take(self, samples: int) -> int:
        """How many samples ``take(worker, samples)`` would hand out now (the queue unchanged; counting
        the samples a lost worker may have finished after all, which the take would skip)."""
        count, left = 0, self._pending_samples
        for job in self._pending:
            if count >= samples:
                break
            left -= len(job.samples)
            count += self._kept(len(job.samples), samples - count, left, False, count, None)
        return count

    @staticmethod
    def _kept(size: int, wanted: int, left: int, whole: bool, count: int, at_most: int | None) -> int:
        """Of a job of ``size`` samples, how many a take that still wants ``wanted`` hands out, with
        ``left`` samples in the queue after the job (the rule of ``take``)."""
        surplus = size - wanted
        too_many = at_most is not None and count + size > at_most
        return size - surplus if surplus > 0 and (left < surplus or too_many) and not whole else size

    def finish(self, key: SampleKey) -> bool:
        """Mark a sample finished; False if it already was (a lost worker's late message, or the
        second worker that ran a sample given back)."""
        if key not in self._expected:
            raise GenerationError(f"a worker returned task {key[0]} sample {key[1]}, which this run did not ask for")
        if key in self._finished:
            return False
        self._finished.add(key)
        for held in self._held.values():
            held.pop(key, None)
        return True

    def give_back(self, worker: int) -> int:
        """Put the unfinished samples ``worker`` holds back at the front of the queue; how many."""
        held = self._held.pop(worker, {})
        jobs: dict[int, tuple[PromptJob, list[SampleSpec]]] = {}
        for job, spec in held.values():
            jobs.setdefault(job.task_id, (job, []))[1].append(spec)
        self._pending.extendleft(reversed([replace(job, samples=tuple(specs)) for job, specs in jobs.values()]))
        self._pending_samples += len(held)
        self.requeued += len(held)
        return len(held)

    def holds(self, worker: int) -> int:
        """Unfinished samples handed to ``worker``."""
        return len(self._held.get(worker, {}))

    @property
    def remaining(self) -> int:
        return len(self._expected) - len(self._finished)

    @property
    def unassigned(self) -> int:
        """Samples not handed out (or given back), an upper bound: some may have been finished late."""
        return self._pending_samples

    @property
    def all_finished(self) -> bool:
        return not self.remaining


@dataclass
class _Worker:
    label: str
    ready: bool = False
    waiting: int | None = None  # the samples of a Want(wait=True) not answered yet
    closed: bool = False  # answered with nothing: its engine asks no more until its run ends
    done: bool = False
    lost: bool = False
    finished: int = 0  # samples it returned first
    ready_at: float | None = None  # the dispatcher's clock when its model had loaded
    build_seconds: float = 0.0  # of that, the worker's loading its model and building its engine
    stopped_at: float | None = None  # the dispatcher's clock when it said it had stopped
    last_sample_at: float | None = None  # the dispatcher's clock when it returned its last sample
    slots: SlotState | None = None  # what its engine's slots were doing at its last request that said
    slots_at: float = 0.0  # the dispatcher's clock then

    @property
    def settled(self) -> bool:
        return self.done or self.lost


@dataclass
class Dispatcher:
    """The driver's side of the queue: answers each worker's events (``handle``) and losses (``lose``)
    with the replies to send; journals through ``on_entry`` (each sample once) and records the
    settings through ``on_ready`` when the first model has loaded.  ``clock`` (seconds) times the
    workers' states, for sharing the end of the run (``end_sharing``)."""

    queue: WorkQueue
    on_entry: Callable[[JournalEntry], None]
    on_ready: Callable[[], None] = lambda: None
    say: Callable[[str], None] = lambda text: None
    clock: Callable[[], float] = time.monotonic
    peaks: dict[str, int] = field(default_factory=dict, init=False)  # per device that reported one
    first_ready: float | None = field(default=None, init=False)  # the clock when the first model had loaded
    _workers: list[_Worker] = field(default_factory=list, init=False)
    _at_limit: int = field(default=0, init=False)  # finished samples that ran to the token limit

    def add_worker(self, label: str) -> int:
        self._workers.append(_Worker(label))
        return len(self._workers) - 1

    def handle(self, worker: int, event: WorkerEvent) -> list[Reply]:
        state = self._workers[worker]
        if isinstance(event, Ready):
            state.ready = True
            state.ready_at, state.build_seconds = self.clock(), event.build_seconds
            if self.first_ready is None:
                self.first_ready = state.ready_at
            if event.where:
                state.label = f"{state.label} ({event.where})"
            if len(self._workers) > 1:
                self.say(f"{state.label}: model loaded")
            self.on_ready()
        elif isinstance(event, Want):
            return self._answer(worker, event)
        elif isinstance(event, Finished):
            entry = event.entry
            state.last_sample_at = self.clock()
            if self.queue.finish((entry.task_id, entry.index)):
                state.finished += 1
                self._at_limit += entry.n_tokens >= self.queue.steps_per_sample
                self.on_entry(entry)
            if self.queue.all_finished:
                return self._release()
            return self._serve_waiting()  # a worker kept waiting for its share may be due one now
        elif isinstance(event, Said):
            self.say(f"{state.label}: {event.text}" if len(self._workers) > 1 else event.text)
        elif isinstance(event, Done):
            state.done, state.stopped_at = True, self.clock()
            if event.peak_bytes is not None:
                self.peaks[state.label] = event.peak_bytes
        elif isinstance(event, Failed):
            raise GenerationError(f"{state.label} failed: {event.message}")
        return []

    def lose(self, worker: int, why: str) -> list[Reply]:
        """``worker`` died without a word: its unfinished samples go back to the queue for the others.
        Raises GenerationError when no worker is left to take them."""
        state = self._workers[worker]
        if state.settled:
            return []
        state.lost = True
        back = self.queue.give_back(worker)
        self.say(f"{state.label} lost ({why}): {back} unfinished samples back in the queue")
        if not self.queue.all_finished and all(w.settled for w in self._workers):
            raise GenerationError(
                f"every generation worker was lost (the last: {state.label}, {why}); "
                f"{self.queue.remaining} samples unfinished, the finished ones are journaled"
            )
        return self._release() if self.queue.all_finished else self._serve_waiting()

    @property
    def complete(self) -> bool:
        """Every sample finished and every worker that loaded its model has stopped (one still
        loading when the work ran out is not waited for)."""
        return self.queue.all_finished and all(w.settled for w in self._workers if w.ready)

    @property
    def lost(self) -> list[str]:
        return [w.label for w in self._workers if w.lost]

    @property
    def finished_by_worker(self) -> dict[str, int]:
        return {w.label: w.finished for w in self._workers}

    def ready_by_worker(self, since: float) -> dict[str, float]:
        """Seconds from ``since`` (a time.monotonic()) until each worker's model had loaded (the
        workers whose model loaded)."""
        return {w.label: w.ready_at - since for w in self._workers if w.ready_at is not None}

    def build_by_worker(self) -> dict[str, float]:
        """Seconds each worker took to load its model and build its engine (the workers that did)."""
        return {w.label: w.build_seconds for w in self._workers if w.ready_at is not None}

    def stopped_by_worker(self, since: float) -> dict[str, float]:
        """Seconds from ``since`` until each worker had stopped, its engine freed (the workers that said so)."""
        return {w.label: w.stopped_at - since for w in self._workers if w.stopped_at is not None}

    def last_sample_by_worker(self, since: float) -> dict[str, float]:
        """Seconds from ``since`` until each worker returned its last sample: when it ran out of work
        (the workers that returned any)."""
        return {w.label: w.last_sample_at - since for w in self._workers if w.last_sample_at is not None}

    def settled(self, worker: int) -> bool:
        return self._workers[worker].settled

    def _answer(self, worker: int, want: Want) -> list[Reply]:
        state = self._workers[worker]
        if not want.wait:
            if want.slots is not None:
                slots = want.slots
                if not slots.measured and state.slots is not None and state.slots.measured:
                    # A new run of the same engine has not timed a step yet: its last run's time stands.
                    slots = replace(slots, step_seconds=state.slots.step_seconds, step_running=state.slots.step_running)
                state.slots, state.slots_at = slots, self.clock()
            natural, share = want.samples, None
            if self._near_end():
                natural = self.queue.would_take(want.samples)  # whole prompts, maybe more than it has room for
                share = self._share(worker, natural)
            if share is None or share == natural:
                jobs = self.queue.take(worker, want.samples)
            else:  # its part of the end: within its free slots if it fits, or a sample would wait for a round
                jobs = self.queue.take(worker, share, at_most=max(share, want.samples))
            state.closed = not jobs
            self._hold(worker, jobs)
            return [(worker, jobs)] + (self._serve_waiting() if share is not None else [])
        held = self.queue.holds(worker)
        if held:
            raise GenerationError(f"{state.label}: its engine ended a run with {held} samples unfinished")
        if state.slots is not None:  # its run has ended: every slot is free now
            state.slots, state.slots_at = replace(state.slots, steps_left=(), waiting=0), self.clock()
        state.waiting, state.closed = want.samples, False
        replies = self._serve_waiting()
        if self.queue.all_finished and state.waiting is not None:
            state.waiting = None
            replies.append((worker, ()))
        return replies

    def _share(self, worker: int, wanted: int) -> int | None:
        """How many samples ``worker`` takes now (of the ``wanted`` it would take; those beyond its free
        slots would wait for one), when the end of the run is shared (``end_sharing``):
        the queue holds no more than the slots of the workers whose engines say what their slots are
        doing (the asker's among them, and another).  None otherwise: it takes what it asks for."""
        if not self._near_end():
            return None
        now = self.clock()
        views: dict[int, WorkerView] = {}
        for index, other in enumerate(self._workers):
            if other.slots is None or not other.slots.measured or not other.ready or other.settled:
                continue
            view = WorkerView(other.slots, now - other.slots_at)
            # A worker that has not asked by the time it should have finished all it held is not
            # counted on (a waiting one has asked: it waits for its share).
            if index == worker or other.waiting is not None or not is_late(view, self.queue.steps_per_sample):
                views[index] = view
        unassigned = self.queue.unassigned
        if worker not in views or len(views) < 2 or unassigned > sum(view.state.slots for view in views.values()):
            return None
        finished = sum(w.finished for w in self._workers)
        if finished and self._at_limit < AT_LIMIT_SHARE * finished:
            return None
        wanted = views[worker].state.slots if self._workers[worker].waiting is not None else wanted
        closed = [index for index in views if self._workers[index].closed]
        return share_now(worker, wanted, unassigned, views, self.queue.steps_per_sample, closed)

    def _near_end(self) -> bool:
        """Whether the end of the run may be shared at all: two workers or more say what their slots
        are doing, and the queue holds no more than their slots.  (The cheap part of ``_share``'s
        test, asked first: a request before the end costs no prediction.)"""
        measured = [
            w.slots.slots for w in self._workers if w.slots is not None and w.slots.measured and w.ready and not w.settled
        ]
        return len(measured) >= 2 and self.queue.unassigned <= sum(measured)

    def _serve_waiting(self) -> list[Reply]:
        """Work for the workers waiting for it: the start of a run (at least one whole prompt), or near
        the end their share, which may be none yet."""
        replies: list[Reply] = []
        for index, state in enumerate(self._workers):
            if state.waiting is None or state.settled or not self.queue.unassigned:
                continue
            share = self._share(index, state.waiting)
            if share is None:
                jobs = self.queue.take(index, state.waiting, whole_first=True)
            else:
                room = state.slots.free if state.slots is not None else share
                jobs = self.queue.take(index, share, at_most=max(share, room)) if share else ()
            if jobs:
                state.waiting = None
                self._hold(index, jobs)
                replies.append((index, jobs))
        return replies

    def _hold(self, worker: int, jobs: tuple[PromptJob, ...]) -> None:
        """The worker's state as it will be once it has ``jobs``: their samples wait for its slots."""
        state = self._workers[worker]
        if state.slots is not None and jobs:
            state.slots = replace(state.slots, waiting=state.slots.waiting + sum(len(job.samples) for job in jobs))

    def _release(self) -> list[Reply]:
        """Every sample is finished: the waiting workers are told there is nothing more."""
        replies: list[Reply] = []
        for index, state in enumerate(self._workers):
            if state.waiting is not None and not state.settled:
                state.waiting = None
                replies.append((index, ()))
        return replies
