"""What every generation engine shares: the Engine protocol, finished samples, the host-side
bookkeeping of a sample in flight (budget, end-of-sequence, early stop on the official EOF strings),
model loading, batch sizing, and shrinking the batch on out-of-memory.

torch and transformers are imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import enum
import gc
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from harness.data.prompts import EOF_STRINGS, LONGEST_EOF, eof_position
from harness.errors import ModelError
from harness.generation.end_sharing import SlotState
from harness.generation.plan import PromptJob, SampleSpec, without_samples


class FinishReason(str, enum.Enum):
    EOS = "eos"  # the model emitted an end-of-sequence token
    STOP = "stop"  # an official EOF string appeared (the text is cut there anyway)
    LENGTH = "length"  # the token budget ran out


@dataclass(frozen=True)
class FinishedSample:
    task_id: int
    index: int
    seed: int
    token_ids: tuple[int, ...]  # generated tokens (an EOS token included, as generate returns it)
    text: str  # decoded with special tokens skipped, before EOF truncation
    finish_reason: FinishReason


SampleSink = Callable[[FinishedSample], None]


class JobSource(Protocol):
    """Where a run's jobs come from while it runs: an engine takes more as its slots free up, so that a
    device fed from a shared queue stays busy until the queue is empty (``generation.work_queue``)."""

    @property
    def planned(self) -> Sequence[PromptJob]:
        """Every job ``take`` may hand out (a job it hands out has the same prompt and a subset of the
        samples): what the engine sizes its buffers and tokenizes for before the first take."""
        ...

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        """Jobs holding about ``samples`` samples (at least one job; the last may be part of a prompt's
        samples near the end of a shared queue), or none: then the run finishes what it holds and ends.
        ``slots``, from an engine that can tell, says what its slots are doing (a shared queue shares
        the end of a run by it, and may then give fewer, or none)."""
        ...


class FixedJobs:
    """A ``JobSource`` over a list of jobs known from the start, handed out in their order."""

    def __init__(self, jobs: Sequence[PromptJob]):
        self.planned: Sequence[PromptJob] = tuple(jobs)
        self._next = 0

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        taken: list[PromptJob] = []
        count = 0
        while self._next < len(self.planned) and (not taken or count < samples):
            taken.append(self.planned[self._next])
            count += len(taken[-1].samples)
            self._next += 1
        return taken

    def rest(self) -> Sequence[PromptJob]:
        """The jobs not handed out yet."""
        return self.planned[self._next :]


def job_source(jobs: Sequence[PromptJob] | JobSource) -> JobSource:
    """What an engine's ``run`` was given, as a source (a plain list of jobs is a ``FixedJobs``)."""
    return FixedJobs(jobs) if isinstance(jobs, Sequence) else jobs


def each_job(jobs: Sequence[PromptJob] | JobSource) -> Iterator[PromptJob]:
    """The jobs of a list or a source one by one, taking from the source only as they are consumed."""
    source = job_source(jobs)
    while taken := source.take(1):
        yield from taken


class MappedJobs:
    """A source whose jobs are another's, each changed by ``change`` (the same change for every job)."""

    def __init__(self, jobs: Sequence[PromptJob] | JobSource, change: Callable[[PromptJob], PromptJob]):
        self._inner, self._change = job_source(jobs), change
        self.planned: Sequence[PromptJob] = [change(job) for job in self._inner.planned]

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        return [self._change(job) for job in self._inner.take(samples, slots)]


class SampleFeed:
    """A run's intake: the samples taken from its source and not yet started, in order (``pending``,
    as (job index, spec)), with the jobs they came from and their prompt tokens (``jobs`` and
    ``prompts``, indexed alike).  ``exhausted`` once the source had nothing more to give."""

    def __init__(self, source: JobSource, prompt_ids: Mapping[int, list[int]]):
        self.source, self.prompt_ids = source, prompt_ids
        self.jobs: list[PromptJob] = []
        self.prompts: list[list[int]] = []
        self.pending: deque[tuple[int, SampleSpec]] = deque()
        self.exhausted = False

    def top_up(self, wanted: int, slots: Callable[[], SlotState] | None = None) -> None:
        """Take jobs from the source until ``wanted`` samples are pending (or it is exhausted);
        ``slots`` says what the engine's slots are doing (asked only when the source is)."""
        while len(self.pending) < wanted and not self.exhausted:
            state = slots() if slots is not None else None
            if state is not None:
                state = replace(state, waiting=len(self.pending))
            arrived = self.source.take(wanted - len(self.pending), state)
            self.exhausted = not arrived
            for job in arrived:
                self.pending.extend((len(self.jobs), spec) for spec in job.samples)
                self.jobs.append(job)
                self.prompts.append(self.prompt_ids[job.task_id])


