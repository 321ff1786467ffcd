"""A model-free engine for tests of the orchestration (journal, resume, sharding, output format)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.data.prompts import truncate_at_eof
from harness.generation.engine import FinishedSample, FinishReason, JobSource, each_job
from harness.generation.plan import GenerationSettings, PromptJob, sample_seed


class EngineCrashed(RuntimeError):
    pass


def fake_text(task_id: int, index: int, seed: int) -> str:
    # Ends with an EOF string and more text, so truncation is visible in the output.
    return f"print({task_id} * {index})  # {seed % 1000}\nQUESTION:\nnot part of the answer"


def expected_document(prompts: Sequence[tuple[int, str]], settings: GenerationSettings) -> list[dict]:
    """The generations.json a ``FakeEngine`` run of *prompts* writes: each sample's fake text cut at
    the EOF strings, under its batch-independent seed."""
    return [
        {
            "task_id": task_id,
            "prompt": prompt,
            "output": [
                truncate_at_eof(fake_text(task_id, i, sample_seed(settings.sampling.seed, task_id, i))) for i in range(settings.n)
            ],
        }
        for task_id, prompt in prompts
    ]


@dataclass(frozen=True)
class FakeEngine:
    crash_after: int | None = None  # raise after this many samples (a crash mid-run)

    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: Callable[[FinishedSample], None]) -> None:
        emitted = 0
        for job in each_job(jobs):
            for spec in job.samples:
                if self.crash_after is not None and emitted >= self.crash_after:
                    raise EngineCrashed(f"crashed after {emitted} samples")
                text = fake_text(job.task_id, spec.index, spec.seed)
                on_sample(FinishedSample(job.task_id, spec.index, spec.seed, tuple(range(len(text))), text, FinishReason.STOP))
                emitted += 1


@dataclass(frozen=True)
class FakeEngineFactory:
    crash_after: int | None = None
    record_pids_in: str | None = None  # a directory: each worker touches a file named after its pid and device

    def __call__(self, device: str, say: Callable[[str], None]) -> FakeEngine:
        if self.record_pids_in is not None:
            open(os.path.join(self.record_pids_in, f"{os.getpid()}-{device}"), "w").close()
        return FakeEngine(self.crash_after)


@dataclass(frozen=True)
class ScriptedEngine:
    """Emits given programs as samples, one every ``delay_s`` seconds (a paced stand-in for a GPU)."""

    outputs: tuple[tuple[int, tuple[str, ...]], ...]  # (task_id, programs by sample index)
    delay_s: float = 0.0
    emitted_log: str | None = None  # a file: one line per sample as it is emitted

    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: Callable[[FinishedSample], None]) -> None:
        import time

        programs = dict(self.outputs)
        for job in each_job(jobs):
            for spec in job.samples:
                time.sleep(self.delay_s)
                text = programs[job.task_id][spec.index]
                on_sample(FinishedSample(job.task_id, spec.index, spec.seed, tuple(range(len(text))), text, FinishReason.EOS))
                if self.emitted_log is not None:
                    with open(self.emitted_log, "a") as log:
                        log.write(f"{job.task_id} {spec.index} {time.monotonic()}\n")


@dataclass(frozen=True)
class ScriptedEngineFactory:
    outputs: tuple[tuple[int, tuple[str, ...]], ...]
    delay_s: float = 0.0
    emitted_log: str | None = None

    def __call__(self, device: str, say: Callable[[str], None]) -> ScriptedEngine:
        return ScriptedEngine(self.outputs, self.delay_s, self.emitted_log)
