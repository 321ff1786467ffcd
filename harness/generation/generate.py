"""``harness generate`` without the CLI: plan the samples, resume from the journal, run one worker
per device (each with all samples of its problems), and write the official ``generations.json``.

``FILE`` is written once at the end (whole, then renamed); ``FILE.journal/`` (see
``generation.journal``) holds every finished sample as it finishes, so a rerun resumes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.data.atomic import write_json_atomic
from harness.data.generations import format_ids
from harness.errors import GenerationError
from harness.generation.factory import EngineFactory
from harness.generation.journal import (
    JournalEntry,
    SampleJournal,
    prompt_sha,
)
from harness.generation.plan import (
    GenerationSettings,
    plan_jobs,
    shard_jobs,
    without_samples,
)
from harness.generation.workers import run_processes, run_worker


class Progress(Protocol):
    def begin(self, samples: int) -> None:
        """Called once with the number of samples this run will generate."""

    def sample(self, n_tokens: int) -> None:
        """Called as each sample finishes."""


@dataclass(frozen=True)
class GenerationSummary:
    tasks: int
    samples: int
    resumed: int  # samples found in the journal
    generated: int  # samples generated in this run
    new_tokens: int  # tokens generated in this run
    seconds: float
    finish_reasons: dict[str, int]
    gpu_memory_peak_bytes: dict[str, int]  # per CUDA device that generated in this run (torch's allocator peak)


def generate(
    prompts: Sequence[tuple[int, str]],
    settings: GenerationSettings,
    output: Path,
    engine_factory: EngineFactory,
    devices: Sequence[str] = ("cpu",),
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda message: None,
    on_sample: Callable[[JournalEntry], None] = lambda entry: None,
) -> GenerationSummary:
    """Generate ``settings.n`` samples for every (task_id, prompt) and write ``output``.

    ``on_sample`` sees every sample of the run once, as it is journaled: first those resumed from
    the journal, then each new one as it finishes (``harness run`` evaluates them from there).
    """
    started = time.monotonic()
    jobs = plan_jobs(prompts, settings)
    journal = SampleJournal.open(output, settings)
    known = journal.entries()
    shas = {job.task_id: prompt_sha(job.prompt) for job in jobs}
    changed = sorted({task for (task, _), entry in known.items() if task in shas and entry.prompt_sha != shas[task]})
    if changed:
        raise GenerationError(
            f"{journal.directory}: tasks {format_ids(changed)} were generated from other prompts; delete the journal"
        )
    remaining = without_samples(jobs, set(known))
    resumed = sum(len(job.samples) for job in jobs) - sum(len(job.samples) for job in remaining)
    if resumed:
        say(f"resuming: {resumed} samples found in {journal.directory}")
    for job in jobs:
        for spec in job.samples:
            entry = known.get((job.task_id, spec.index))
            if entry is not None:
                on_sample(entry)
    if progress is not None:
        progress.begin(sum(len(job.samples) for job in remaining))
    tokens: Counter[str] = Counter()
    peaks: dict[str, int] = {}

    def count(entry: JournalEntry) -> None:
        tokens["new"] += entry.n_tokens
        tokens["samples"] += 1
        if progress is not None:
            progress.sample(entry.n_tokens)
        on_sample(entry)

    if remaining:
        shards = [shard for shard in shard_jobs(remaining, len(devices)) if shard]
        if len(shards) == 1:
            peak = run_worker(devices[0], shards[0], engine_factory, journal.part(0), count, say)
            if peak is not None:
                peaks[devices[0]] = peak
        else:
            peaks.update(run_processes(list(zip(devices, shards)), engine_factory, journal, count, say))

    entries = journal.entries()
    missing = [(job.task_id, s.index) for job in jobs for s in job.samples if (job.task_id, s.index) not in entries]
    if missing:
        raise GenerationError(
            f"{len(missing)} samples are missing after the run (first: task {missing[0][0]} sample {missing[0][1]})"
        )
    document = [
        {"task_id": job.task_id, "prompt": job.prompt, "output": [entries[(job.task_id, s.index)].output for s in job.samples]}
        for job in jobs
    ]
    write_json_atomic(output, document)
    reasons = Counter(entries[(job.task_id, s.index)].finish_reason for job in jobs for s in job.samples)
    return GenerationSummary(
        tasks=len(jobs),
        samples=sum(len(job.samples) for job in jobs),
        resumed=resumed,
        generated=tokens["samples"],
        new_tokens=tokens["new"],
        seconds=time.monotonic() - started,
        finish_reasons=dict(reasons),
        gpu_memory_peak_bytes=peaks,
    )