class Engine(Protocol):
    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: SampleSink) -> None:
        """Generate every sample of ``jobs`` (a list, or a source it takes from as it has room),
        calling ``on_sample`` as each one finishes (any order)."""


class SampleTracker:
    """The host's view of one sample being generated: its tokens so far, and whether it must stop."""

    # Tokens decoded again before the unscanned ones: an EOF string that straddles two scans spans at
    # most LONGEST_EOF - 1 earlier tokens (one character each at worst); a few more absorb a
    # multi-byte character split at the window's start.
    _OVERLAP = LONGEST_EOF + 3

    def __init__(self, job_index: int, spec: SampleSpec, eos_ids: np.ndarray):
        self.job_index = job_index
        self.spec = spec
        self.tokens: list[int] = []
        self._eos_ids = eos_ids
        self._scanned = 0

    def extend(self, new_tokens: Sequence[int] | np.ndarray) -> FinishReason | None:
        """Append freshly generated tokens; say why the sample ended if it did (tokens after its end are dropped)."""
        fresh = np.asarray(new_tokens, dtype=np.int64).reshape(-1)
        first_eos = int(first_eos_positions(fresh[None, :], self._eos_ids)[0]) if fresh.size else -1
        return self.take(fresh.tolist(), first_eos)

    def take(self, fresh: list[int], first_eos: int) -> FinishReason | None:
        """``extend`` with the position of the first EOS token in ``fresh`` found by the caller (-1: none),
        for an engine that looks for EOS tokens in all its samples' new tokens at once."""
        room = self.spec.max_new_tokens - len(self.tokens)
        if 0 <= first_eos < room:
            self.tokens.extend(fresh[: first_eos + 1])
            return FinishReason.EOS
        self.tokens.extend(fresh[:room])
        return FinishReason.LENGTH if len(self.tokens) >= self.spec.max_new_tokens else None

    def mark_scanned(self) -> None:
        """Every token so far is scanned (none of the new ones can have completed an EOF string)."""
        self._scanned = len(self.tokens)

    def scan_window(self) -> list[int]:
        """The tokens not yet scanned for EOF strings, with enough look-back; marks them scanned."""
        start = max(0, self._scanned - self._OVERLAP)
        self._scanned = len(self.tokens)
        return self.tokens[start:]


def first_eos_positions(block: np.ndarray, eos_ids: np.ndarray) -> np.ndarray:
    """Per row of ``block`` [rows, tokens], the position of its first EOS token, or -1."""
    if not len(eos_ids):
        return np.full(block.shape[0], -1)
    hits = np.isin(block, eos_ids)
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


class EofScanner:
    """Finds the official EOF strings in samples as they grow.  Stopping at one changes nothing in the
    output: decoding more tokens does not change the text before a complete EOF string, and the text is
    cut at the earliest one.

    Decoding every running sample's newest tokens at every look costs the host milliseconds per look
    at hundreds of slots, time in which the GPU may run dry.  A new EOF string ends in a new token, and
    its last character (``N``, ``-``, ``R``, ``>``: ASCII, so the same in a token decoded alone) is in
    that token's text; only samples with such a token among their new ones are decoded.  Which tokens
    can end one is learned per token id, once, as ids first appear."""

    _LAST_CHARACTERS = frozenset(eof[-1] for eof in EOF_STRINGS)

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._can_end = np.zeros(0, dtype=bool)
        self._known = np.zeros(0, dtype=bool)

    def hits(self, trackers: Sequence[SampleTracker], recent: np.ndarray | None = None) -> list[bool]:
        """Which of ``trackers`` now contain an EOF string.  ``recent`` [len(trackers), k]: for each, at
        least the tokens it took since its last scan (more is harmless); None: decode every window."""
        if not trackers:
            return []
        chosen = list(range(len(trackers))) if recent is None else np.flatnonzero(self._rows_that_can_end(recent)).tolist()
        if len(chosen) < len(trackers):
            skipped = np.ones(len(trackers), dtype=bool)
            skipped[chosen] = False
            for i in np.flatnonzero(skipped).tolist():
                trackers[i].mark_scanned()  # the next window looks back over these tokens all the same
        found = [False] * len(trackers)
        windows = [trackers[i].scan_window() for i in chosen]
        texts = decode_texts(self.tokenizer, windows)
        for i, text in zip(chosen, texts):
            found[i] = eof_position(text) is not None
        return found

    def _rows_that_can_end(self, recent: np.ndarray) -> np.ndarray:
        if recent.size and int(recent.max()) >= len(self._known):
            grown = int(recent.max()) + 1
            self._known = np.concatenate([self._known, np.zeros(grown - len(self._known), dtype=bool)])
            self._can_end = np.concatenate([self._can_end, np.zeros(grown - len(self._can_end), dtype=bool)])
        ids = np.unique(recent)
        unknown = ids[~self._known[ids]]
        if len(unknown):
            texts = decode_texts(self.tokenizer, [[int(i)] for i in unknown])
            self._can_end[unknown] = [any(c in text for c in self._LAST_CHARACTERS) for text in texts]
            self._known[unknown] = True
        return self._can_end[recent].any(axis=1)


