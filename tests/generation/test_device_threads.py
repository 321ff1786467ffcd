"""Several local devices as worker threads in the driver's process (``--device-workers threads``, the
default): real engines on two CPU "devices" generate byte for byte what one device does (fp32); a
worker thread that raises fails the run with its reason and the other stops at its next call, as do
both after Ctrl-C; what was journaled stays, and a rerun resumes.  The queue, the dispatcher and worker
processes: tests/generation/test_shared_queue.py."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from harness.errors import GenerationError, ModelError
from harness.generation.engine import Engine, FinishedSample, FinishReason, JobSource, each_job
from harness.generation.factory import ModelEngineFactory
from harness.generation.generate import generate
from harness.generation.journal import SampleJournal
from harness.generation.plan import GenerationSettings, PromptJob, SamplingSettings
from harness.generation.workers import DeviceWorkers
from tests.support.fake_engine import FakeEngineFactory, expected_document, fake_text
from tests.support.tiny_model import build_tiny_model

PROMPTS = [(task_id, f"\nQUESTION:\nproblem {task_id} " + "y" * (task_id % 5) + "\nANSWER:\n") for task_id in range(16)]
SETTINGS = GenerationSettings("fake-model", n=3, max_new_tokens=32)
SAMPLED = SamplingSettings(temperature=0.7, top_k=20, top_p=0.95, seed=5)
EVERY_SAMPLE = Counter({(t, i): 1 for t, _ in PROMPTS for i in range(3)})


def _journaled(output) -> Counter:
    journal = SampleJournal(output.with_name(output.name + ".journal"))
    return Counter((record["task_id"], record["index"]) for record in journal.part(0).records())


def _worker_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("generate-")]


@dataclass(frozen=True)
class RecordingFactory:
    """The real engines, noting where each was built: (process id, thread name)."""

    inner: ModelEngineFactory
    built: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, device: str, say: Callable[[str], None]) -> Engine:
        self.built.append((os.getpid(), threading.current_thread().name))
        return self.inner(device, say)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "llama")


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_two_worker_threads_generate_what_one_device_does(tiny_dir, tmp_path, engine):
    settings = GenerationSettings(str(tiny_dir), n=3, max_new_tokens=24, sampling=SAMPLED, dtype="float32")
    prompts = PROMPTS[:8]
    factory = RecordingFactory(ModelEngineFactory(settings, engine, batch_size=2, chunk_steps=4))
    one = generate(prompts, settings, tmp_path / "one.json", factory)
    two = generate(prompts, settings, tmp_path / "two.json", factory, devices=("cpu", "cpu"))
    assert (tmp_path / "one.json").read_text() == (tmp_path / "two.json").read_text()
    assert one.generated == two.generated == 24 and one.new_tokens == two.new_tokens
    # The one device in this thread; the two in threads of this process (no process spawned).
    assert factory.built[0] == (os.getpid(), threading.current_thread().name)
    assert sorted(factory.built[1:]) == [(os.getpid(), "generate-cpu #0"), (os.getpid(), "generate-cpu #1")]
    assert set(two.samples_by_worker) == {"cpu #0", "cpu #1"} and sum(two.samples_by_worker.values()) == 24
    assert set(two.ready_seconds_by_worker) == {"cpu #0", "cpu #1"} and _worker_threads() == []


@dataclass(frozen=True)
class MeetingFactory:
    """Fake engines whose builds wait for each other: both builds must be under way at once."""

    meeting: threading.Barrier

    def __call__(self, device: str, say: Callable[[str], None]) -> Engine:
        self.meeting.wait()  # BrokenBarrierError after its timeout if the other build is not under way
        return FakeEngineFactory()(device, say)


def test_worker_threads_build_their_engines_at_once(tmp_path):
    # A device's model load is mostly its copy to the device: a second GPU's worker must not wait for the
    # first's (it started ~2 s late on two H200s when the builds took turns).
    output = tmp_path / "generations.json"
    generate(PROMPTS, SETTINGS, output, MeetingFactory(threading.Barrier(2, timeout=30)), devices=("cpu:0", "cpu:1"))
    assert json.loads(output.read_text()) == expected_document(PROMPTS, SETTINGS)


def test_transformers_reads_a_model_under_the_process_wide_lock_and_copies_it_outside(tiny_dir, monkeypatch):
    # from_pretrained changes process-wide state (torch's default dtype) while it reads: one read at a
    # time in this process.  The copy to the device needs no lock.
    import transformers

    from harness.generation import engine as engine_module

    held: dict[str, bool] = {}
    real_read = transformers.AutoModelForCausalLM.from_pretrained

    def read(*args, **kwargs):
        held["read"] = engine_module.FROM_PRETRAINED_LOCK.locked()
        model = real_read(*args, **kwargs)
        real_to = model.to

        def to(*to_args, **to_kwargs):
            held["copy"] = engine_module.FROM_PRETRAINED_LOCK.locked()
            return real_to(*to_args, **to_kwargs)

        model.to = to
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", read)
    model, _ = engine_module.load_model(str(tiny_dir), "float32", "cpu")
    assert held == {"read": True, "copy": False} and not engine_module.FROM_PRETRAINED_LOCK.locked()
    assert next(model.parameters()).dtype.is_floating_point


def test_worker_threads_share_one_tokenizer_read_once_while_an_engine_holds_it(tiny_dir, tmp_path, monkeypatch):
    # Reading a tokenizer holds the interpreter (two at once took 0.61 s each on the H200 machine, one
    # alone 0.27 s): the workers of one process read it once.  Once no engine holds it, it is read anew.
    import gc

    import transformers

    from harness.generation import engine as engine_module

    reads: list[str] = []
    real_read = transformers.AutoTokenizer.from_pretrained

    def read(path, *args, **kwargs):
        reads.append(str(path))
        return real_read(path, *args, **kwargs)

    gc.collect()  # no engine of an earlier test of this model holds its tokenizer (a cycle's leftover)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", read)
    settings = GenerationSettings(str(tiny_dir), n=2, max_new_tokens=8, sampling=SAMPLED, dtype="float32")
    engines: list[Engine] = []

    @dataclass(frozen=True)
    class Keeping:
        def __call__(self, device: str, say: Callable[[str], None]) -> Engine:
            engines.append(ModelEngineFactory(settings, "fast", batch_size=2, chunk_steps=4)(device, say))
            return engines[-1]

    generate(PROMPTS[:4], settings, tmp_path / "g.json", Keeping(), devices=("cpu", "cpu"))
    assert len(engines) == 2 and engines[0].tokenizer is engines[1].tokenizer  # type: ignore[attr-defined]
    assert reads == [str(tiny_dir)]
    held = engines.pop().tokenizer  # type: ignore[attr-defined]
    engines.clear()
    assert engine_module.load_tokenizer(str(tiny_dir)) is held and len(reads) == 1
    del held
    gc.collect()
    assert engine_module.load_tokenizer(str(tiny_dir)) is not None and len(reads) == 2


def test_prompts_are_tokenized_in_batches_as_they_are_one_by_one(tiny_dir):
    from transformers import AutoTokenizer

    from harness.generation.engine import prompt_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    jobs = [
        PromptJob(task_id, prompt, (), add_special_tokens=task_id % 3 != 0)
        for task_id, prompt in [*PROMPTS[:7], (7, ""), (8, "\u00e9t\u00e9 \U0001f600 ")]
    ]
    one_by_one = [tokenizer(job.prompt, add_special_tokens=job.add_special_tokens)["input_ids"] for job in jobs]
    assert prompt_token_ids(tokenizer, jobs) == one_by_one
    assert any(a != b for a, b in zip(one_by_one, [tokenizer(job.prompt)["input_ids"] for job in jobs]))


@dataclass(frozen=True)
class _Model:
    cycle: list = field(default_factory=list)


@dataclass(frozen=True)
class CyclicFactory:
    """Fake engines, optionally kept alive by a reference cycle through themselves or their model."""

    through: str  # "nothing", "engine" or "model"

    def __call__(self, device: str, say: Callable[[str], None]) -> Engine:
        engine = FakeEngineFactory()(device, say)
        model = _Model()
        object.__setattr__(engine, "model", model)
        if self.through == "engine":
            object.__setattr__(engine, "itself", [engine])
        elif self.through == "model":
            model.cycle.append(model)
        return engine


@pytest.mark.parametrize("through", ["nothing", "engine", "model"])
def test_a_worker_collects_garbage_only_when_a_cycle_holds_its_engine(tmp_path, monkeypatch, through):
    # A full collection costs 0.2 s, and holds the other worker threads meanwhile: only when the
    # engine, or its model, outlives the worker's last reference to it.
    import types

    from harness.generation import workers

    collections: list[int] = []
    monkeypatch.setattr(workers, "gc", types.SimpleNamespace(collect=lambda: collections.append(1)))
    output = tmp_path / "g.json"
    generate(PROMPTS[:3], SETTINGS, output, CyclicFactory(through), devices=("cpu:0", "cpu:1"))
    assert json.loads(output.read_text()) == expected_document(PROMPTS[:3], SETTINGS)
    assert len(collections) == (0 if through == "nothing" else 2)


# -- failures and interrupts ------------------------------------------------------------------------
@dataclass(frozen=True)
class PacedEngine:
    """Emits fake samples one every ``delay_s``; after ``fail_after`` of them, ``fail`` is called."""

    delay_s: float
    fail_after: int | None
    fail: Callable[[int], None]

    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: Callable[[FinishedSample], None]) -> None:
        emitted = 0
        for job in each_job(jobs):
            for spec in job.samples:
                if emitted == self.fail_after:
                    self.fail(emitted)
                time.sleep(self.delay_s)
                text = fake_text(job.task_id, spec.index, spec.seed)
                on_sample(FinishedSample(job.task_id, spec.index, spec.seed, (1, 2), text, FinishReason.STOP))
                emitted += 1


def _crash(emitted: int) -> None:
    raise RuntimeError(f"device fault after {emitted} samples")


def _interrupt(emitted: int) -> None:
    # What Ctrl-C does: SIGINT to the main thread, which waits for the workers.
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@dataclass(frozen=True)
class PacedFactory:
    """``cpu:0`` emits a sample every 20 ms; ``cpu:1`` fails (``fail``) after 3 samples, or cannot
    build its engine at all (``broken``)."""

    fail: Callable[[int], None] = _crash
    broken: bool = False

    def __call__(self, device: str, say: Callable[[str], None]) -> PacedEngine:
        if device == "cpu:1":
            if self.broken:
                raise ModelError("cannot load model 'x': no such file")
            return PacedEngine(0.0, 3, self.fail)
        return PacedEngine(0.02, None, _crash)


def _resume(output) -> None:
    """A rerun generates only what the journal lacks and writes the whole file."""
    kept = _journaled(output)
    summary = generate(PROMPTS, SETTINGS, output, FakeEngineFactory(), devices=("cpu:0", "cpu:1"))
    assert summary.resumed == sum(kept.values()) and summary.generated == 48 - summary.resumed
    assert json.loads(output.read_text()) == expected_document(PROMPTS, SETTINGS)
    assert _journaled(output) == EVERY_SAMPLE


def test_a_worker_thread_that_raises_fails_the_run_the_other_stops_and_a_rerun_resumes(tmp_path):
    output = tmp_path / "generations.json"
    with pytest.raises(GenerationError, match=r"^cpu:1 failed: RuntimeError: device fault after 3 samples \(test_device_threads"):
        generate(PROMPTS, SETTINGS, output, PacedFactory(), devices=("cpu:0", "cpu:1"))
    kept = _journaled(output)
    # cpu:1's three samples and the few cpu:0 had finished (20 ms each) before it stopped: far from
    # the 48 it would have generated alone had it not stopped.
    assert set(kept.values()) == {1} and 3 <= sum(kept.values()) < 24
    assert _worker_threads() == []
    _resume(output)


def test_a_worker_thread_whose_engine_cannot_be_built_fails_the_run(tmp_path):
    output = tmp_path / "generations.json"
    with pytest.raises(GenerationError, match=r"^cpu:1 failed: ModelError: cannot load model 'x': no such file"):
        generate(PROMPTS, SETTINGS, output, PacedFactory(broken=True), devices=("cpu:0", "cpu:1"))
    assert sum(_journaled(output).values()) < 48 and _worker_threads() == []
    _resume(output)


def test_after_ctrl_c_the_worker_threads_stop_and_a_rerun_resumes(tmp_path):
    output = tmp_path / "generations.json"
    with pytest.raises(KeyboardInterrupt):
        generate(PROMPTS, SETTINGS, output, PacedFactory(fail=_interrupt), devices=("cpu:0", "cpu:1"))
    kept = _journaled(output)
    assert set(kept.values()) == {1} and sum(kept.values()) < 24 and _worker_threads() == []
    _resume(output)


def test_worker_processes_remain_selectable(tmp_path):
    output = tmp_path / "generations.json"
    pids = tmp_path / "pids"
    pids.mkdir()
    factory = FakeEngineFactory(record_pids_in=str(pids))
    summary = generate(PROMPTS, SETTINGS, output, factory, devices=("cpu", "cpu"), device_workers=DeviceWorkers.PROCESSES)
    assert os.listdir(pids) and all(not name.startswith(f"{os.getpid()}-") for name in os.listdir(pids))
    assert json.loads(output.read_text()) == expected_document(PROMPTS, SETTINGS) and summary.generated == 48
