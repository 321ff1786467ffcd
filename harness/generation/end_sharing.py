"""The last samples of a generation shared among its device workers so that they end together (pure).

Until the end, the shared queue hands each worker what it asks for: every device stays busy.  Near the
end that is not enough.  An engine's slots free in rounds (samples started together end together, all
at the token limit with a model that rarely stops), and the worker whose round ends first would take
every sample left while another worker's round ends a moment later: on two H200s the first GPU took
2,060 of 4,000 samples and ended 1.1-1.4 s after the other (docs/BENCHMARKS.md, session 11), some of
them waiting a whole round for a slot.  Split instead, no sample waits for a round, and each worker's
share runs in a smaller batch, whose steps are faster (session 12: the GPUs' last samples 0.01-0.27 s
apart).

So each engine says, when it asks for work, what its slots are doing (``SlotState``: how many, the
steps its running samples may still take, its recent step time, and the time of a step with no
sample running, which is what a smaller batch cannot save).  From the last state of every worker
the dispatcher predicts when each would end if given a number of the last samples (``end_seconds``),
and gives the asker its part of the split whose last worker ends first (``share_now``), possibly none:
its part may be better run by a worker whose slots free soon.  The prediction counts every sample at
its token limit (an upper bound: a sample that stops early frees its slot sooner, and that worker asks
sooner); a worker that has not asked by the time its state said it would have finished all it held is
left out (slower than it said, or gone), so nothing waits on it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass

# The part of a decode step's time that does not grow with the number of running samples (reading
# the weights, launching the step), where an engine has not measured it.  For the Llama-3.2-3B shape
# on an H200: 0.41 of a full step across slot counts (2.47 of 5.98 ms at 256 slots, session 11's
# generation-steps run), about two thirds within one batch of 256 slots as the fast engine measures it
# (an idle slot still costs its rows of every matrix product; session 12).
FIXED_SHARE = 0.5
# How far a measured fixed share may be off (an idle step timed once before the run, while the running
# samples' contexts vary): the split must not cost anywhere in that range.
FIXED_SHARE_MARGIN = 0.25

# A worker whose state says it would have finished all it held by now, and which has not asked within
# this margin (a share of the time predicted, and seconds), is left out of the split.
LATE_SECONDS = 0.2
LATE_SHARE = 0.25


@dataclass(frozen=True)
class SlotState:
    """What an engine's slots were doing when it asked for work."""

    slots: int  # samples it runs at once
    steps_left: tuple[int, ...]  # per running sample, the most decode steps it may still take
    waiting: int = 0  # samples it holds that wait for a slot
    step_seconds: float = 0.0  # its mean seconds per decode step lately, refills included (0: not measured yet) ...
    step_running: int = 0  # ... with this many samples running
    idle_step_seconds: float = 0.0  # a step with no sample running (0: not measured)

    @property
    def measured(self) -> bool:
        return self.step_seconds > 0 and 0 < self.step_running <= self.slots

    @property
    def fixed_share(self) -> float | None:
        """The part of a step with every slot running that does not depend on the samples running,
        as measured (None: not measured)."""
        if not self.measured or self.idle_step_seconds <= 0:
            return None
        per_sample = max(0.0, self.step_seconds - self.idle_step_seconds) / self.step_running
        return self.idle_step_seconds / (self.idle_step_seconds + per_sample * self.slots)

    @property
    def free(self) -> int:
        """Slots that no sample of its takes."""
        return max(0, self.slots - len(self.steps_left) - self.waiting)


@dataclass(frozen=True)
class WorkerView:
    """A worker's last state, and the seconds since the dispatcher received it."""

    state: SlotState
    age: float


def fixed_share_of(state: SlotState, bound: int = 0) -> float:
    """The fixed share of ``state``'s step time: as measured or guessed (``bound`` 0), or the low
    (-1) or high (+1) end of what it may be."""
    measured = state.fixed_share
    if measured is None:
        return FIXED_SHARE if bound == 0 else max(0.0, float(bound))
    return min(1.0, max(0.0, measured + bound * FIXED_SHARE_MARGIN))


