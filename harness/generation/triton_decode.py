"""Triton kernels that fuse the small steps of a decode step (``decode_step.py``): each replaces a
chain of elementwise torch kernels with one pass over the data.  Imported only on CUDA with triton.

* ``add_rms_norm``: residual + delta, then RMSNorm of the sum (float32 statistics, the weight applied
  in the model dtype as the Hugging Face RMSNorm does), writing both the new residual and the norm.
* ``rotary_and_write``: splits the fused q/k/v product, applies rotary to q and k, and writes k and v
  straight into the slot's cache row at its write index (no index/cat copies).
* ``silu_times_up``: SiLU(gate) * up from the fused gate/up product.

With ``--quantize fp8`` the same kernels sit on both sides of each fp8 product (``quantization.
fp8_unscaled_product``): the one before writes its output as the product's e4m3 input with a scale
per row (``add_rms_norm_fp8``, ``silu_times_up_fp8``; ``fp8_rows`` for the attention output), and
the one after reads the product's raw sums and multiplies in the row and channel scales as it loads
them, rounding as the scaled product would have been written; so no product needs a quantization
pass before it or a scaling pass after it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from harness.generation.quantization import FP8_MAX, Fp8Rows, UnscaledProduct, padded_rows


@triton.jit
def store_fp8_row(OUT, OUT_SCALE, row, offsets, inside, x32, FP8_MAX: tl.constexpr):
    """Write a whole row ``x32`` (float32) as e4m3 codes scaled by its largest magnitude, and that scale:
    the per-row scaling of quantize_rows, shared by every kernel that writes an fp8 product's input."""
    scale = tl.maximum(tl.max(tl.abs(x32), 0), 1e-12) / FP8_MAX
    tl.store(OUT + offsets, (x32 / scale).to(OUT.dtype.element_ty), mask=inside)
    tl.store(OUT_SCALE + row, scale)


@triton.jit
def _add_rms_norm_kernel(
    R, D, D_ROW_SCALE, D_COL_SCALE, W, R_OUT, X_OUT, X_SCALE, width, eps,
    HAS_DELTA: tl.constexpr, DELTA_SCALED: tl.constexpr, QUANTIZE: tl.constexpr, FP8_MAX: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < width
    r = tl.load(R + row * width + cols, mask=inside, other=0.0)
    if HAS_DELTA:
        d = tl.load(D + row * width + cols, mask=inside, other=0.0)
        if DELTA_SCALED:  # an fp8 product's raw sums: scaled as the product would have written them
            column_scale = tl.load(D_COL_SCALE + cols, mask=inside, other=0.0)
            d = (d.to(tl.float32) * tl.load(D_ROW_SCALE + row) * column_scale).to(R.dtype.element_ty)
        r = (r + d).to(R.dtype.element_ty)
        tl.store(R_OUT + row * width + cols, r, mask=inside)
    r32 = r.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(r32 * r32, 0) / width + eps)
    normed = (r32 * rstd).to(R.dtype.element_ty)
    w = tl.load(W + cols, mask=inside, other=0.0)
    x = w * normed
    if QUANTIZE:  # as quantize_rows would scale the normed row (one scale per row)
        store_fp8_row(X_OUT, X_SCALE, row, row * width + cols, inside, x.to(R.dtype.element_ty).to(tl.float32), FP8_MAX)
    else:
        tl.store(X_OUT + row * width + cols, x.to(X_OUT.dtype.element_ty), mask=inside)


