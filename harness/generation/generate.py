"""``harness generate`` without the CLI: plan the samples, resume from the journal, hand them out to
one worker per device from one shared queue (``work_queue``), and write the official ``generations.json``.

``FILE`` is written once at the end (whole, then renamed); ``FILE.journal/`` (see
``generation.journal``) holds every finished sample as it finishes, so a rerun resumes.  The driver
(this process) writes it, whichever worker generated a sample, so each sample is journaled once even
when a lost worker's samples are generated again by another.  With the chat
template (instruct models) the prompts given to the model, and written to ``FILE``, are the official
ones wrapped in the tokenizer's chat template as a user message.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.data.atomic import write_json_atomic
from harness.data.generations import format_ids
from harness.data.prompts import has_markdown_fence
from harness.errors import GenerationError, ModelError
from harness.generation.factory import EngineFactory
from harness.generation.journal import (
    JournalEntry,
    SampleJournal,
    prompt_sha,
)
from harness.generation.plan import (
    GenerationSettings,
    plan_jobs,
    without_samples,
)
from harness.generation.work_queue import Dispatcher, WorkQueue
from harness.generation.workers import DeviceWorkers, LocalDevices, WorkerPool

# Warn about markdown fences (which TACO scores as compile errors) when at least this share of the
# samples has one and the code is not extracted.
FENCE_WARNING_SHARE = 0.2


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
    samples_by_worker: dict[str, int] = field(default_factory=dict)  # samples each worker generated in this run
    workers_lost: tuple[str, ...] = ()  # workers that died mid-run (their unfinished samples went to the others)
    requeued: int = 0  # samples given back to the queue by lost workers
    load_seconds: float = 0.0  # from the start until the first worker's model had loaded (workers started, model read)
    # Per worker, seconds from the start: until its model had loaded, and until it returned its last
    # sample (when it ran out of work: the spread of these is the time some devices idled at the end).
    ready_seconds_by_worker: dict[str, float] = field(default_factory=dict)
    last_sample_seconds_by_worker: dict[str, float] = field(default_factory=dict)
    # Seconds from the start until every worker had stopped (its engine freed); the rest of ``seconds``
    # is writing the output.
    workers_ended_seconds: float = 0.0
    # Per worker: seconds it took to load its model and build its engine (part of its ready seconds),
    # and seconds from the start until it had stopped.
    build_seconds_by_worker: dict[str, float] = field(default_factory=dict)
    stopped_seconds_by_worker: dict[str, float] = field(default_factory=dict)


def generate(
    prompts: Sequence[tuple[int, str]],
    settings: GenerationSettings,
    output: Path,
    engine_factory: EngineFactory,
    devices: Sequence[str] = ("cpu",),
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda message: None,
    on_sample: Callable[[JournalEntry], None] = lambda entry: None,
    workers: WorkerPool | None = None,
    device_workers: DeviceWorkers = DeviceWorkers.THREADS,
) -> GenerationSummary:
    """Generate ``settings.n`` samples for every (task_id, prompt) and write ``output``.

    The workers run on ``devices`` of this machine, one each (for several, a thread or a process each,
    as ``device_workers`` says), unless ``workers`` says where they run (a cluster's).  ``on_sample``
    sees every sample of the run once, as it is journaled: first those resumed from the journal, then
    each new one as it finishes (``harness run`` evaluates them from there).
    """
    started = time.monotonic()
    if output.is_dir():
        raise GenerationError(
            f"{output} is a directory; the output is the generations file to write (such as {output / 'generations.json'})"
        )
    journal = SampleJournal.open(output, settings)
    if settings.chat_template:
        prompts = chat_prompts(prompts, settings)
    jobs = plan_jobs(prompts, settings)
    known = journal.entries()
    shas = {job.task_id: prompt_sha(job.prompt) for job in jobs}
    changed = sorted({task for (task, _), entry in known.items() if task in shas and entry.prompt_sha != shas[task]})
    if changed:
        raise GenerationError(
            f"{journal.directory}: tasks {format_ids(changed)} were generated from other prompts; "
            "use another --output, or --restart to discard the journal"
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
    dispatcher: Dispatcher | None = None
    entries = dict(known)  # and each sample of this run as it is journaled
    workers_ended = 0.0
    if remaining:
        with journal.part(0) as part:

            def count(entry: JournalEntry) -> None:
                part.append(asdict(entry))
                entries[(entry.task_id, entry.index)] = entry
                tokens["new"] += entry.n_tokens
                tokens["samples"] += 1
                if progress is not None:
                    progress.sample(entry.n_tokens)
                on_sample(entry)

            # The settings are recorded once a model has loaded: its samples may now be journaled.
            dispatcher = Dispatcher(WorkQueue(remaining), count, journal.record_settings, say)
            pool = workers if workers is not None else LocalDevices(devices, device_workers)
            pool.run(dispatcher, remaining, engine_factory, settings.extract_code)
            workers_ended = time.monotonic() - started

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
    if not settings.extract_code:
        _warn_about_fences([entries[(job.task_id, s.index)].output for job in jobs for s in job.samples], say)
    reasons = Counter(entries[(job.task_id, s.index)].finish_reason for job in jobs for s in job.samples)
    return GenerationSummary(
        tasks=len(jobs),
        samples=sum(len(job.samples) for job in jobs),
        resumed=resumed,
        generated=tokens["samples"],
        new_tokens=tokens["new"],
        seconds=time.monotonic() - started,
        finish_reasons=dict(reasons),
        gpu_memory_peak_bytes=dict(dispatcher.peaks) if dispatcher is not None else {},
        samples_by_worker=dispatcher.finished_by_worker if dispatcher is not None else {},
        workers_lost=tuple(dispatcher.lost) if dispatcher is not None else (),
        requeued=dispatcher.queue.requeued if dispatcher is not None else 0,
        load_seconds=dispatcher.first_ready - started if dispatcher is not None and dispatcher.first_ready is not None else 0.0,
        ready_seconds_by_worker=_rounded(dispatcher.ready_by_worker(started)) if dispatcher is not None else {},
        last_sample_seconds_by_worker=_rounded(dispatcher.last_sample_by_worker(started)) if dispatcher is not None else {},
        workers_ended_seconds=round(workers_ended, 3),
        build_seconds_by_worker=_rounded(dispatcher.build_by_worker()) if dispatcher is not None else {},
        stopped_seconds_by_worker=_rounded(dispatcher.stopped_by_worker(started)) if dispatcher is not None else {},
    )


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {worker: round(value, 3) for worker, value in seconds.items()}


def chat_prompts(prompts: Sequence[tuple[int, str]], settings: GenerationSettings) -> list[tuple[int, str]]:
    """Each official prompt as the user message of the model tokenizer's chat template (after the
    system prompt, if any), with the generation prompt that opens the assistant's answer."""
    from transformers import AutoTokenizer

    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(settings.model)
    except (OSError, ValueError, KeyError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load the tokenizer of {settings.model!r}: {first_line}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"--chat-template: the tokenizer of {settings.model} has no chat template (a base model?)")
    system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt is not None else []
    formatted = []
    for task_id, prompt in prompts:
        text = tokenizer.apply_chat_template(
            [*system, {"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        formatted.append((task_id, str(text)))
    return formatted


def _warn_about_fences(outputs: Sequence[str], say: Callable[[str], None]) -> None:
    fenced = sum(map(has_markdown_fence, outputs))
    if outputs and fenced >= FENCE_WARNING_SHARE * len(outputs):
        say(
            f"warning: {fenced} of {len(outputs)} samples contain markdown code fences (```), which TACO scores as "
            "compile errors; --extract-code takes the program from each output's first fenced block"
        )
