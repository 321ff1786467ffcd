"""One shared queue for every device worker (harness/generation/work_queue.py): samples go in small
chunks to whichever worker is free, about as many as it asks for (whole prompts; near the end exactly
as many), so a slow device takes less; a worker process that dies gives its unfinished samples back to
the others; the driver journals each (task, sample) exactly once; engines take their prompts lazily,
as their slots free up; and the merged generations.json equals a one-process run (real tiny model,
fp32, CPU).  Worker threads, the default for several local devices: tests/generation/test_device_threads.py."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from harness.errors import GenerationError
from harness.generation.end_sharing import SlotState
from harness.generation.engine import FinishedSample, FinishReason, JobSource, each_job, load_model
from harness.generation.factory import ModelEngineFactory
from harness.generation.fast_engine import FastEngine, FastEngineOptions
from harness.generation.generate import generate
from harness.generation.hf_engine import HFEngine
from harness.generation.journal import JournalEntry, SampleJournal
from harness.generation.plan import GenerationSettings, PromptJob, SamplingSettings, plan_jobs
from harness.generation.work_queue import Dispatcher, Done, Finished, Ready, Want, WorkQueue
from harness.generation.workers import DeviceWorkers
from tests.support.fake_engine import expected_document, fake_text
from tests.support.tiny_model import build_tiny_model

PROMPTS = [(task_id, f"\nQUESTION:\nproblem {task_id} " + "x" * (task_id % 7) + "\nANSWER:\n") for task_id in range(16)]
SETTINGS = GenerationSettings("fake-model", n=3, max_new_tokens=32)
SAMPLED = SamplingSettings(temperature=0.7, top_k=20, top_p=0.95, seed=5)


def _expected_document(prompts=PROMPTS, settings=SETTINGS):
    return expected_document(prompts, settings)


def _journaled(output) -> Counter:
    """How many times each (task, sample) is in the journal, over all its parts."""
    journal = SampleJournal(output.with_name(output.name + ".journal"))
    return Counter(
        (record["task_id"], record["index"])
        for part in sorted(journal.directory.glob("part-*.jsonl"))
        for record in SampleJournal(journal.directory).part(int(part.stem.split("-")[1])).records()
    )


# -- a paced stand-in for a device: pulls one prompt at a time, can be slow or die --------------------
@dataclass(frozen=True)
class PacedEngine:
    delay_s: float
    die_after: int | None  # SIGKILL its own process after this many samples (a device lost mid-run)
    meet: tuple[str, str, frozenset[str]] | None = None  # (directory, this device, every device): see the factory

    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: Callable[[FinishedSample], None]) -> None:
        if self.meet is not None:
            directory, device, everyone = self.meet
            open(os.path.join(directory, device), "w").close()
            deadline = time.monotonic() + 60
            while set(os.listdir(directory)) < everyone and time.monotonic() < deadline:
                time.sleep(0.01)
        emitted = 0
        for job in each_job(jobs):
            for spec in job.samples:
                if self.die_after is not None and emitted >= self.die_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(self.delay_s)
                text = fake_text(job.task_id, spec.index, spec.seed)
                on_sample(FinishedSample(job.task_id, spec.index, spec.seed, (1, 2, 3), text, FinishReason.STOP))
                emitted += 1


@dataclass(frozen=True)
class PacedEngineFactory:
    delays: tuple[tuple[str, float], ...]  # per device name
    die_after: tuple[tuple[str, int], ...] = ()
    # A directory: every worker's engine, once it has its first prompt, waits there for the others (no
    # head start).  In its run: the factory only builds.
    meet_in: str | None = None

    def __call__(self, device: str, say: Callable[[str], None]) -> PacedEngine:
        meet = (self.meet_in, device, frozenset(name for name, _ in self.delays)) if self.meet_in is not None else None
        return PacedEngine(dict(self.delays)[device], dict(self.die_after).get(device), meet)


# -- the queue and the dispatcher (pure) ------------------------------------------------------------
def _jobs(n: int = 3) -> list[PromptJob]:
    return plan_jobs(PROMPTS[:4], GenerationSettings("m", n=n, max_new_tokens=8))


def _handed(jobs: Sequence[PromptJob]) -> list[tuple[int, list[int]]]:
    return [(job.task_id, [spec.index for spec in job.samples]) for job in jobs]


def test_the_queue_hands_out_whole_prompts_longest_first_and_near_the_end_exactly_what_is_asked():
    queue = WorkQueue(_jobs())  # prompts of tasks 0..3 with 3 samples each: task 3 is the longest
    # Whole prompts while the queue keeps at least their surplus over what was asked for the others.
    assert _handed(queue.take(0, 1)) == [(3, [0, 1, 2])]
    assert _handed(queue.take(1, 4)) == [(2, [0, 1, 2]), (1, [0, 1, 2])]
    # Then exactly what is asked: the rest of the prompt stays first in the queue.
    assert _handed(queue.take(0, 1)) == [(0, [0])]
    assert queue.take(0, 0) == ()
    # A worker starting a run (a Want with wait) gets a whole prompt, more than it asked for.
    assert _handed(queue.take(1, 1, whole_first=True)) == [(0, [1, 2])]
    assert queue.take(1, 1) == () and queue.remaining == 12 and not queue.all_finished
    assert (queue.holds(0), queue.holds(1)) == (4, 8)
    # The samples of a split prompt go back as a whole one's do.
    assert queue.give_back(0) == 4
    assert _handed(queue.take(1, 4)) == [(3, [0, 1, 2]), (0, [0])]


def test_the_queue_says_what_a_take_would_hand_out_and_can_keep_within_free_slots():
    for asked in range(0, 14):
        queue = WorkQueue(_jobs())
        queue.take(0, 1)  # task 3 out: 9 samples left in three prompts
        would = queue.would_take(asked)
        assert would == sum(len(job.samples) for job in queue.take(1, asked))
        assert queue.unassigned == 9 - would  # would_take changed nothing
    # Near the end a worker's share stays within its free slots: a whole prompt would put a sample
    # beyond them, to wait for a slot.
    queue = WorkQueue(_jobs())
    queue.take(0, 1)
    assert _handed(queue.take(1, 2, at_most=2)) == [(2, [0, 1])]


def test_a_lost_workers_unfinished_samples_go_first_and_each_sample_counts_once():
    queue = WorkQueue(_jobs())
    held = queue.take(0, 1)[0]  # task 3, samples 0..2
    assert queue.finish((3, 0))
    assert queue.give_back(0) == 2 and queue.requeued == 2
    again = queue.take(1, 1)
    assert _handed(again) == [(3, [1, 2])]
    assert again[0].prompt == held.prompt
    assert queue.finish((3, 1)) and not queue.finish((3, 1))  # the second report of a sample is dropped
    with pytest.raises(GenerationError, match="did not ask for"):
        queue.finish((99, 0))


def test_the_dispatcher_keeps_idle_workers_waiting_until_work_comes_back_or_none_will():
    journaled: list[JournalEntry] = []
    dispatcher = Dispatcher(WorkQueue(_jobs(n=1)), journaled.append)
    fast, slow = dispatcher.add_worker("fast"), dispatcher.add_worker("slow")
    for worker in (fast, slow):
        dispatcher.handle(worker, Ready("cpu"))
    [(_, given)] = dispatcher.handle(slow, Want(1, wait=True))
    [(_, rest)] = dispatcher.handle(fast, Want(10, wait=True))
    assert len(given) == 1 and len(rest) == 3
    for job in rest:
        dispatcher.handle(fast, Finished(_entry(job.task_id, 0)))
    assert dispatcher.handle(fast, Want(10, wait=True)) == []  # nothing now, but `slow` might still be lost
    replies = dispatcher.lose(slow, "node removed")  # its prompt goes to the waiting worker
    assert replies == [(fast, given)]
    assert dispatcher.handle(fast, Finished(_entry(given[0].task_id, 0))) == []
    assert dispatcher.handle(fast, Want(1, wait=True)) == [(fast, ())]  # everything is finished
    dispatcher.handle(fast, Done(None))
    assert dispatcher.complete and len(journaled) == 4 and dispatcher.lost == ["slow"]


def test_when_every_worker_is_lost_the_run_fails_with_what_is_left():
    dispatcher = Dispatcher(WorkQueue(_jobs()), lambda entry: None)
    only = dispatcher.add_worker("cuda:0")
    dispatcher.handle(only, Ready("cuda:0"))
    dispatcher.handle(only, Want(1, wait=True))
    with pytest.raises(GenerationError, match=r"every generation worker was lost .* 12 samples unfinished"):
        dispatcher.lose(only, "exit code -9")


def _directory(path):
    path.mkdir()
    return str(path)


def _entry(task_id: int, index: int) -> JournalEntry:
    return JournalEntry(task_id, index, 0, "out", 1, "stop", "sha")


# -- engines take their prompts as their slots free up ----------------------------------------------
class RecordingSource:
    """A source over fixed jobs that notes, at every take, how many samples had finished by then."""

    def __init__(self, jobs: Sequence[PromptJob]):
        self.planned, self._left = list(jobs), list(jobs)
        self.finished = 0
        self.takes: list[tuple[int, int]] = []  # (samples finished so far, samples asked for)
        self.slots: list[SlotState | None] = []  # what the engine said of its slots at each take

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        self.takes.append((self.finished, samples))
        self.slots.append(slots)
        if not self._left:
            return []
        job = self._left.pop(0)
        return [job]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "llama")


@pytest.mark.parametrize("kind", ["fast", "hf"])
def test_engines_take_prompts_lazily_and_generate_what_a_list_would(tiny_dir, kind):
    model, tokenizer = load_model(str(tiny_dir), "float32", "cpu")
    jobs = plan_jobs(PROMPTS[:6], GenerationSettings("m", n=3, max_new_tokens=12, sampling=SAMPLED))
    if kind == "fast":
        engine = FastEngine(model, tokenizer, SAMPLED, FastEngineOptions(slots=4, chunk_steps=4))
    else:
        engine = HFEngine(model, tokenizer, SAMPLED, batch_size=4, check_every=4)
    from_list: dict = {}
    engine.run(jobs, lambda s: from_list.setdefault((s.task_id, s.index), s.token_ids))
    source = RecordingSource(jobs)
    lazily: dict = {}

    def sink(sample: FinishedSample) -> None:
        source.finished += 1
        assert (sample.task_id, sample.index) not in lazily
        lazily[(sample.task_id, sample.index)] = sample.token_ids

    engine.run(source, sink)
    assert lazily == from_list and len(lazily) == 18
    # Never more than the free room was asked for, and most prompts arrived after samples had finished.
    assert all(asked <= 4 for _, asked in source.takes)
    assert sum(finished > 0 for finished, _ in source.takes) >= 4
    assert source.takes[-1][0] > 0  # the last (empty) take came once the run had room again
    if kind == "hf":
        assert set(source.slots) == {None}  # it does not say what its rows are doing
        return
    # The fast engine says what its slots are doing at each take: 4 slots, each running sample's
    # steps left within the budget, room for what it asks, and its step time once it has timed a chunk.
    states = [state for state in source.slots if state is not None]
    assert len(states) == len(source.slots)
    for state, (_, asked) in zip(states, source.takes):
        assert state.slots == 4 and all(0 <= left <= 12 for left in state.steps_left)
        assert state.free == asked
    assert sum(state.measured for state in states) >= len(states) - 2
    assert all(state.idle_step_seconds > 0 for state in states)  # timed before the first chunk


# -- workers on one queue --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(DeviceWorkers))
def test_a_slow_worker_takes_less_and_every_sample_is_journaled_once(tmp_path, mode):
    output = tmp_path / "generations.json"
    factory = PacedEngineFactory((("cpu:0", 0.01), ("cpu:1", 0.1)), meet_in=_directory(tmp_path / "meet"))
    summary = generate(PROMPTS, SETTINGS, output, factory, devices=("cpu:0", "cpu:1"), device_workers=mode)
    assert json.loads(output.read_text()) == _expected_document()
    assert _journaled(output) == Counter({(t, i): 1 for t, _ in PROMPTS for i in range(3)})
    by_worker = summary.samples_by_worker
    assert sum(by_worker.values()) == 48 and by_worker["cpu:0"] > 2 * by_worker["cpu:1"] and by_worker["cpu:1"] >= 1
    assert summary.workers_lost == () and summary.requeued == 0
    # When each worker's model had loaded and when it returned its last sample, from the start.
    ready, last = summary.ready_seconds_by_worker, summary.last_sample_seconds_by_worker
    assert set(ready) == set(last) == {"cpu:0", "cpu:1"}
    assert all(0 <= ready[worker] < last[worker] <= summary.seconds for worker in ready)
    # How long each took to build its engine (within its ready time), and when it had stopped.
    built, stopped = summary.build_seconds_by_worker, summary.stopped_seconds_by_worker
    assert all(0 <= built[worker] <= ready[worker] for worker in ready)
    assert all(last[worker] <= stopped[worker] <= summary.workers_ended_seconds <= summary.seconds for worker in ready)


def test_a_worker_killed_mid_run_gives_its_samples_to_the_other(tmp_path):
    output = tmp_path / "generations.json"
    factory = PacedEngineFactory(
        (("cpu:0", 0.02), ("cpu:1", 0.02)), die_after=(("cpu:1", 4),), meet_in=_directory(tmp_path / "m")
    )
    said: list[str] = []
    processes = DeviceWorkers.PROCESSES  # a worker thread cannot be lost without a word: it raises
    summary = generate(PROMPTS, SETTINGS, output, factory, devices=("cpu:0", "cpu:1"), say=said.append, device_workers=processes)
    assert summary.workers_lost == ("cpu:1",) and summary.requeued >= 1
    assert any("cpu:1 lost (process exited with code -9)" in line for line in said)
    assert json.loads(output.read_text()) == _expected_document()
    assert _journaled(output) == Counter({(t, i): 1 for t, _ in PROMPTS for i in range(3)})
    assert summary.generated == 48


def test_when_every_worker_dies_the_run_fails_and_a_rerun_resumes(tmp_path):
    output = tmp_path / "generations.json"
    both = (("cpu:0", 0.0), ("cpu:1", 0.0))
    dying = PacedEngineFactory(both, die_after=(("cpu:0", 5), ("cpu:1", 5)), meet_in=_directory(tmp_path / "meet"))
    with pytest.raises(GenerationError, match="every generation worker was lost"):
        generate(PROMPTS, SETTINGS, output, dying, devices=("cpu:0", "cpu:1"), device_workers=DeviceWorkers.PROCESSES)
    kept = _journaled(output)
    assert 5 <= sum(kept.values()) <= 10 and set(kept.values()) == {1}
    summary = generate(PROMPTS, SETTINGS, output, PacedEngineFactory((("cpu", 0.0),)), devices=("cpu",))
    assert summary.resumed == sum(kept.values()) and summary.generated == 48 - summary.resumed
    assert json.loads(output.read_text()) == _expected_document()


def test_two_real_engine_processes_on_one_queue_equal_one_process(tiny_dir, tmp_path):
    settings = GenerationSettings(str(tiny_dir), n=3, max_new_tokens=24, sampling=SAMPLED, dtype="float32")
    prompts = PROMPTS[:8]
    for engine in ("fast", "hf"):
        factory = ModelEngineFactory(settings, engine, batch_size=2, chunk_steps=4)
        one = generate(prompts, settings, tmp_path / engine / "one.json", factory)
        two = generate(
            prompts,
            settings,
            tmp_path / engine / "two.json",
            factory,
            devices=("cpu", "cpu"),
            device_workers=DeviceWorkers.PROCESSES,
        )
        assert (tmp_path / engine / "one.json").read_text() == (tmp_path / engine / "two.json").read_text()
        assert one.generated == two.generated == 24 and one.new_tokens == two.new_tokens
        assert _journaled(tmp_path / engine / "two.json") == Counter({(t, i): 1 for t, _ in prompts for i in range(3)})
