"""``harness generate`` without the CLI: plan the samples, resume from the journal, run one worker
per device (each with all samples of its problems), and write the official ``generations.json``.

Files: ``FILE`` is written once at the end (whole, then renamed).  ``FILE.journal/`` holds
``settings.json`` (what the samples depend on) and one ``part-<worker>.jsonl`` per worker, a line per
finished sample, flushed as it finishes; a rerun with the same settings skips the samples found there.
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import queue as queue_module
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from .engine import Engine, FinishedSample
from .evaluate import write_json_atomic
from .generation_plan import GenerationSettings, PromptJob, plan_jobs, shard_jobs, without_samples
from .prompts import truncate_at_eof


class GenerationError(RuntimeError):
    """The run cannot start or complete (bad journal, a worker failed, samples missing)."""


class Progress(Protocol):
    def begin(self, samples: int) -> None:
        """Called once with the number of samples this run will generate."""

    def sample(self, n_tokens: int) -> None:
        """Called as each sample finishes."""


class EngineFactory(Protocol):
    """Builds an engine on a device inside a worker process; must be picklable for several devices."""

    def __call__(self, device: str, say: Callable[[str], None]) -> Engine: ...


@dataclass(frozen=True)
class ModelEngineFactory:
    """The real engines: load ``settings.model`` and wrap it in the chosen engine."""

    settings: GenerationSettings
    engine: str = "auto"  # "auto" (fast where supported, else hf), "fast" or "hf"
    batch_size: int | None = None
    chunk_steps: int = 16
    cuda_graphs: bool = True

    def __call__(self, device: str, say: Callable[[str], None]) -> Engine:
        from .engine import ModelError, load_model
        from .fast_engine import FastEngine, FastEngineOptions, unsupported_reason
        from .hf_engine import HFEngine

        model, tokenizer = load_model(self.settings.model, self.settings.dtype, device)
        kind = self.engine
        if kind in ("auto", "fast"):
            reason = unsupported_reason(model)
            if reason is not None:
                if kind == "fast":
                    raise ModelError(f"--engine fast cannot run this model ({reason}); use --engine hf")
                say(f"fast engine unavailable ({reason}); using the hf engine")
                kind = "hf"
            else:
                kind = "fast"
        if kind == "fast":
            options = FastEngineOptions(slots=self.batch_size, chunk_steps=self.chunk_steps, cuda_graphs=self.cuda_graphs)
            return FastEngine(model, tokenizer, self.settings.sampling, options, say=say)
        return HFEngine(model, tokenizer, self.settings.sampling, batch_size=self.batch_size, check_every=self.chunk_steps, say=say)


@dataclass(frozen=True)
class JournalEntry:
    task_id: int
    index: int
    seed: int
    output: str  # truncated at the EOF strings, as it goes into generations.json
    n_tokens: int
    finish_reason: str
    prompt_sha: str  # the prompt it was generated from, so a changed dataset is noticed on resume


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


def prompt_sha(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:16]


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory

    @classmethod
    def open(cls, output: Path, settings: GenerationSettings) -> Journal:
        directory = output.with_name(output.name + ".journal")
        directory.mkdir(parents=True, exist_ok=True)
        recorded = directory / "settings.json"
        wanted = settings.fingerprint()
        if recorded.exists():
            try:
                found = json.loads(recorded.read_text(encoding="utf-8"))
            except ValueError:
                found = None
            if found != wanted:
                raise GenerationError(
                    f"{directory} holds samples generated with other settings ({_difference(found, wanted)}); "
                    "use another --output or delete the journal"
                )
        else:
            write_json_atomic(recorded, wanted)
        return cls(directory)

    def entries(self) -> dict[tuple[int, int], JournalEntry]:
        found: dict[tuple[int, int], JournalEntry] = {}
        for part in sorted(self.directory.glob("part-*.jsonl")):
            for line in part.read_text(encoding="utf-8").splitlines():
                try:
                    entry = JournalEntry(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line torn by a crash mid-write: that sample is generated again
                found[(entry.task_id, entry.index)] = entry
        return found

    def part(self, worker: int) -> Path:
        return self.directory / f"part-{worker}.jsonl"


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
    journal = Journal.open(output, settings)
    known = journal.entries()
    shas = {job.task_id: prompt_sha(job.prompt) for job in jobs}
    changed = sorted({task for (task, _), entry in known.items() if task in shas and entry.prompt_sha != shas[task]})
    if changed:
        raise GenerationError(f"{journal.directory}: tasks {_ids(changed)} were generated from other prompts; delete the journal")
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
    tokens = Counter()
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
            peaks.update(_run_processes(list(zip(devices, shards)), engine_factory, journal, count, say))

    entries = journal.entries()
    missing = [(job.task_id, s.index) for job in jobs for s in job.samples if (job.task_id, s.index) not in entries]
    if missing:
        raise GenerationError(f"{len(missing)} samples are missing after the run (first: task {missing[0][0]} sample {missing[0][1]})")
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


def run_worker(
    device: str,
    jobs: Sequence[PromptJob],
    engine_factory: EngineFactory,
    journal_part: Path,
    count: Callable[[JournalEntry], None],
    say: Callable[[str], None],
) -> int | None:
    """Build the engine on ``device`` and generate ``jobs``, appending each finished sample to
    ``journal_part``; return the device's peak allocated memory in bytes (None off CUDA)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # streams, events and graphs use the current device
        torch.cuda.reset_peak_memory_stats(device)
    engine = engine_factory(device, say)
    shas = {job.task_id: prompt_sha(job.prompt) for job in jobs}
    with journal_part.open("a", encoding="utf-8") as journal:
        if journal.tell() > 0 and not journal_part.read_bytes().endswith(b"\n"):
            journal.write("\n")  # seal a line torn by a crash so the next entry stays readable

        def record(sample: FinishedSample) -> None:
            entry = JournalEntry(
                task_id=sample.task_id,
                index=sample.index,
                seed=sample.seed,
                output=truncate_at_eof(sample.text),
                n_tokens=len(sample.token_ids),
                finish_reason=sample.finish_reason.value,
                prompt_sha=shas[sample.task_id],
            )
            journal.write(json.dumps(asdict(entry)) + "\n")
            journal.flush()
            count(entry)

        engine.run(jobs, record)
    if device.startswith("cuda"):
        peak = int(torch.cuda.max_memory_allocated(device))
        # The model and its KV slots go back to the driver now, not when the process ends: a caller
        # that generates again in this process (a benchmark, a notebook) gets the whole GPU.
        del engine
        gc.collect()
        torch.cuda.empty_cache()
        return peak
    return None


