"""Running engines: in this process for one device, or one spawned process per device, each
appending its finished samples to its own part of the journal and relaying them to the parent."""

from __future__ import annotations

import gc
import multiprocessing
import queue as queue_module
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.data.prompts import extract_code, truncate_at_eof
from harness.errors import GenerationError
from harness.generation.engine import FinishedSample
from harness.generation.factory import EngineFactory
from harness.generation.journal import JournalEntry, SampleJournal, prompt_sha
from harness.generation.plan import PromptJob


def postprocess(text: str, take_code: bool = False) -> str:
    """A decoded sample as it goes into generations.json: cut at the official EOF strings, then (with
    ``--extract-code``) the program of its first fenced code block."""
    output = truncate_at_eof(text)
    return extract_code(output) if take_code else output


def run_worker(
    device: str,
    jobs: Sequence[PromptJob],
    engine_factory: EngineFactory,
    journal: SampleJournal,
    rank: int,
    count: Callable[[JournalEntry], None],
    say: Callable[[str], None],
    take_code: bool = False,
) -> int | None:
    """Build the engine on ``device`` and generate ``jobs``, appending each finished sample to the
    journal's part ``rank`` (the journal's settings are recorded once the engine is built); return the
    device's peak allocated memory in bytes (None off CUDA)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # streams, events and graphs use the current device
        torch.cuda.reset_peak_memory_stats(device)
    engine = engine_factory(device, say)
    journal.record_settings()  # the model loaded: its samples may now be journaled
    shas = {job.task_id: prompt_sha(job.prompt) for job in jobs}
    with journal.part(rank) as part:

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
            part.append(asdict(entry))
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


def run_processes(
    assignments: list[tuple[str, list[PromptJob]]],
    engine_factory: EngineFactory,
    journal: SampleJournal,
    count: Callable[[JournalEntry], None],
    say: Callable[[str], None],
    take_code: bool = False,
) -> dict[str, int]:
    """One process per device; the parent relays progress and stops everything at the first failure
    (what finished is in the journal)."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    messages = context.Queue()
    workers = [
        context.Process(
            target=_worker_process,
            args=(rank, device, jobs, engine_factory, journal, messages, take_code),
            daemon=True,
        )
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
                        raise GenerationError(
                            f"worker {rank} ({assignments[rank][0]}) died with exit code {process.exitcode}"
                        ) from None
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


def _worker_process(
    rank: int,
    device: str,
    jobs: list[PromptJob],
    engine_factory: EngineFactory,
    journal: SampleJournal,
    messages: Any,
    take_code: bool,
) -> None:
    try:
        peak = run_worker(
            device,
            jobs,
            engine_factory,
            journal,
            rank,
            lambda entry: messages.put(("sample", rank, entry)),
            lambda text: messages.put(("say", rank, text)),
            take_code,
        )
        messages.put(("done", rank, peak))
    except BaseException as exc:  # reported to the parent as one line, with the traceback's last frame
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
        messages.put(("error", rank, f"{type(exc).__name__}: {exc}{place}"))
        raise SystemExit(1) from None
