"""Triton kernels that fuse the small steps of a decode step (``decode_step.py``): each replaces a
chain of elementwise torch kernels with one pass over the data.  Imported only on CUDA with triton.

* ``add_rms_norm``: residual + delta, then RMSNorm of the sum (float32 statistics, the weight applied
  in the model dtype as the Hugging Face RMSNorm does), writing both the new residual and the norm.
* ``rotary_and_write``: splits the fused q/k/v product, applies rotary to q and k, and writes k and v
  straight into the slot's cache row at its write index (no index/cat copies).
* ``silu_times_up``: SiLU(gate) * up from the fused gate/up product.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from harness.generation.quantization import FP8_MAX


@triton.jit
def _add_rms_norm_kernel(
    R, D, W, R_OUT, X_OUT, width, eps,
    HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < width
    r = tl.load(R + row * width + cols, mask=inside, other=0.0)
    if HAS_DELTA:
        r = (r + tl.load(D + row * width + cols, mask=inside, other=0.0)).to(R.dtype.element_ty)
        tl.store(R_OUT + row * width + cols, r, mask=inside)
    r32 = r.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(r32 * r32, 0) / width + eps)
    normed = (r32 * rstd).to(R.dtype.element_ty)
    w = tl.load(W + cols, mask=inside, other=0.0)
    tl.store(X_OUT + row * width + cols, (w * normed).to(X_OUT.dtype.element_ty), mask=inside)


def add_rms_norm(
    residual: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(residual + delta, RMSNorm(residual + delta) * weight) for [S, hidden] tensors."""
    rows, width = residual.shape
    new_residual = torch.empty_like(residual) if delta is not None else residual
    normed = torch.empty_like(residual)
    _add_rms_norm_kernel[(rows,)](
        residual, delta if delta is not None else residual, weight, new_residual, normed, width, eps,
        HAS_DELTA=delta is not None, BLOCK=triton.next_power_of_2(width), num_warps=8,
    )  # fmt: skip
    return new_residual, normed