def _run_processes(
    assignments: list[tuple[str, list[PromptJob]]],
    engine_factory: EngineFactory,
    journal: Journal,
    count: Callable[[JournalEntry], None],
    say: Callable[[str], None],
) -> dict[str, int]:
    """One process per device; the parent relays progress and stops everything at the first failure
    (what finished is in the journal)."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    messages = context.Queue()
    workers = [
        context.Process(target=_worker_process, args=(rank, device, jobs, engine_factory, journal.part(rank), messages), daemon=True)
        for rank, (device, jobs) in enumerate(assignments)
    ]
    for process in workers:
        process.start()
    finished: set[int] = set()
    peaks: dict[str, int] = {}
    try:
        while len(finished) < len(workers):
            try:
                kind, rank, value = messages.get(timeout=1.0)
            except queue_module.Empty:
                for rank, process in enumerate(workers):
                    if rank not in finished and not process.is_alive():
                        raise GenerationError(f"worker {rank} ({assignments[rank][0]}) died with exit code {process.exitcode}")
                continue
            if kind == "sample":
                count(value)
            elif kind == "say":
                say(f"worker {rank}: {value}")
            elif kind == "done":
                finished.add(rank)
                if value is not None:
                    peaks[assignments[rank][0]] = value
            else:
                raise GenerationError(f"worker {rank} ({assignments[rank][0]}) failed: {value}")
    finally:
        for process in workers:
            if process.is_alive() and len(finished) < len(workers):
                process.terminate()
            process.join()
    return peaks


def _worker_process(rank: int, device: str, jobs: list[PromptJob], engine_factory: EngineFactory, part: Path, messages: Any) -> None:
    try:
        peak = run_worker(
            device, jobs, engine_factory, part,
            lambda entry: messages.put(("sample", rank, entry)),
            lambda text: messages.put(("say", rank, text)),
        )
        messages.put(("done", rank, peak))
    except BaseException as exc:  # reported to the parent as one line, with the traceback's last frame
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
        messages.put(("error", rank, f"{type(exc).__name__}: {exc}{place}"))
        raise SystemExit(1) from None


def _difference(found: Any, wanted: dict) -> str:
    if not isinstance(found, dict):
        return "unreadable settings.json"
    return ", ".join(f"{key}: {found.get(key)!r} there, {value!r} now" for key, value in wanted.items() if found.get(key) != value)


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