def _step_seconds(state: SlotState, running: int, fixed_share: float) -> float:
    """Seconds a decode step takes with ``running`` samples, from the step time ``state`` reported,
    when ``fixed_share`` of a full step's time does not depend on the samples running."""

    def relative(n: int) -> float:
        return fixed_share + (1 - fixed_share) * n / state.slots

    return state.step_seconds * relative(running) / relative(state.step_running)


def _in_slots(view: WorkerView, steps_per_sample: int, fixed_share: float) -> tuple[list[tuple[int, int]], int]:
    """The samples in the worker's slots now, as (steps left, samples) in increasing steps, and the
    samples still waiting for a slot (the waiting ones that had a free slot started when the state
    was reported)."""
    state = view.state
    starting = min(state.waiting, max(0, state.slots - len(state.steps_left)))
    in_slots = (*state.steps_left, *[steps_per_sample] * starting)
    # Steps run since the state was reported, as many for every sample in a slot.
    done = int(view.age / _step_seconds(state, max(1, len(in_slots)), fixed_share))
    return sorted(Counter(max(0, left - done) for left in in_slots).items()), state.waiting - starting


def _end(
    state: SlotState, in_slots: list[tuple[int, int]], waiting: int, extra: int, steps_per_sample: int, fixed_share: float
) -> float:
    """``end_seconds`` from the samples in slots (``_in_slots``)."""
    to_start = waiting + extra
    busy = sum(count for _, count in in_slots)
    step_seconds = _step_seconds(state, 1, fixed_share) - _step_seconds(state, 0, fixed_share)  # per sample
    fixed_seconds = _step_seconds(state, 0, fixed_share)
    # Samples that end at a step counted from now: those in slots now (in increasing steps), and the
    # ones that take their freed slots (each later than the one before: a queue).
    started: deque[tuple[int, int]] = deque()
    starting = min(to_start, state.slots - busy)
    if starting > 0:
        started.append((steps_per_sample, starting))
        busy, to_start = busy + starting, to_start - starting
    first, step, seconds = 0, 0, 0.0
    while first < len(in_slots) or started:
        if started and (first == len(in_slots) or started[0][0] <= in_slots[first][0]):
            at, count = started.popleft()
        else:
            at, count = in_slots[first]
            first += 1
        seconds += (at - step) * (fixed_seconds + step_seconds * busy)
        step = at
        busy -= count
        refill = min(count, to_start)  # freed slots take the samples still to start
        if refill:
            started.append((at + steps_per_sample, refill))
            busy, to_start = busy + refill, to_start - refill
    return seconds


def end_seconds(view: WorkerView, extra: int, steps_per_sample: int, fixed_share: float | None = None) -> float:
    """Seconds from now until the worker of ``view`` would have finished its running samples, the
    ones waiting for a slot and ``extra`` more, each new one taking ``steps_per_sample`` steps (with
    ``fixed_share`` of a full step's time fixed; None: ``fixed_share_of`` its state)."""
    if fixed_share is None:
        fixed_share = fixed_share_of(view.state)
    in_slots, waiting = _in_slots(view, steps_per_sample, fixed_share)
    return _end(view.state, in_slots, waiting, extra, steps_per_sample, fixed_share)


def is_late(view: WorkerView, steps_per_sample: int) -> bool:
    """Whether the worker should have finished all it held by now (at the slower end of what its step
    time may be) by more than the margin: then it would have asked again.  (Not asking before that says
    nothing: an engine asks only when its free slots outnumber the samples it holds waiting, which
    may be a whole round.)"""
    state = view.state
    due = end_seconds(WorkerView(state, 0.0), 0, steps_per_sample, fixed_share_of(state, 1))
    return view.age > due * (1 + LATE_SHARE) + LATE_SECONDS