def decode_texts(tokenizer: Any, sequences: list[list[int]]) -> list[str]:
    """The texts of token sequences, special tokens skipped: ``tokenizer.batch_decode``'s.  A Hugging Face
    fast tokenizer that does not clean up spaces decodes each sequence with its Rust decoder, which is
    exactly batch_decode's text; its decode_batch does the whole batch at once on all cores instead of one
    sequence a Python call (a wave of 512 finished 512-token samples: 118 ms against 44 ms on 2 cores), time
    the host otherwise takes from keeping the GPU fed."""
    if not sequences:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "decode_batch") and not getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return list(backend.decode_batch(sequences, skip_special_tokens=True))
    return list(tokenizer.batch_decode(sequences, skip_special_tokens=True))


def finish(
    tokenizer: Any, jobs: Sequence[PromptJob], done: Sequence[tuple[SampleTracker, FinishReason]], on_sample: SampleSink
) -> None:
    """Decode finished samples (in one batch) and hand them on."""
    if not done:
        return
    texts = decode_texts(tokenizer, [tracker.tokens for tracker, _ in done])
    for (tracker, reason), text in zip(done, texts):
        spec = tracker.spec
        on_sample(FinishedSample(jobs[tracker.job_index].task_id, spec.index, spec.seed, tuple(tracker.tokens), text, reason))


def eos_token_ids(model: Any) -> np.ndarray:
    """The ids that end a sample, as generate decides them: the model's generation config, else its config."""
    value = None
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        value = generation_config.eos_token_id
    if value is None:
        value = getattr(model.config, "eos_token_id", None)
    if value is None:
        return np.zeros(0, dtype=np.int64)
    return np.array(sorted({value} if isinstance(value, int) else set(value)), dtype=np.int64)


def prompt_token_ids(tokenizer: Any, jobs: Sequence[PromptJob]) -> list[list[int]]:
    """Each job's prompt as token ids.  As generation.py: the tokenizer's defaults (BOS added where the
    tokenizer adds one), no truncation; a chat-templated prompt already holds its special tokens as
    text, and none are added to it.  The prompts go to the tokenizer in one call per kind, the same ids
    as one call each: a fast tokenizer encodes a batch on all cores (200 TACO prompts in 0.018 s
    against 0.239 s one call each on the H200 machine's CPU)."""
    ids: list[list[int]] = [[] for _ in jobs]
    for special in (True, False):
        chosen = [index for index, job in enumerate(jobs) if job.add_special_tokens is special]
        if chosen:
            encoded = tokenizer([jobs[index].prompt for index in chosen], add_special_tokens=special)["input_ids"]
            for index, token_ids in zip(chosen, encoded):
                ids[index] = list(token_ids)
    return ids


DTYPES = ("bfloat16", "float16", "float32")


# Held while transformers reads a model: from_pretrained changes process-wide state while it loads (torch's
# default dtype, torch.nn.init's functions) and puts back what it found, so two loads at once in one
# process (device workers as threads) could leave it changed.
FROM_PRETRAINED_LOCK = threading.Lock()

# The tokenizers read in this process, while an engine still holds one: device workers as threads of
# one process share one instead of each reading its own (0.27 s alone on the H200 machine's CPU, 0.61 s
# each for two read at once: the reading holds the interpreter).  Weak: once no engine holds it, the
# next load reads the files again.
_TOKENIZERS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_TOKENIZERS_LOCK = threading.Lock()


def load_tokenizer(path: str) -> Any:
    """The tokenizer of ``path``: the one this process already holds for it, else read now.  Shared
    between threads, it is only read: the harness encodes without padding or truncation, and one
    encoding here, before it is shared, sets those as every later call wants them (a fast tokenizer
    changes its settings only where a call asks for others)."""
    from transformers import AutoTokenizer

    with _TOKENIZERS_LOCK:
        tokenizer = _TOKENIZERS.get(path)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer([""])
            _TOKENIZERS[path] = tokenizer
        return tokenizer