def _launch_add_rms_norm(
    residual: torch.Tensor, delta: torch.Tensor | UnscaledProduct | None, weight: torch.Tensor, eps: float, quantize: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    rows, width = residual.shape
    new_residual = torch.empty_like(residual) if delta is not None else residual
    scale = None
    if quantize:
        normed = torch.empty((padded_rows(rows), width), dtype=torch.float8_e4m3fn, device=residual.device)
        scale = torch.empty((padded_rows(rows), 1), dtype=torch.float32, device=residual.device)
    else:
        normed = torch.empty_like(residual)
    scaled = isinstance(delta, UnscaledProduct)
    if isinstance(delta, UnscaledProduct):
        assert delta.bias is None and delta.raw.shape[1] == width
        d, d_row, d_col = delta.raw, delta.row_scale, delta.col_scale
    else:
        d = delta if delta is not None else residual
        d_row = d_col = residual  # unread
    _add_rms_norm_kernel[(rows,)](
        residual, d, d_row, d_col, weight, new_residual, normed, scale if scale is not None else residual, width, eps,
        HAS_DELTA=delta is not None, DELTA_SCALED=scaled, QUANTIZE=quantize, FP8_MAX=FP8_MAX,
        BLOCK=triton.next_power_of_2(width), num_warps=8,
    )  # fmt: skip
    return new_residual, normed, scale


def add_rms_norm(
    residual: torch.Tensor, delta: torch.Tensor | UnscaledProduct | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(residual + delta, RMSNorm(residual + delta) * weight) for [S, hidden] tensors (``delta`` may be an
    fp8 product's raw sums, scaled as they are read)."""
    new_residual, normed, _ = _launch_add_rms_norm(residual, delta, weight, eps, quantize=False)
    return new_residual, normed


def add_rms_norm_fp8(
    residual: torch.Tensor, delta: torch.Tensor | UnscaledProduct | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, Fp8Rows]:
    """add_rms_norm with the normed rows written as the next fp8 product's input (scaled per row)."""
    new_residual, normed, scale = _launch_add_rms_norm(residual, delta, weight, eps, quantize=True)
    assert scale is not None
    return new_residual, Fp8Rows(normed, scale)


@triton.jit
def _rotary_write_kernel(
    QKV, QKV_ROW_SCALE, QKV_COL_SCALE, QKV_BIAS, COS, SIN, Q_OUT, K, V, K_SCALE, V_SCALE, WRITE_INDEX,
    qkv_row, cos_row,
    k_slot, k_head, k_pos,
    v_slot, v_head, v_pos,
    ks_slot, ks_head,
    vs_slot, vs_head,
    HEADS: tl.constexpr, KV_HEADS: tl.constexpr, HALF: tl.constexpr, SCALED: tl.constexpr, FP8_MAX: tl.constexpr,
    QKV_SCALED: tl.constexpr, HAS_BIAS: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    dims = tl.arange(0, HALF)
    source = QKV + slot * qkv_row + head * (2 * HALF)
    first = tl.load(source + dims)
    second = tl.load(source + HALF + dims)
    if QKV_SCALED:  # an fp8 product's raw sums: scaled (and the bias added) as the product would have written them
        row_scale = tl.load(QKV_ROW_SCALE + slot)
        columns = head * (2 * HALF) + dims
        first = (first.to(tl.float32) * row_scale * tl.load(QKV_COL_SCALE + columns)).to(Q_OUT.dtype.element_ty)
        second = (second.to(tl.float32) * row_scale * tl.load(QKV_COL_SCALE + HALF + columns)).to(Q_OUT.dtype.element_ty)
        if HAS_BIAS:
            first = (first + tl.load(QKV_BIAS + columns)).to(Q_OUT.dtype.element_ty)
            second = (second + tl.load(QKV_BIAS + HALF + columns)).to(Q_OUT.dtype.element_ty)
    first = first.to(tl.float32)
    second = second.to(tl.float32)
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
    qkv: torch.Tensor | UnscaledProduct,
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
    (an fp8 cache: scaled, with their scales written to key_scales/value_scales[s, :, write_index[s]]).
    ``qkv`` may be an fp8 product's raw sums, scaled as they are read; S is then the rows of ``cos``."""
    slots = cos.shape[0]
    dtype = cos.dtype
    row_scale = col_scale = bias = cos  # unread unless the product is unscaled
    if isinstance(qkv, UnscaledProduct):
        row_scale, col_scale = qkv.row_scale, qkv.col_scale
        bias = qkv.bias if qkv.bias is not None else cos
        has_bias, qkv_scaled = qkv.bias is not None, True
        qkv = qkv.raw
    else:
        has_bias, qkv_scaled = False, False
        dtype = qkv.dtype
    query = torch.empty((slots, heads, head_dim), dtype=dtype, device=qkv.device)
    assert qkv.stride(1) == 1 and cos.stride(1) == 1 and sin.stride(1) == 1 and keys.stride(3) == 1 and values.stride(3) == 1
    scaled = key_scales is not None and value_scales is not None
    k_scale = key_scales if key_scales is not None else keys
    v_scale = value_scales if value_scales is not None else values
    assert k_scale.stride(-1) == 1 and v_scale.stride(-1) == 1
    _rotary_write_kernel[(slots, heads + 2 * kv_heads)](
        qkv, row_scale, col_scale, bias, cos, sin, query, keys, values, k_scale, v_scale, write_index,
        qkv.stride(0), cos.stride(0),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        k_scale.stride(0), k_scale.stride(1),
        v_scale.stride(0), v_scale.stride(1),
        HEADS=heads, KV_HEADS=kv_heads, HALF=head_dim // 2, SCALED=scaled, FP8_MAX=FP8_MAX,
        QKV_SCALED=qkv_scaled, HAS_BIAS=has_bias,
    )  # fmt: skip
    return query


@triton.jit
def _silu_hidden(GATE_UP, ROW_SCALE, COL_SCALE, row, cols, inside, width, SCALED: tl.constexpr, DTYPE: tl.constexpr):
    """SiLU(gate) * up at ``cols`` of ``row`` of a fused [S, 2 W] gate/up product (an fp8 product's raw
    sums where SCALED: scaled as the product would have written them), rounded as the model's dtype would."""
    gate = tl.load(GATE_UP + row * 2 * width + cols, mask=inside, other=0.0)
    up = tl.load(GATE_UP + row * 2 * width + width + cols, mask=inside, other=0.0)
    if SCALED:
        row_scale = tl.load(ROW_SCALE + row)
        gate = (gate.to(tl.float32) * row_scale * tl.load(COL_SCALE + cols, mask=inside, other=0.0)).to(DTYPE)
        up = (up.to(tl.float32) * row_scale * tl.load(COL_SCALE + width + cols, mask=inside, other=0.0)).to(DTYPE)
    gate = gate.to(tl.float32)
    silu = (gate / (1.0 + tl.exp(-gate))).to(up.dtype)
    return silu * up


@triton.jit
def _silu_times_up_kernel(
    GATE_UP, ROW_SCALE, COL_SCALE, OUT, OUT_SCALE, width,
    SCALED: tl.constexpr, QUANTIZE: tl.constexpr, FP8_MAX: tl.constexpr, DTYPE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    hidden = _silu_hidden(GATE_UP, ROW_SCALE, COL_SCALE, row, cols, inside, width, SCALED, DTYPE)
    if QUANTIZE:  # the whole row is this program's (BLOCK >= width): scaled per row as quantize_rows would
        store_fp8_row(OUT, OUT_SCALE, row, row * width + cols, inside, hidden.to(tl.float32), FP8_MAX)
    else:
        tl.store(OUT + row * width + cols, hidden, mask=inside)


@triton.jit
def _silu_chunk_kernel(
    GATE_UP, ROW_SCALE, COL_SCALE, HIDDEN, CHUNK_MAX, width, chunks, SCALED: tl.constexpr, DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """Pass 1 of the chunked fp8 SiLU: a chunk of a row's hidden values, and the chunk's largest magnitude."""
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    cols = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    hidden = _silu_hidden(GATE_UP, ROW_SCALE, COL_SCALE, row, cols, inside, width, SCALED, DTYPE)
    tl.store(HIDDEN + row * width + cols, hidden, mask=inside)
    tl.store(CHUNK_MAX + row * chunks + chunk, tl.max(tl.abs(hidden.to(tl.float32)), 0))


@triton.jit
def _quantize_chunks_kernel(
    HIDDEN, CHUNK_MAX, OUT, OUT_SCALE, width, chunks, FP8_MAX: tl.constexpr, CHUNKS_PAD: tl.constexpr, BLOCK: tl.constexpr
):  # fmt: skip
    """Pass 2: a chunk scaled by its row's largest magnitude (the largest of the row's chunk maxima)."""
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    which = tl.arange(0, CHUNKS_PAD)
    top = tl.max(tl.load(CHUNK_MAX + row * chunks + which, mask=which < chunks, other=0.0), 0)
    scale = tl.maximum(top, 1e-12) / FP8_MAX
    cols = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    hidden = tl.load(HIDDEN + row * width + cols, mask=inside, other=0.0).to(tl.float32)
    tl.store(OUT + row * width + cols, (hidden / scale).to(OUT.dtype.element_ty), mask=inside)
    if chunk == 0:
        tl.store(OUT_SCALE + row, scale)


TRITON_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def silu_times_up(
    gate_up: torch.Tensor | UnscaledProduct, rows: int | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """SiLU(gate) * up of a fused [S, 2 W] gate/up product; for an fp8 product's raw sums, its first
    ``rows`` rows, scaled as they are read, in ``dtype``."""
    out, _ = _launch_silu(gate_up, rows, dtype, quantize=False)
    return out


def silu_times_up_fp8(gate_up: UnscaledProduct, rows: int, dtype: torch.dtype) -> Fp8Rows:
    """silu_times_up written as the next fp8 product's input (scaled per row)."""
    out, scale = _launch_silu(gate_up, rows, dtype, quantize=True)
    assert scale is not None
    return Fp8Rows(out, scale)


def _launch_silu(
    gate_up: torch.Tensor | UnscaledProduct, rows: int | None, dtype: torch.dtype | None, quantize: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    scaled = isinstance(gate_up, UnscaledProduct)
    if isinstance(gate_up, UnscaledProduct):
        assert gate_up.bias is None and rows is not None and dtype is not None
        raw, row_scale, col_scale = gate_up.raw, gate_up.row_scale, gate_up.col_scale
    else:
        raw = row_scale = col_scale = gate_up
        rows, dtype = gate_up.shape[0], gate_up.dtype
    width = raw.shape[1] // 2
    scale = None
    if quantize:
        out = torch.empty((padded_rows(rows), width), dtype=torch.float8_e4m3fn, device=raw.device)
        scale = torch.empty((padded_rows(rows), 1), dtype=torch.float32, device=raw.device)
        if rows > CHUNKED_SILU_ROWS:
            _chunked_silu_fp8(raw, row_scale, col_scale, out, scale, rows, width, scaled, dtype)
            return out, scale
        block, warps = triton.next_power_of_2(width), 32  # one program per row: the row's scale needs all of it
    else:
        out = torch.empty((rows, width), dtype=dtype, device=raw.device)
        block, warps = 1024, 4
    _silu_times_up_kernel[(rows, triton.cdiv(width, block))](
        raw, row_scale, col_scale, out, scale if scale is not None else out, width,
        SCALED=scaled, QUANTIZE=quantize, FP8_MAX=FP8_MAX, DTYPE=TRITON_DTYPES[dtype], BLOCK=block, num_warps=warps,
    )  # fmt: skip
    return out, scale


# Above this many rows the fp8 SiLU runs in two passes over chunks of 1,024 (hidden values in the model's
# dtype, then scaled by the row's largest): one program per whole row leaves too few programs.  On the
# H200 (bench/fp8_attention_explore.py): 512 rows x 8,960, 18.5 us in one pass against 11.8 chunked;
# 256 rows x 8,192, 5.3 us in one pass (32 warps) against 6.4 chunked.
CHUNKED_SILU_ROWS = 256
SILU_CHUNK = 1024
# Tried in session 10 (silu_time check): pass 2 computing the hidden values again from the product instead
# of reading them back, 14.97 us against 11.64 at 512 x 8,960.


def _chunked_silu_fp8(
    raw: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor, out: torch.Tensor, scale: torch.Tensor,
    rows: int, width: int, scaled: bool, dtype: torch.dtype,
) -> None:  # fmt: skip
    chunks = triton.cdiv(width, SILU_CHUNK)
    hidden = torch.empty((rows, width), dtype=dtype, device=raw.device)
    chunk_max = torch.empty((rows, chunks), dtype=torch.float32, device=raw.device)
    _silu_chunk_kernel[(rows, chunks)](
        raw, row_scale, col_scale, hidden, chunk_max, width, chunks,
        SCALED=scaled, DTYPE=TRITON_DTYPES[dtype], BLOCK=SILU_CHUNK, num_warps=4,
    )  # fmt: skip
    _quantize_chunks_kernel[(rows, chunks)](
        hidden, chunk_max, out, scale, width, chunks,
        FP8_MAX=FP8_MAX, CHUNKS_PAD=triton.next_power_of_2(chunks), BLOCK=SILU_CHUNK, num_warps=4,
    )  # fmt: skip


@triton.jit
def _quantize_rows_kernel(X, OUT, SCALE, width, LIMIT: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < width
    x = tl.load(X + row * width + cols, mask=inside, other=0.0).to(tl.float32)
    store_fp8_row(OUT, SCALE, row, row * width + cols, inside, x, LIMIT)


def fp8_rows(x: torch.Tensor) -> Fp8Rows:
    """A contiguous [S, width] tensor scaled per row into e4m3, rows padded for the fp8 product."""
    rows, width = x.shape
    out = torch.empty((padded_rows(rows), width), dtype=torch.float8_e4m3fn, device=x.device)
    scale = torch.empty((padded_rows(rows), 1), dtype=torch.float32, device=x.device)
    _quantize_rows_kernel[(rows,)](x, out, scale, width, LIMIT=FP8_MAX, BLOCK=triton.next_power_of_2(width), num_warps=8)
    return Fp8Rows(out, scale)


def quantize_rows(x: torch.Tensor, dtype: torch.dtype, limit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scaling of a contiguous [rows, width] tensor to ``dtype``: (quantized, float32 scale [rows, 1]),
    in one pass (the fp8 products' activation quantization)."""
    rows, width = x.shape
    out = torch.empty((rows, width), dtype=dtype, device=x.device)
    scale = torch.empty((rows, 1), dtype=torch.float32, device=x.device)
    _quantize_rows_kernel[(rows,)](x, out, scale, width, LIMIT=limit, BLOCK=triton.next_power_of_2(width), num_warps=8)
    return out, scale
