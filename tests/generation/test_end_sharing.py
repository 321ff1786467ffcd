"""Sharing the end of a generation among device workers (harness/generation/end_sharing.py and the
dispatcher's use of it in work_queue.py): each engine says what its slots are doing when it asks for
work, and near the end the dispatcher splits the last samples so that the workers end together,
without ever counting on a worker that has stopped asking.  The simulation of whole runs against the
greedy queue is in tests/generation/test_bench_scripts.py (bench/dispatch_sim.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.generation.end_sharing import SlotState, WorkerView, end_seconds, is_late, share_now
from harness.generation.journal import JournalEntry
from harness.generation.plan import GenerationSettings, plan_jobs
from harness.generation.work_queue import Dispatcher, Finished, Ready, Want, WorkQueue

MS = 0.001


def _view(slots: int, steps_left: tuple[int, ...], waiting: int = 0, age: float = 0.0, step: float = MS) -> WorkerView:
    running = len(steps_left) or slots
    return WorkerView(SlotState(slots, steps_left, waiting, step, running), age)


def test_the_predicted_end_follows_the_running_samples_and_the_step_time_of_each_batch():
    # 4 slots, steps left 10, 10, 20, 20, 1 ms a step with 4 running; half of a full step is fixed, so
    # with 2 running a step takes 0.75 ms.
    view = _view(4, (10, 10, 20, 20))
    assert end_seconds(view, 0, 30, fixed_share=0.5) == pytest.approx(10 * MS + 10 * 0.75 * MS)
    # Two more samples of 30 steps take the slots freed at step 10: 4 running until 20, 2 until 40.
    assert end_seconds(view, 2, 30, fixed_share=0.5) == pytest.approx(20 * MS + 20 * 0.75 * MS)
    # Reported 5 ms ago: 5 steps of each sample are done.
    assert end_seconds(_view(4, (10, 10, 20, 20), age=5 * MS), 0, 30, fixed_share=0.5) == pytest.approx(5 * MS + 10 * 0.75 * MS)
    # With the step time the same whatever runs, only the steps count.
    assert end_seconds(view, 2, 30, fixed_share=1.0) == pytest.approx(40 * MS)
    # Samples waiting for a slot when it asked started then (it had room for them).
    assert end_seconds(_view(4, (), waiting=4), 0, 30, fixed_share=1.0) == pytest.approx(30 * MS)


def test_a_worker_is_late_once_it_should_have_finished_all_it_held_and_has_not_asked():
    # Samples with 100 and 300 steps left, 1 ms a step at most: done after 0.3 s; 25% and 0.2 s more
    # are allowed.
    assert not is_late(_view(2, (100, 300), age=0.55), 512)
    assert is_late(_view(2, (100, 300), age=0.6), 512)
    # Samples waiting for its slots count: 2 more of 512 steps start as the first two end.
    assert not is_late(_view(2, (100, 300), waiting=2, age=1.0), 512)


def test_rounds_ending_together_split_the_last_samples_where_the_asker_cannot_take_them_all():
    # Each worker: 256 slots, every sample at the limit, so they free all at once.  The asker's have
    # just ended; the other's end in 16 steps.  400 samples are left: greedily the asker would take
    # 256 and the other 144; they would end a round apart if the asker had to take the rest later.
    asker = _view(256, (), step=6 * MS)
    other = _view(256, (16,) * 256, step=6 * MS)
    share = share_now(0, 256, 400, {0: asker, 1: other}, 512)
    assert 190 <= share <= 210
    # With the other's slots 300 steps from freeing, the asker takes all it asked for.
    assert share_now(0, 256, 400, {0: asker, 1: _view(256, (300,) * 256, step=6 * MS)}, 512) == 256


def test_the_asker_takes_all_it_asked_for_when_the_other_cannot_or_a_split_might_cost():
    asker = _view(256, (), step=6 * MS)
    other = _view(256, (16,) * 256, step=6 * MS)
    # The other's engine was answered with nothing: it asks no more in its run.
    assert share_now(0, 256, 400, {0: asker, 1: other}, 512, closed=[1]) == 256
    # The asker has room for every sample left: a split would gain only if a smaller batch ran faster,
    # and were it not so, the other's share would end 16 steps after the asker's.
    assert share_now(0, 256, 200, {0: asker, 1: other}, 512) == 200
    # No other worker in the split.
    assert share_now(0, 256, 400, {0: asker}, 512) == 256


def _dispatcher(clock: list[float], samples: int, n: int = 16) -> Dispatcher:
    prompts = [(task, "x" * (100 + task)) for task in range(samples // n)]
    jobs = plan_jobs(prompts, GenerationSettings("m", n=n, max_new_tokens=512))
    dispatcher = Dispatcher(WorkQueue(jobs), lambda entry: None, clock=lambda: clock[0])
    for label in ("gpu0", "gpu1"):
        dispatcher.handle(dispatcher.add_worker(label), Ready(label))
    return dispatcher


def _count(replies) -> dict[int, int]:
    return {worker: sum(len(job.samples) for job in jobs) for worker, jobs in replies}


FREE = SlotState(256, (), 0, 6 * MS, 256)  # 256 slots, all free, 6 ms a step when full


def test_the_dispatcher_splits_the_last_round_between_workers_whose_slots_free_together():
    clock = [0.0]
    dispatcher = _dispatcher(clock, samples=912)
    # Each fills its 256 slots, worker 1 0.1 s after worker 0: 400 samples are left.
    assert _count(dispatcher.handle(0, Want(256, slots=FREE))) == {0: 256}
    clock[0] = 0.1
    assert _count(dispatcher.handle(1, Want(256, slots=FREE))) == {1: 256}
    # 512 steps later worker 0's samples end (all at the token limit); worker 1's end 0.1 s after.
    clock[0] = 512 * 6 * MS
    first = _count(dispatcher.handle(0, Want(256, slots=FREE)))[0]
    assert 200 <= first <= 224  # its share, 209, rounded up to whole prompts of 16 while plenty is left
    clock[0] += 0.1
    assert _count(dispatcher.handle(1, Want(256, slots=FREE))) == {1: 400 - first}
    assert dispatcher.queue.unassigned == 0


def test_a_worker_that_stopped_asking_is_not_counted_on():
    clock = [0.0]
    dispatcher = _dispatcher(clock, samples=912)
    dispatcher.handle(0, Want(256, slots=FREE))
    clock[0] = 0.1
    dispatcher.handle(1, Want(256, slots=FREE))
    # Worker 1's samples should have ended 2 s ago and it has not asked (slower than it said, or
    # gone): worker 0 takes all it asks for.
    clock[0] = 512 * 6 * MS + 2.1
    assert _count(dispatcher.handle(0, Want(256, slots=FREE))) == {0: 256}


def test_a_waiting_worker_gets_its_share_when_the_other_falls_behind():
    clock = [0.0]
    dispatcher = _dispatcher(clock, samples=120, n=20)
    # Worker 0's 236 running samples are 16 steps from their end; it takes 20 more.
    [(_, taken)] = dispatcher.handle(0, Want(20, slots=SlotState(256, (16,) * 236, 0, 6 * MS, 256)))
    assert sum(len(job.samples) for job in taken) == 20
    # Worker 1 is ten times slower: worker 0 will run the other 100 sooner.  Answered with nothing,
    # its engine runs down and waits.
    assert dispatcher.handle(1, Want(20, slots=SlotState(256, (), 0, 60 * MS, 256))) == [(1, ())]
    assert dispatcher.handle(1, Want(1, wait=True)) == []
    # Five seconds later worker 0 has not asked (it should have been done after 3.2 s): at its next
    # finished sample the waiting worker is served.
    clock[0] = 5.0
    entry = JournalEntry(taken[0].task_id, taken[0].samples[0].index, 0, "", 1, "length", "")
    assert _count(dispatcher.handle(0, Finished(entry))).get(1, 0) >= 1


def test_without_slot_states_the_queue_hands_out_what_is_asked():
    clock = [0.0]
    dispatcher = _dispatcher(clock, samples=400, n=20)
    assert _count(dispatcher.handle(0, Want(256))) == {0: 260}  # whole prompts while plenty is left
    assert _count(dispatcher.handle(1, Want(256))) == {1: 140}


def test_the_end_is_not_shared_while_most_samples_stop_before_the_token_limit():
    clock = [0.0]
    dispatcher = _dispatcher(clock, samples=912)
    [(_, taken)] = dispatcher.handle(0, Want(256, slots=FREE))
    clock[0] = 0.1
    dispatcher.handle(1, Want(256, slots=FREE))
    # Most of worker 0's samples stopped early (an end-of-sequence token): slots free steadily, and
    # the prediction, which counts every sample at the limit, would be far off.
    keys = [(job.task_id, spec.index) for job in taken for spec in job.samples]
    for number, (task, index) in enumerate(keys):
        dispatcher.handle(0, Finished(JournalEntry(task, index, 0, "", 100 if number % 4 else 512, "eos", "")))
    clock[0] = 512 * 6 * MS
    assert _count(dispatcher.handle(0, Want(256, slots=FREE))) == {0: 256}


def test_a_measured_idle_step_says_how_much_a_smaller_batch_saves():
    # 6 ms a step with all 256 slots running, 3 ms with none: half of a full step is fixed.
    assert SlotState(256, (), 0, 6 * MS, 256, 3 * MS).fixed_share == pytest.approx(0.5)
    assert SlotState(256, (), 0, 6 * MS, 128, 3 * MS).fixed_share == pytest.approx(1 / 3)  # 3 ms for 128
    assert SlotState(256, (), 0, 6 * MS, 256).fixed_share is None  # not measured


def test_with_the_fixed_share_measured_a_sample_that_would_wait_a_round_goes_to_the_other_worker():
    # The asker would take whole prompts, 12 samples beyond its free slots: they would wait for its
    # next round.  The other worker's slots free 1.5 s later.  Unmeasured, a step time in proportion
    # to the samples running (12 more cost almost nothing) cannot be ruled out, and the asker takes
    # them all; measured (0.41 fixed, the 3B shape on an H200), the 12 go to the other.
    asker = SlotState(256, (), 8, 5.98 * MS, 256)
    other = SlotState(256, (), 264, 5.98 * MS, 256)
    views = {0: WorkerView(asker, 0.0), 1: WorkerView(other, 1.56)}
    assert share_now(0, 260, 400, views, 512) == 260
    measured = {worker: WorkerView(replace(view.state, idle_step_seconds=2.47 * MS), view.age) for worker, view in views.items()}
    assert share_now(0, 260, 400, measured, 512) == 248
