"""The format of the fast engine's K/V cache (``--kv-cache``).

* ``model``: K and V in the model's dtype.
* ``fp8``: each sample's own K and V (the generated tokens' rows, which decode attention reads for
  every slot at every step) as float8 e4m3 with one float32 scale per (KV head, position) — the
  largest magnitude of that head's vector maps to the format's largest finite value — so each stored
  vector keeps three mantissa bits relative to its own size whatever the layer's range.  Those bytes
  are about halved (a 128-wide head: 128 + 4 bytes instead of 256).  The shared prompt prefixes stay
  in the model's dtype: stored and read once per group of sibling samples, they are a small part of
  the bytes, and widening them would cost more than it saves.  The attention kernel widens each block
  (to float16, exact for e4m3) and applies the scales.  Needs the Triton kernels of the fused decode
  step with the shared prefix on a CUDA GPU of compute capability 8.9 or newer; refused anywhere else,
  never emulated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch

from harness.errors import DeviceError
from harness.generation.quantization import FP8_MAX, require_fp8_device

KV_FP8_DTYPE = torch.float8_e4m3fn


class KVCacheFormat(str, enum.Enum):
    MODEL = "model"
    FP8 = "fp8"


@dataclass(frozen=True)
class KVScales:
    """One layer's scales of an fp8 cache: per suffix row position [S, KVH, L], float32."""

    keys: torch.Tensor
    values: torch.Tensor


def quantize_vectors(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 tensor, float32 scale per vector) of ``x`` [..., D]: x ≈ fp8 * scale[..., None]."""
    scale = x.float().abs().amax(dim=-1).clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale[..., None]).to(KV_FP8_DTYPE), scale


def dequantize_vectors(quantized: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (quantized.float() * scale[..., None]).to(dtype)


def check_supported(kv_format: KVCacheFormat, device: torch.device, fused_triton_step: bool) -> None:
    """Refuse (DeviceError) an fp8 cache where the engine cannot run it."""
    if kv_format is not KVCacheFormat.FP8:
        return
    require_fp8_device("--kv-cache fp8", device)
    if not fused_triton_step:
        raise DeviceError("--kv-cache fp8 needs the fast engine's fused decode step with its Triton kernels (triton installed)")
