"""Weight quantization of a loaded model's linear layers (``--quantize``), and projection fusion.

* ``fp8``: e4m3 weights with one scale per output channel; activations are scaled per token at run
  time and the product runs on the fp8 tensor cores (``torch._scaled_mm``).  Needs a CUDA GPU of
  compute capability 8.9 or newer (Ada, Hopper); anywhere else it is refused, never emulated.
* ``int8``: weight-only, int8 weights with one scale per output channel, widened to the activation
  dtype for each product.  It halves the weights' memory on any device, at some speed.
* ``none``: the model's own weights.

Fusion: the query/key/value projections of a layer, and the gate/up projections of its MLP, are
concatenated into one weight each so that decoding runs one matrix product instead of three (two).
The model's own modules are pointed at row slices of the fused weights, so nothing is stored twice
and the model's forward (prefill) computes exactly what it did.  The embeddings are left as they are;
so is the lm head, except under fp8, where it gets an e4m3 copy of its own (a tied embedding keeps its
weight): at decode's 256-512 rows its product is 1.6-1.8x faster so (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.errors import DeviceError
from harness.generation.triton_support import triton_runs_on

FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT8_MAX = 127.0


class Quantization(str, enum.Enum):
    NONE = "none"
    FP8 = "fp8"
    INT8 = "int8"


@dataclass(frozen=True)
class LinearWeights:
    """y = x W^T (+ b), W stored as ``mode`` says: the model's dtype (scale None), or fp8/int8 with a
    float32 scale per output row."""

    weight: torch.Tensor  # [out, in]
    scale: torch.Tensor | None
    bias: torch.Tensor | None
    mode: Quantization

    def rows(self, first: int, count: int) -> LinearWeights:
        """The weights of output rows [first, first + count) (views, no copy)."""
        end = first + count
        return LinearWeights(
            self.weight[first:end],
            None if self.scale is None else self.scale[first:end],
            None if self.bias is None else self.bias[first:end],
            self.mode,
        )


def linear(x: torch.Tensor, weights: LinearWeights) -> torch.Tensor:
    if weights.mode is Quantization.NONE:
        return F.linear(x, weights.weight, weights.bias)
    assert weights.scale is not None
    if weights.mode is Quantization.INT8:
        out = F.linear(x, weights.weight.to(x.dtype)) * weights.scale.to(x.dtype)
    else:
        out = _fp8_linear(x, weights.weight, weights.scale)
    return out if weights.bias is None else out + weights.bias


def _fp8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    count = rows.shape[0]
    padded = padded_rows(count)  # the fp8 product wants row counts in multiples of 16
    if padded != count:
        rows = F.pad(rows, (0, 0, 0, padded - count))
    if triton_runs_on(rows):
        from harness.generation.triton_decode import quantize_rows

        quantized, row_scale = quantize_rows(rows.contiguous(), torch.float8_e4m3fn, FP8_MAX)
    else:
        row_scale = rows.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
        quantized = (rows / row_scale).to(torch.float8_e4m3fn)
    out = fp8_scaled_product(Fp8Rows(quantized, row_scale), weight, scale, count, x.dtype)
    return out.reshape(*shape[:-1], weight.shape[0])


@dataclass(frozen=True)
class Fp8Rows:
    """Activations scaled per row into e4m3, as the fused decode step's kernels write them: ``values``
    [P, K] and ``scale`` [P, 1] float32, x ≈ values * scale, where P is the row count rounded up to a
    multiple of 16 (the fp8 product's need); rows past the real ones are never read back."""

    values: torch.Tensor
    scale: torch.Tensor


@dataclass(frozen=True)
class UnscaledProduct:
    """An fp8 product before its scales, for a kernel that applies them as it reads it: the product is
    ``raw * row_scale * col_scale`` (+ ``bias``), raw [P, N] in bfloat16 (whatever the model's dtype:
    unscaled sums of e4m3 products overflow float16), row_scale [P, 1] and col_scale [N] float32."""

    raw: torch.Tensor
    row_scale: torch.Tensor
    col_scale: torch.Tensor
    bias: torch.Tensor | None


def padded_rows(count: int) -> int:
    return -(-count // 16) * 16


# Every fp8 product accumulates without the periodic float32 promotion ("fast accumulation"): on the
# H200 that is 5-20% faster per product at decode's row counts, and the product of the e4m3 codes moves
# from 0.17% to 0.20-0.27% off the exact sum, against the 3.7% that e4m3 rounding itself costs
# (bench/fp8_attention_explore.py, docs/BENCHMARKS.md).
FAST_ACCUMULATION = True


def fp8_scaled_product(x: Fp8Rows, weight: torch.Tensor, scale: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """The first ``rows`` rows of x W^T in ``dtype``, both scales applied by torch._scaled_mm (its
    row-wise kernel): weight [N, K] e4m3, scale [N] float32."""
    out = torch._scaled_mm(
        x.values, weight.t(), scale_a=x.scale, scale_b=scale[None, :], out_dtype=dtype, use_fast_accum=FAST_ACCUMULATION
    )
    return out[:rows]


def fp8_unscaled_product(x: Fp8Rows, weights: LinearWeights, unit: torch.Tensor) -> UnscaledProduct:
    """x W^T on the fp8 tensor cores with both scales left for the reader.  With per-row and per-channel
    scales handed to it, torch._scaled_mm takes its row-wise kernel, which at decode's 256-512 rows is
    slower than the tensor-wise one taken here with scalar 1s (``unit``, float32); the fused decode
    step's next kernel multiplies the scales in as it loads the product, so the product costs no pass
    of its own."""
    assert weights.mode is Quantization.FP8 and weights.scale is not None
    raw = torch._scaled_mm(
        x.values, weights.weight.t(), scale_a=unit, scale_b=unit, out_dtype=torch.bfloat16, use_fast_accum=FAST_ACCUMULATION
    )
    return UnscaledProduct(raw, x.scale, weights.scale, weights.bias)


def apply_scales(product: UnscaledProduct, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """The first ``rows`` rows of the scaled product in ``dtype``, rounded as a product written in that
    dtype would be (then the bias added), by torch operations: the reference of the kernels that fuse it."""
    out = (product.raw[:rows].float() * product.row_scale[:rows] * product.col_scale[None, :]).to(dtype)
    return out if product.bias is None else out + product.bias


def quantize_weight(weight: torch.Tensor, mode: Quantization) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized weight, float32 scale per output row) of a [out, in] weight."""
    limit = FP8_MAX if mode is Quantization.FP8 else INT8_MAX
    scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / limit
    scaled = weight.float() / scale[:, None]
    if mode is Quantization.FP8:
        return scaled.to(torch.float8_e4m3fn), scale
    return scaled.round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


def check_supported(mode: Quantization, device: torch.device) -> None:
    """Refuse (DeviceError) a mode the device cannot run."""
    if mode is Quantization.FP8:
        require_fp8_device("--quantize fp8", device)


def require_fp8_device(option: str, device: torch.device) -> None:
    """Refuse (DeviceError, naming ``option``) a device without fp8 arithmetic: anything but a CUDA GPU
    of compute capability 8.9 or newer (Ada, Hopper).  fp8 is never emulated."""
    if device.type != "cuda":
        raise DeviceError(f"{option} needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); the model is on {device}")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        name = torch.cuda.get_device_name(device)
        raise DeviceError(f"{option} needs compute capability 8.9 or newer (Ada, Hopper); {name} has {major}.{minor}")


class QuantizedLinear(torch.nn.Module):
    """A drop-in for nn.Linear over LinearWeights (so the model's own forward runs quantized)."""

    def __init__(self, weights: LinearWeights):
        super().__init__()
        self.weights = weights
        self.in_features, self.out_features = weights.weight.shape[1], weights.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weights)


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer's projections, fused."""

    qkv: LinearWeights
    out: LinearWeights
    gate_up: LinearWeights
    down: LinearWeights


def fused_layers(model: Any, mode: Quantization = Quantization.NONE) -> list[LayerWeights]:
    """The fused (and, for fp8/int8, quantized) projections of every decoder layer; the model's modules
    are rebound to views of them.  Idempotent: a model done once returns the same weights (the mode
    must then match)."""
    done = getattr(model, "_taco_fused_layers", None)
    if done is not None:
        if done[0] is not mode:
            raise ValueError(f"the model's projections are already fused as {done[0].value}, not {mode.value}")
        return done[1]
    if mode is not Quantization.NONE:
        check_supported(mode, next(model.parameters()).device)
    layers = []
    for layer in model.model.layers:
        attention, mlp = layer.self_attn, layer.mlp
        qkv = _fuse(attention, ("q_proj", "k_proj", "v_proj"), mode)
        gate_up = _fuse(mlp, ("gate_proj", "up_proj"), mode)
        out = _fuse(attention, ("o_proj",), mode)
        down = _fuse(mlp, ("down_proj",), mode)
        layers.append(LayerWeights(qkv, out, gate_up, down))
    if mode is Quantization.FP8:
        model.lm_head = _quantized_lm_head(model.lm_head, mode)
    model._taco_fused_layers = (mode, layers)
    return layers


def _quantized_lm_head(head: torch.nn.Module, mode: Quantization) -> QuantizedLinear:
    """The lm head as a QuantizedLinear over a quantized copy of its weight (a tied input embedding keeps
    the original)."""
    weight, bias = head.weight, getattr(head, "bias", None)
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        quantized, scale = quantize_weight(weight, mode)
    return QuantizedLinear(LinearWeights(quantized, scale, bias.detach() if isinstance(bias, torch.Tensor) else None, mode))


def _fuse(parent: torch.nn.Module, names: tuple[str, ...], mode: Quantization) -> LinearWeights:
    modules = [getattr(parent, name) for name in names]
    with torch.no_grad():
        weight = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight.detach()
        biases = [m.bias for m in modules]
        bias = (
            None
            if all(b is None for b in biases)
            else torch.cat(
                [
                    b if b is not None else torch.zeros(m.out_features, dtype=weight.dtype, device=weight.device)
                    for m, b in zip(modules, biases)
                ]
            )
        )
        if mode is Quantization.NONE:
            fused = LinearWeights(weight.detach(), None, None if bias is None else bias.detach(), mode)
        else:
            quantized, scale = quantize_weight(weight, mode)
            fused = LinearWeights(quantized, scale, None if bias is None else bias.detach(), mode)
    first = 0
    for name, module in zip(names, modules):
        part = fused.rows(first, module.out_features)
        first += module.out_features
        if mode is Quantization.NONE:
            module.weight = torch.nn.Parameter(part.weight, requires_grad=False)
            if part.bias is not None and module.bias is not None:
                module.bias = torch.nn.Parameter(part.bias, requires_grad=False)
        else:
            setattr(parent, name, QuantizedLinear(part))
    return fused


def weight_bytes(model: Any) -> int:
    """Bytes of the model's weights as stored (fused and quantized ones counted once)."""
    seen: set[int] = set()
    total = 0
    tensors = [p for p in model.parameters()]
    for mode_and_layers in [getattr(model, "_taco_fused_layers", None)]:
        if mode_and_layers is not None:
            for layer in mode_and_layers[1]:
                for part in (layer.qkv, layer.out, layer.gate_up, layer.down):
                    tensors += [t for t in (part.weight, part.scale, part.bias) if t is not None]
    head = getattr(model, "lm_head", None)
    if isinstance(head, QuantizedLinear):
        tensors += [t for t in (head.weights.weight, head.weights.scale, head.weights.bias) if t is not None]
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total