def load_model(path: str, dtype: str, device: str) -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and tokenizer from a local directory or a hub id."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} (use one of {', '.join(DTYPES)})")
    try:
        tokenizer = load_tokenizer(path)
        with FROM_PRETRAINED_LOCK:
            # Any: transformers types the result as its own class, whose decorated ``to`` mypy cannot call.
            model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation="sdpa")
    except (OSError, ValueError, KeyError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load model {path!r}: {first_line}") from exc
    # Outside the lock: the copy to the device is most of a load, and other devices' workers copy theirs at once.
    copy_to_device(model, device)
    model.eval()
    return model, tokenizer


def copy_to_device(model: Any, device: str) -> None:
    """Move ``model`` to ``device``.  To a CUDA device each parameter goes through page-locked memory,
    without waiting for the one before: 0.18 s for the 6.4 GB of the Llama-3.2-3B shape on an H200,
    against 0.76 s for ``model.to`` from pageable memory (bench/load_time.py, docs/BENCHMARKS.md).  In
    a generate run it took 0.55-0.60 s (the weights read from their file as they are page-locked;
    not split further, session 13)."""
    import torch

    if not device.startswith("cuda"):
        model.to(device)
        return
    with torch.no_grad():
        for parameter in model.parameters():  # each once (tied weights are one parameter)
            parameter.data = parameter.data.pin_memory().to(device, non_blocking=True)
    model.to(device)  # the buffers (rotary frequencies)
    torch.cuda.synchronize(device)
    # The page-locked copies are free again: give them back rather than keep them cached (GBs).
    empty_host_cache = getattr(getattr(getattr(torch, "accelerator", None), "memory", None), "empty_host_cache", None)
    if empty_host_cache is not None:  # torch >= 2.10
        empty_host_cache()


def kv_bytes_per_token(config: Any, dtype: Any) -> int:
    """Bytes of K and V cache per token over all layers."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def rows_that_fit(free_bytes: int, bytes_per_row: int, reserved_bytes: int, cap: int) -> int:
    """How many batch rows fit in ``free_bytes`` after ``reserved_bytes``, between 1 and ``cap``."""
    usable = max(0, free_bytes - reserved_bytes)
    return max(1, min(cap, usable // max(1, bytes_per_row)))


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# Held while a CUDA graph is captured and while cached GPU memory is given back (``empty_cache``):
# with device workers as threads of one process, emptying the caching allocator while another thread
# captures a graph is not allowed (and torch.cuda.graph empties it on entry).
CUDA_CACHE_LOCK = threading.Lock()


def run_shrinking_on_oom(
    attempt: Callable[[JobSource, int, SampleSink], None],
    source: JobSource,
    batch: int,
    on_sample: SampleSink,
    say: Callable[[str], None] | None = None,
) -> int:
    """Run ``attempt(source, batch, sink)``; on out-of-memory, halve the batch and go on with the
    samples not yet finished (those the failed attempt had taken first, then the rest of the source).
    Returns the batch size that completed."""
    import torch

    done: set[tuple[int, int]] = set()

    def record(sample: FinishedSample) -> None:
        done.add((sample.task_id, sample.index))
        on_sample(sample)

    current = source
    while True:
        taken = _Taken(current)
        try:
            attempt(taken, batch, record)
            return batch
        except Exception as exc:  # only out-of-memory is handled; everything else propagates
            if not is_out_of_memory(exc) or batch <= 1:
                raise
        # The jobs a replay had not handed out yet come after those the failed attempt had taken.
        left = current.first.rest() if isinstance(current, _Again) else []
        current = _Again([*without_samples(taken.jobs, done), *left], source)
        gc.collect()
        if torch.cuda.is_available():
            with CUDA_CACHE_LOCK:
                torch.cuda.empty_cache()
        batch //= 2
        if say is not None:
            say(f"out of GPU memory: retrying with batch size {batch}")


class _Taken:
    """A source that remembers every job it handed out (what an attempt that failed had taken)."""

    def __init__(self, inner: JobSource):
        self.inner = inner
        self.jobs: list[PromptJob] = []

    @property
    def planned(self) -> Sequence[PromptJob]:
        return self.inner.planned

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        taken = self.inner.take(samples, slots)
        self.jobs.extend(taken)
        return taken


class _Again:
    """``first`` (the unfinished jobs of a failed attempt), then what ``rest`` still has."""

    def __init__(self, first: Sequence[PromptJob], rest: JobSource):
        self.first, self.rest = FixedJobs(first), rest

    @property
    def planned(self) -> Sequence[PromptJob]:
        return self.rest.planned

    def take(self, samples: int, slots: SlotState | None = None) -> Sequence[PromptJob]:
        return self.first.take(samples) or self.rest.take(samples, slots)
