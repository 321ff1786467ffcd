"""Building an engine in a device worker (a thread or a process): the protocol the workers call, and the real one, which
loads the model and picks the fast or the hf engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harness.errors import ModelError
from harness.generation.engine import Engine
from harness.generation.plan import GenerationSettings


class EngineFactory(Protocol):
    """Builds an engine on a device inside a worker; must be picklable (process workers and Ray actors get a copy)."""

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
        from harness.generation.engine import load_model
        from harness.generation.fast_engine import (
            FastEngine,
            FastEngineOptions,
            unsupported_reason,
        )
        from harness.generation.hf_engine import HFEngine
        from harness.generation.kv_cache import KVCacheFormat
        from harness.generation.quantization import Quantization

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
            options = FastEngineOptions(
                slots=self.batch_size,
                chunk_steps=self.chunk_steps,
                cuda_graphs=self.cuda_graphs,
                quantization=Quantization(self.settings.quantize),
                kv_cache=KVCacheFormat(self.settings.kv_cache),
            )
            return FastEngine(model, tokenizer, self.settings.sampling, options, say=say)
        if self.settings.quantize != "none":
            raise ModelError(f"--quantize {self.settings.quantize} needs the fast engine, which cannot run this model")
        if self.settings.kv_cache != "model":
            raise ModelError(f"--kv-cache {self.settings.kv_cache} needs the fast engine, which cannot run this model")
        return HFEngine(
            model, tokenizer, self.settings.sampling, batch_size=self.batch_size, check_every=self.chunk_steps, say=say
        )