@triton.jit
def _rotary_write_kernel(
    QKV, COS, SIN, Q_OUT, K, V, K_SCALE, V_SCALE, WRITE_INDEX,
    qkv_row, cos_row,
    k_slot, k_head, k_pos,
    v_slot, v_head, v_pos,
    ks_slot, ks_head,
    vs_slot, vs_head,
    HEADS: tl.constexpr, KV_HEADS: tl.constexpr, HALF: tl.constexpr, SCALED: tl.constexpr, FP8_MAX: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    dims = tl.arange(0, HALF)
    source = QKV + slot * qkv_row + head * (2 * HALF)
    first = tl.load(source + dims).to(tl.float32)
    second = tl.load(source + HALF + dims).to(tl.float32)
    position = tl.load(WRITE_INDEX + slot)
    if head < HEADS + KV_HEADS:
        cos_first = tl.load(COS + slot * cos_row + dims).to(tl.float32)
        cos_second = tl.load(COS + slot * cos_row + HALF + dims).to(tl.float32)
        sin_first = tl.load(SIN + slot * cos_row + dims).to(tl.float32)
        sin_second = tl.load(SIN + slot * cos_row + HALF + dims).to(tl.float32)
        out_first = first * cos_first - second * sin_first
        out_second = second * cos_second + first * sin_second
        if head < HEADS:
            query_target = Q_OUT + (slot * HEADS + head) * (2 * HALF)
            tl.store(query_target + dims, out_first.to(Q_OUT.dtype.element_ty))
            tl.store(query_target + HALF + dims, out_second.to(Q_OUT.dtype.element_ty))
        else:
            key_target = K + slot * k_slot + (head - HEADS) * k_head + position * k_pos
            if SCALED:
                # As the model's dtype would store it, then scaled into fp8 (kv_cache.quantize_vectors).
                out_first = out_first.to(Q_OUT.dtype.element_ty).to(tl.float32)
                out_second = out_second.to(Q_OUT.dtype.element_ty).to(tl.float32)
                top = tl.maximum(tl.max(tl.abs(out_first), 0), tl.max(tl.abs(out_second), 0))
                scale = tl.maximum(top, 1e-12) / FP8_MAX
                out_first = out_first / scale
                out_second = out_second / scale
                tl.store(K_SCALE + slot * ks_slot + (head - HEADS) * ks_head + position, scale)
            tl.store(key_target + dims, out_first.to(K.dtype.element_ty))
            tl.store(key_target + HALF + dims, out_second.to(K.dtype.element_ty))
    else:
        value_target = V + slot * v_slot + (head - HEADS - KV_HEADS) * v_head + position * v_pos
        if SCALED:
            top = tl.maximum(tl.max(tl.abs(first), 0), tl.max(tl.abs(second), 0))
            scale = tl.maximum(top, 1e-12) / FP8_MAX
            first = first / scale
            second = second / scale
            tl.store(V_SCALE + slot * vs_slot + (head - HEADS - KV_HEADS) * vs_head + position, scale)
        tl.store(value_target + dims, first.to(V.dtype.element_ty))
        tl.store(value_target + HALF + dims, second.to(V.dtype.element_ty))


def rotary_and_write(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    write_index: torch.Tensor,
    heads: int,
    kv_heads: int,
    head_dim: int,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rotated queries [S, H, D]; rotated keys and the values written to keys/values[s, :, write_index[s]]
    (an fp8 cache: scaled, with their scales written to key_scales/value_scales[s, :, write_index[s]])."""
    slots = qkv.shape[0]
    query = torch.empty((slots, heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    assert qkv.stride(1) == 1 and cos.stride(1) == 1 and sin.stride(1) == 1 and keys.stride(3) == 1 and values.stride(3) == 1
    scaled = key_scales is not None and value_scales is not None
    k_scale = key_scales if key_scales is not None else keys
    v_scale = value_scales if value_scales is not None else values
    assert k_scale.stride(-1) == 1 and v_scale.stride(-1) == 1
    _rotary_write_kernel[(slots, heads + 2 * kv_heads)](
        qkv, cos, sin, query, keys, values, k_scale, v_scale, write_index,
        qkv.stride(0), cos.stride(0),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        k_scale.stride(0), k_scale.stride(1),
        v_scale.stride(0), v_scale.stride(1),
        HEADS=heads, KV_HEADS=kv_heads, HALF=head_dim // 2, SCALED=scaled, FP8_MAX=FP8_MAX,
    )  # fmt: skip
    return query


@triton.jit
def _silu_times_up_kernel(GATE_UP, OUT, width, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    gate = tl.load(GATE_UP + row * 2 * width + cols, mask=inside, other=0.0).to(tl.float32)
    up = tl.load(GATE_UP + row * 2 * width + width + cols, mask=inside, other=0.0)
    silu = (gate / (1.0 + tl.exp(-gate))).to(up.dtype)
    tl.store(OUT + row * width + cols, silu * up, mask=inside)


def silu_times_up(gate_up: torch.Tensor) -> torch.Tensor:
    rows, double = gate_up.shape
    width = double // 2
    out = torch.empty((rows, width), dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_times_up_kernel[(rows, triton.cdiv(width, block))](gate_up, out, width, BLOCK=block)
    return out


@triton.jit
def _quantize_rows_kernel(X, OUT, SCALE, width, limit, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < width
    x = tl.load(X + row * width + cols, mask=inside, other=0.0).to(tl.float32)
    scale = tl.maximum(tl.max(tl.abs(x), 0), 1e-12) / limit
    tl.store(OUT + row * width + cols, (x / scale).to(OUT.dtype.element_ty), mask=inside)
    tl.store(SCALE + row, scale)


def quantize_rows(x: torch.Tensor, dtype: torch.dtype, limit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scaling of a contiguous [rows, width] tensor to ``dtype``: (quantized, float32 scale [rows, 1]),
    in one pass (the fp8 products' activation quantization)."""
    rows, width = x.shape
    out = torch.empty((rows, width), dtype=dtype, device=x.device)
    scale = torch.empty((rows, 1), dtype=torch.float32, device=x.device)
    _quantize_rows_kernel[(rows,)](x, out, scale, width, limit, BLOCK=triton.next_power_of_2(width), num_warps=8)
    return out, scale
