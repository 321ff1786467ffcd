"""What to generate (pure): sampling settings, per-sample seeds, and the prompt jobs (handed out to
the device workers by ``work_queue``).

A sample is identified by (task_id, sample index).  Its seed depends only on (run seed, task_id,
index), so which process, batch or slot it lands in does not change the random numbers it uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class SamplingSettings:
    """``model.generate``'s sampling knobs, applied in its order: temperature, then top-k, then top-p.
    A temperature of 0 means greedy decoding."""

    temperature: float = 0.2
    top_k: int = 50  # generate's default; 0 turns it off
    top_p: float = 0.95  # 1.0 turns it off
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides which samples come out (and so must match when a run is resumed,
    except ``n``: samples are identified by (task_id, index), so a resume may ask for more or fewer)."""

    model: str
    n: int
    max_new_tokens: int
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    dtype: str = "bfloat16"
    # Instruct models: the official prompt as a user message in the tokenizer's chat template (with
    # this system prompt, if any), and the program taken from the first fenced code block of each
    # output.  Off by default: the official prompt and post-processing, byte for byte.
    chat_template: bool = False
    system_prompt: str | None = None
    extract_code: bool = False
    # Weight quantization of the fast engine's projections: "none", "fp8" or "int8" (quantization.py).
    quantize: str = "none"
    # The fast engine's K/V cache: "model" (the model's dtype) or "fp8" (kv_cache.py).
    kv_cache: str = "model"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.system_prompt is not None and not self.chat_template:
            raise ValueError("a system prompt needs the chat template (chat_template=True)")

    def fingerprint(self) -> dict:
        """What a resumed run must share with the journal it resumes (n is not part of it)."""
        s = self.sampling
        return {
            "model": model_identity(self.model),
            "max_new_tokens": self.max_new_tokens,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "seed": s.seed,
            "dtype": self.dtype,
            "chat_template": self.chat_template,
            "system_prompt": self.system_prompt,
            "extract_code": self.extract_code,
            "quantize": self.quantize,
            "kv_cache": self.kv_cache,
        }


def model_identity(model: str) -> str:
    """A model as the journal compares it: a local directory by its resolved path (so a relative
    path, a symlink or a trailing slash name the same model), anything else (a hub id) as written."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model.rstrip("/")


@dataclass(frozen=True)
class SampleSpec:
    index: int  # position in the task's output list
    seed: int  # 63-bit, from sample_seed()
    max_new_tokens: int  # the token budget of this sample


@dataclass(frozen=True)
class PromptJob:
    """One prompt and the samples still to draw from it (all of them, or the ones a resume lacks)."""

    task_id: int
    prompt: str
    samples: tuple[SampleSpec, ...]
    # False for a prompt already in the chat template, whose text carries its special tokens (BOS).
    add_special_tokens: bool = True


def sample_seed(seed: int, task_id: int, index: int) -> int:
    """A 63-bit seed for one sample, from the run seed and the sample's identity only."""
    digest = hashlib.blake2b(f"{seed}/{task_id}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def plan_jobs(prompts: Sequence[tuple[int, str]], settings: GenerationSettings) -> list[PromptJob]:
    """One job per (task_id, prompt), in the given (task) order, with all n samples (indices 0..n-1)."""
    seed = settings.sampling.seed
    return [
        PromptJob(
            task_id,
            prompt,
            tuple(SampleSpec(i, sample_seed(seed, task_id, i), settings.max_new_tokens) for i in range(settings.n)),
            add_special_tokens=not settings.chat_template,
        )
        for task_id, prompt in prompts
    ]


def without_samples(jobs: Iterable[PromptJob], done: set[tuple[int, int]]) -> list[PromptJob]:
    """The jobs with the samples in ``done`` (task_id, index) removed; jobs left empty are dropped."""
    remaining = []
    for job in jobs:
        samples = tuple(s for s in job.samples if (job.task_id, s.index) not in done)
        if samples:
            remaining.append(replace(job, samples=samples))
    return remaining