class _Prediction:
    """When the workers of ``views`` would end with more samples, under one model of the step time."""

    def __init__(self, views: Mapping[int, WorkerView], steps_per_sample: int, bound: int):
        self.views, self.steps_per_sample = views, steps_per_sample
        self._shares = {worker: fixed_share_of(view.state, bound) for worker, view in views.items()}
        self._slots = {worker: _in_slots(view, steps_per_sample, self._shares[worker]) for worker, view in views.items()}
        self._ends: dict[tuple[int, int], float] = {}

    def end(self, worker: int, extra: int) -> float:
        key = (worker, extra)
        if key not in self._ends:
            in_slots, waiting = self._slots[worker]
            state = self.views[worker].state
            self._ends[key] = _end(state, in_slots, waiting, extra, self.steps_per_sample, self._shares[worker])
        return self._ends[key]

    def most_by(self, worker: int, deadline: float, cap: int) -> int:
        """The most samples (up to ``cap``) ``worker`` can take and still end by ``deadline`` (0 if none fits)."""
        if self.end(worker, 0) > deadline:
            return 0
        low, high = 0, cap  # end(worker, low) <= deadline
        while low < high:
            middle = (low + high + 1) // 2
            if self.end(worker, middle) <= deadline:
                low = middle
            else:
                high = middle - 1
        return low

    def deadline(self, caps: Mapping[int, int], samples: int) -> float | None:
        """The earliest time (seconds from now, to a millisecond) by which the workers of ``caps``
        end with ``samples`` more among them, each taking at most its cap; None if the caps are too small."""
        low = max(self.end(worker, 0) for worker in caps)
        if sum(caps.values()) < samples:
            return None
        high = max(low, *(self.end(worker, min(cap, samples)) for worker, cap in caps.items()))
        while high - low > 1e-3:
            middle = (low + high) / 2
            if sum(self.most_by(worker, middle, cap) for worker, cap in caps.items()) >= samples:
                high = middle
            else:
                low = middle
        return high


def share_now(
    asker: int,
    wanted: int,
    remaining: int,
    views: Mapping[int, WorkerView],
    steps_per_sample: int,
    closed: Collection[int] = (),
) -> int:
    """How many of the queue's last ``remaining`` samples the asking worker takes now (at most
    ``wanted``): its part of the split among the workers in ``views`` (each with a measured state;
    the asker's own among them) whose last worker is predicted to end first.  The ``closed`` workers
    take nothing more in the run they are in (an engine answered with nothing asks no more until its
    run ends), but their end counts.

    The split is kept only if it would end no later than taking all it asked for at both ends of
    what the step time's fixed share may be (``fixed_share_of``: the measured share give or take
    ``FIXED_SHARE_MARGIN``; unmeasured, anything from a step time in proportion to the samples running
    to one that does not depend on them): where the model is wrong, the split must not cost."""
    greedy = min(wanted, remaining)
    if asker not in views or greedy == 0:
        return greedy
    caps = {worker: greedy if worker == asker else 0 if worker in closed else remaining for worker in views}
    split = _Prediction(views, steps_per_sample, 0)
    deadline = split.deadline(caps, remaining)
    if deadline is None:
        return greedy  # the others must take the rest whatever the asker takes now
    share = split.most_by(asker, deadline, greedy)
    if share == greedy:
        return greedy
    others = {worker: cap for worker, cap in caps.items() if worker != asker}

    def end(prediction: _Prediction, taken: int) -> float:
        rest = prediction.deadline(others, remaining - taken)
        return max(prediction.end(asker, taken), rest if rest is not None else float("inf"))

    for bound in (-1, 1):
        prediction = _Prediction(views, steps_per_sample, bound)
        if end(prediction, share) > end(prediction, greedy):
            return greedy
    return share
