"""What every generation engine shares: the Engine protocol, finished samples, the host-side
bookkeeping of a sample in flight (budget, end-of-sequence, early stop on the official EOF strings),
model loading, batch sizing, and shrinking the batch on out-of-memory.

torch and transformers are imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import enum
import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.data.prompts import LONGEST_EOF, eof_position
from harness.errors import ModelError
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


class Engine(Protocol):
    def run(self, jobs: Sequence[PromptJob], on_sample: SampleSink) -> None:
        """Generate every sample of ``jobs``, calling ``on_sample`` as each one finishes (any order)."""


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
        room = self.spec.max_new_tokens - len(self.tokens)
        fresh = np.asarray(new_tokens[:room], dtype=np.int64)
        if len(self._eos_ids):
            hits = np.flatnonzero(np.isin(fresh, self._eos_ids))
            if len(hits):
                self.tokens.extend(fresh[: hits[0] + 1].tolist())
                return FinishReason.EOS
        self.tokens.extend(fresh.tolist())
        return FinishReason.LENGTH if len(self.tokens) >= self.spec.max_new_tokens else None

    def scan_window(self) -> list[int]:
        """The tokens not yet scanned for EOF strings, with enough look-back; marks them scanned."""
        start = max(0, self._scanned - self._OVERLAP)
        self._scanned = len(self.tokens)
        return self.tokens[start:]


def hit_eof_strings(tokenizer: Any, trackers: Sequence[SampleTracker]) -> list[bool]:
    """Which samples now contain an official EOF string.  Stopping there changes nothing in the
    output: decoding more tokens does not change the text before a complete EOF string, and the text
    is cut at the earliest one."""
    if not trackers:
        return []
    texts = tokenizer.batch_decode([t.scan_window() for t in trackers], skip_special_tokens=True)
    return [eof_position(text) is not None for text in texts]


def finish(
    tokenizer: Any, jobs: Sequence[PromptJob], done: Sequence[tuple[SampleTracker, FinishReason]], on_sample: SampleSink
) -> None:
    """Decode finished samples (in one batch) and hand them on."""
    if not done:
        return
    texts = tokenizer.batch_decode([tracker.tokens for tracker, _ in done], skip_special_tokens=True)
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
    # As generation.py: the tokenizer's defaults (BOS added where the tokenizer adds one), no truncation.
    # A chat-templated prompt already holds its special tokens as text: none are added to it.
    return [
        tokenizer(job.prompt)["input_ids"]
        if job.add_special_tokens
        else tokenizer(job.prompt, add_special_tokens=False)["input_ids"]
        for job in jobs
    ]


DTYPES = ("bfloat16", "float16", "float32")


def load_model(path: str, dtype: str, device: str) -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and tokenizer from a local directory or a hub id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} (use one of {', '.join(DTYPES)})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # Any: transformers types the result as its own class, whose decorated ``to`` mypy cannot call.
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation="sdpa")
    except (OSError, ValueError, KeyError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load model {path!r}: {first_line}") from exc
    model.to(device).eval()
    return model, tokenizer


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


def run_shrinking_on_oom(
    attempt: Callable[[Sequence[PromptJob], int, SampleSink], None],
    jobs: Sequence[PromptJob],
    batch: int,
    on_sample: SampleSink,
    say: Callable[[str], None] | None = None,
) -> int:
    """Run ``attempt(jobs, batch, sink)``; on out-of-memory, halve the batch and go on with the samples
    not yet finished.  Returns the batch size that completed."""
    import torch

    done: set[tuple[int, int]] = set()

    def record(sample: FinishedSample) -> None:
        done.add((sample.task_id, sample.index))
        on_sample(sample)

    while True:
        try:
            attempt(without_samples(jobs, done), batch, record)
            return batch
        except Exception as exc:  # only out-of-memory is handled; everything else propagates
            if not is_out_of_memory(exc) or batch <= 1:
                raise
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        batch //= 2
        if say is not None:
            say(f"out of GPU memory: retrying with batch size {batch}")
