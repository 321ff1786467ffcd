"""Triton kernels for decode attention with a per-slot length (split-K "flash decoding").

Copied-prefix layout (``triton_decode_attention``): pass 1, one program per (slot, KV head, split of
the cache), runs an online softmax over the split's valid positions for all query heads of the group
and writes partial (sum of weighted values, max, normaliser); splits that start beyond the slot's
length do no work.  Pass 2 merges the splits of each (slot, head).  Shared-prefix layout: below.
Imported only on CUDA when triton is present.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from harness.generation.kv_cache import KVScales
from harness.generation.quantization import FP8_MAX, Fp8Rows, padded_rows
from harness.generation.triton_decode import TRITON_DTYPES, fp8_rows, store_fp8_row

SPLIT = 512  # cache positions per pass-1 program
BLOCK = 64  # positions per inner step


@dataclass(frozen=True)
class LaunchConfig:
    """A kernel's positions per inner step, its launch settings and, for the prefix pass, the prefix
    positions per program (``split``) and whether it runs beside the suffix pass (``alongside``);
    bench/generation_steps.py's ``attention_configs`` and ``attention_time`` checks measure the choices."""

    block: int
    warps: int
    stages: int
    split: int = SPLIT
    # The prefix pass only: run it on a second stream beside the suffix pass (each writes partials, and a
    # third small kernel merges them) instead of before it (the suffix pass merging the prefix partials).
    alongside: bool = False


# The prefix pass beside the suffix pass: on the H200, one layer mid-run 95.0 -> 89.4 us (3B shape, bf16),
# 98.1 -> 89.0 (fp8 cache), 63.5 -> 56.0 (1.5B shape); a whole 3B decode step 5.92 -> 5.79 ms of GPU
# time in bf16, 5.03 -> 5.01 with fp8 weights and cache (docs/BENCHMARKS.md, session 8).
PREFIX_LAUNCH = LaunchConfig(BLOCK, 4, 3, alongside=True)
# The suffix pass by the cache's format.  fp8, measured on the H200 (docs/BENCHMARKS.md): twice the
# positions per step and two stages; in session 9's sweep (V widened before staging) 81.4 against 90.5 us
# per layer with the bf16 choice at the 3B shape, 53.0 against 57.5 at the 1.5B.  Loading the next block
# ahead by hand, q.k on the fp8 tensor cores, and float32 arithmetic on the CUDA cores were all slower.
SUFFIX_LAUNCH = {False: LaunchConfig(BLOCK, 4, 3), True: LaunchConfig(2 * BLOCK, 4, 2)}


@triton.jit
def _widen_e4m3(codes):
    """e4m3 codes -> float16 (exact), two at a time by the hardware's paired conversion.

    Written as asm marked impure on purpose: Triton moves a plain ``.to(tl.float16)`` of a dot operand
    past the operand's shared-memory staging, and for V (the second operand of p.v, its positions not
    contiguous) it then reads the staged fp8 bytes one at a time to transpose them: 128 single-byte
    shared loads per thread per block of 128 positions, which held the fp8 suffix pass to half the
    bf16 pass's bandwidth.  Widened before staging, V is transposed as 16-bit values by ldmatrix."""
    return tl.inline_asm_elementwise(
        "{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $2; cvt.rn.f16x2.e4m3x2 $0, lo; cvt.rn.f16x2.e4m3x2 $1, hi; }",
        "=r,=r,r",
        [codes],
        dtype=tl.float16,
        is_pure=False,
        pack=4,
    )


@triton.jit
def _attend_block(q, k, v, valid, running_max, running_sum, acc, scale, key_scale, value_scale, SCALED: tl.constexpr):
    """One block of positions of an online softmax: q [rows, D], k/v [BLOCK, D] (fp8 with a scale per
    position where SCALED, and then q in float16), valid [BLOCK]; returns the updated (max, sum, acc)
    of every row."""
    if SCALED:
        k = k.to(q.dtype)  # K is the contiguous operand of q.k: Triton's own widening loads it well
    scores = tl.dot(q, tl.trans(k)) * scale
    if SCALED:
        scores = scores * key_scale[None, :]
    scores = tl.where(valid[None, :], scores, float("-inf"))
    new_max = tl.maximum(running_max, tl.max(scores, 1))
    rescale = tl.exp(running_max - new_max)
    weights = tl.exp(scores - new_max[:, None])
    running_sum = running_sum * rescale + tl.sum(weights, 1)
    if SCALED:
        weights = weights * value_scale[None, :]
        v = _widen_e4m3(v)
    acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v)
    return new_max, running_sum, acc


# The kernels' arguments (and the launches below) are grouped by hand, one tensor's strides to a
# line: `# fmt: skip` keeps the formatter from putting each on a line of its own.
@triton.jit
def _partial_kernel(
    Q, K, V, LENGTHS, ACC, MAX, SUM,
    q_slot, q_head,
    k_slot, k_head, k_pos,
    v_slot, v_head, v_pos,
    acc_slot, acc_head, acc_split,
    m_slot, m_head,
    scale,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, SPLIT: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    length = tl.load(LENGTHS + slot).to(tl.int32)
    start = split * SPLIT
    end = tl.minimum(start + SPLIT, length)

    member = tl.arange(0, GROUP_PAD)
    dims = tl.arange(0, HEAD_DIM)
    offsets = tl.arange(0, BLOCK)
    heads = kv_head * GROUP + member
    in_group = member < GROUP

    q = tl.load(Q + slot * q_slot + heads[:, None] * q_head + dims[None, :], mask=in_group[:, None], other=0.0)
    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    running_sum = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
    k_base = K + slot * k_slot + kv_head * k_head
    v_base = V + slot * v_slot + kv_head * v_head
    for block_start in range(start, end, BLOCK):
        positions = block_start + offsets
        valid = positions < end
        k = tl.load(k_base + positions[:, None] * k_pos + dims[None, :], mask=valid[:, None], other=0.0)
        v = tl.load(v_base + positions[:, None] * v_pos + dims[None, :], mask=valid[:, None], other=0.0)
        running_max, running_sum, acc = _attend_block(
            q, k, v, valid, running_max, running_sum, acc, scale, scale, scale, SCALED=False
        )

    tl.store(ACC + slot * acc_slot + heads[:, None] * acc_head + split * acc_split + dims[None, :], acc, mask=in_group[:, None])
    tl.store(MAX + slot * m_slot + heads * m_head + split, running_max, mask=in_group)
    tl.store(SUM + slot * m_slot + heads * m_head + split, running_sum, mask=in_group)


@triton.jit
def _merge_kernel(
    ACC, MAX, SUM, OUT,
    acc_slot, acc_head, acc_split,
    m_slot, m_head,
    o_slot, o_head,
    SPLITS: tl.constexpr, SPLITS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    dims = tl.arange(0, HEAD_DIM)
    used = splits < SPLITS
    maxima = tl.load(MAX + slot * m_slot + head * m_head + splits, mask=used, other=float("-inf"))
    sums = tl.load(SUM + slot * m_slot + head * m_head + splits, mask=used, other=0.0)
    top = tl.max(maxima, 0)  # finite: split 0 always holds at least one valid position
    weights = tl.exp(maxima - top)  # 0 for empty splits
    acc = tl.load(
        ACC + slot * acc_slot + head * acc_head + splits[:, None] * acc_split + dims[None, :], mask=used[:, None], other=0.0
    )
    out = tl.sum(acc * weights[:, None], 0) / tl.sum(sums * weights, 0)
    tl.store(OUT + slot * o_slot + head * o_head + dims, out.to(OUT.dtype.element_ty))


def triton_decode_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, scale: float
) -> torch.Tensor:
    slots, heads, _, head_dim = query.shape
    kv_heads, capacity = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    splits = triton.cdiv(capacity, SPLIT)
    acc = torch.empty((slots, heads, splits, head_dim), dtype=torch.float32, device=query.device)
    maxima = torch.empty((slots, heads, splits), dtype=torch.float32, device=query.device)
    sums = torch.empty_like(maxima)
    out = torch.empty((slots, heads, head_dim), dtype=query.dtype, device=query.device)
    assert query.stride(-1) == 1 and keys.stride(-1) == 1 and values.stride(-1) == 1
    _partial_kernel[(slots, kv_heads, splits)](
        query, keys, values, lengths, acc, maxima, sums,
        query.stride(0), query.stride(1),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        scale,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim, BLOCK=BLOCK, SPLIT=SPLIT,
    )  # fmt: skip
    _merge_kernel[(slots, heads)](
        acc, maxima, sums, out,
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        out.stride(0), out.stride(1),
        SPLITS=splits, SPLITS_PAD=max(2, triton.next_power_of_2(splits)), HEAD_DIM=head_dim,
    )  # fmt: skip
    return out.view(slots, 1, heads, head_dim)


# --- shared prompt prefix ----------------------------------------------------------------------------
# A slot's keys are its prompt's prefix, stored once in a pool that all the prompt's samples share, then
# the slot's own suffix (the last prompt token and the generated ones).  Two kernels:
# * the prefix pass runs one program per (group of sibling slots, KV head, prefix split): it loads the
#   queries of every sibling's query heads of that KV head as one [rows, D] block, so each prefix K/V
#   block is read once for the whole group and multiplied on the tensor cores, and writes each row's
#   partial (sum of weighted values, max, normaliser) per split;
# * the suffix pass runs one program per (slot, KV head): it starts from the slot's prefix partials
#   (merged in registers), runs the online softmax on over the slot's suffix (short: at most the
#   token budget, so it needs no split) and writes the normalised output.  No third merge pass, and
#   the suffix writes no partials.
# The prefix pass has few programs (a group's siblings share each one), so alone it leaves most of the
# GPU idle.  With ``LaunchConfig.alongside`` it runs on a second stream beside the suffix pass instead:
# the suffix pass then starts empty and writes its own partial, and a third kernel merges the two.
# With an fp8 cache the suffix's K and V are float8 e4m3 with one float32 scale per (KV head, position):
# the suffix pass widens each block to float16 (exact for e4m3; the query is taken to float16 once) and
# applies the scales to the scores (keys) and to the softmax weights (values).  The pool stays in the
# model's dtype.
@triton.jit
def _prefix_group_kernel(
    Q, PK, PV, GROUPS, ACC, MAX, SUM,
    q_slot, q_head,
    pk_head, pk_pos,
    pv_head, pv_pos,
    acc_slot, acc_head, acc_split,
    m_slot, m_head,
    groups_row,
    scale,
    GROUP: tl.constexpr, MEMBERS: tl.constexpr, ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
    SPLIT: tl.constexpr,
):  # fmt: skip
    group_id = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    # A group's row: pool start, prefix length, then MEMBERS slot indices (-1 where unused).
    row_base = GROUPS + group_id * groups_row
    length = tl.load(row_base + 1).to(tl.int32)
    start = split * SPLIT
    if start < length:
        first = tl.load(row_base).to(tl.int64)
        end = tl.minimum(start + SPLIT, length)
        rows = tl.arange(0, ROWS)
        member = rows // GROUP
        heads = kv_head * GROUP + rows % GROUP
        slots = tl.load(row_base + 2 + member, mask=member < MEMBERS, other=-1)
        used = slots >= 0
        slots = tl.where(used, slots, 0).to(tl.int64)
        dims = tl.arange(0, HEAD_DIM)
        offsets = tl.arange(0, BLOCK)
        q = tl.load(Q + slots[:, None] * q_slot + heads[:, None] * q_head + dims[None, :], mask=used[:, None], other=0.0)
        running_max = tl.full([ROWS], float("-inf"), tl.float32)
        running_sum = tl.zeros([ROWS], tl.float32)
        acc = tl.zeros([ROWS, HEAD_DIM], tl.float32)
        k_base = PK + kv_head * pk_head + first * pk_pos
        v_base = PV + kv_head * pv_head + first * pv_pos
        for block_start in range(start, end, BLOCK):
            positions = block_start + offsets
            valid = positions < end
            k = tl.load(k_base + positions[:, None] * pk_pos + dims[None, :], mask=valid[:, None], other=0.0)
            v = tl.load(v_base + positions[:, None] * pv_pos + dims[None, :], mask=valid[:, None], other=0.0)
            running_max, running_sum, acc = _attend_block(
                q, k, v, valid, running_max, running_sum, acc, scale, scale, scale, SCALED=False
            )
        target = slots[:, None] * acc_slot + heads[:, None] * acc_head + split * acc_split + dims[None, :]
        tl.store(ACC + target, acc, mask=used[:, None])
        tl.store(MAX + slots * m_slot + heads * m_head + split, running_max, mask=used)
        tl.store(SUM + slots * m_slot + heads * m_head + split, running_sum, mask=used)


@triton.jit
def _merge_prefix_partials(
    ACC, MAX, SUM, slot, heads, in_group, dims, prefix_length, running_max, running_sum, acc,
    acc_slot, acc_head, acc_split, m_slot, m_head, PREFIX_SPLITS: tl.constexpr, SPLIT: tl.constexpr,
):  # fmt: skip
    """Merge into (max, sum, acc) the partials of the splits that hold part of this slot's prefix (the
    others were not written).  Rows past the group stay at max -inf and are never stored."""
    for split in tl.static_range(PREFIX_SPLITS):
        if split * SPLIT < prefix_length:
            part_max = tl.load(MAX + slot * m_slot + heads * m_head + split, mask=in_group, other=float("-inf"))
            part_sum = tl.load(SUM + slot * m_slot + heads * m_head + split, mask=in_group, other=0.0)
            part_acc = tl.load(
                ACC + slot * acc_slot + heads[:, None] * acc_head + split * acc_split + dims[None, :],
                mask=in_group[:, None], other=0.0,
            )  # fmt: skip
            new_max = tl.maximum(running_max, part_max)
            # Where both are -inf (rows past the group) the factors would be NaN: make them 0.
            keep = tl.where(new_max == float("-inf"), 0.0, tl.exp(running_max - new_max))
            take = tl.where(new_max == float("-inf"), 0.0, tl.exp(part_max - new_max))
            running_sum = running_sum * keep + part_sum * take
            acc = acc * keep[:, None] + part_acc * take[:, None]
            running_max = new_max
    return running_max, running_sum, acc


@triton.jit
def _suffix_kernel(
    Q, K, V, K_SCALE, V_SCALE, LENGTHS, PREFIX_LENGTH, ACC, MAX, SUM, OUT, S_ACC, S_MAX, S_SUM,
    q_slot, q_head,
    k_slot, k_head, k_pos,
    v_slot, v_head, v_pos,
    ks_slot, ks_head,
    vs_slot, vs_head,
    acc_slot, acc_head, acc_split,
    m_slot, m_head,
    o_slot, o_head,
    scale,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
    PREFIX_SPLITS: tl.constexpr, SPLIT: tl.constexpr, SCALED: tl.constexpr, MERGE_PREFIX: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    member = tl.arange(0, GROUP_PAD)
    dims = tl.arange(0, HEAD_DIM)
    offsets = tl.arange(0, BLOCK)
    heads = kv_head * GROUP + member
    in_group = member < GROUP
    q = tl.load(Q + slot * q_slot + heads[:, None] * q_head + dims[None, :], mask=in_group[:, None], other=0.0)
    if SCALED:
        q = q.to(tl.float16)
    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    running_sum = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
    if MERGE_PREFIX:  # the prefix pass ran before this one
        prefix_length = tl.load(PREFIX_LENGTH + slot).to(tl.int32)
        running_max, running_sum, acc = _merge_prefix_partials(
            ACC, MAX, SUM, slot, heads, in_group, dims, prefix_length, running_max, running_sum, acc,
            acc_slot, acc_head, acc_split, m_slot, m_head, PREFIX_SPLITS, SPLIT,
        )  # fmt: skip
    # The suffix: its valid positions (at least the slot's current token).
    length = tl.load(LENGTHS + slot).to(tl.int32)
    k_base = K + slot * k_slot + kv_head * k_head
    v_base = V + slot * v_slot + kv_head * v_head
    for block_start in range(0, length, BLOCK):
        positions = block_start + offsets
        valid = positions < length
        k = tl.load(k_base + positions[:, None] * k_pos + dims[None, :], mask=valid[:, None], other=0.0)
        v = tl.load(v_base + positions[:, None] * v_pos + dims[None, :], mask=valid[:, None], other=0.0)
        key_scale = scale
        value_scale = scale
        if SCALED:
            key_scale = tl.load(K_SCALE + slot * ks_slot + kv_head * ks_head + positions, mask=valid, other=0.0)
            value_scale = tl.load(V_SCALE + slot * vs_slot + kv_head * vs_head + positions, mask=valid, other=0.0)
        running_max, running_sum, acc = _attend_block(
            q, k, v, valid, running_max, running_sum, acc, scale, key_scale, value_scale, SCALED
        )
    if MERGE_PREFIX:
        out = acc / running_sum[:, None]
        tl.store(
            OUT + slot * o_slot + heads[:, None] * o_head + dims[None, :], out.to(OUT.dtype.element_ty), mask=in_group[:, None]
        )
    else:  # this pass's partial, for _combine_kernel (S_ACC [S, H, D], S_MAX/S_SUM [S, H], contiguous)
        rows = slot * (GROUP * tl.num_programs(1)) + heads
        tl.store(S_ACC + rows[:, None] * HEAD_DIM + dims[None, :], acc, mask=in_group[:, None])
        tl.store(S_MAX + rows, running_max, mask=in_group)
        tl.store(S_SUM + rows, running_sum, mask=in_group)


@triton.jit
def _combine_kernel(
    PREFIX_LENGTH, ACC, MAX, SUM, S_ACC, S_MAX, S_SUM, OUT, OUT_SCALE,
    acc_slot, acc_head, acc_split,
    m_slot, m_head,
    o_slot, o_head,
    HEADS: tl.constexpr, HEADS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, PREFIX_SPLITS: tl.constexpr,
    SPLIT: tl.constexpr, QUANTIZE: tl.constexpr, FP8_MAX: tl.constexpr, DTYPE: tl.constexpr,
):  # fmt: skip
    """The suffix pass's partials merged with the prefix pass's and normalised: one program per slot,
    all its heads.  With QUANTIZE the slot's output row (heads x head dim, rounded to the model's DTYPE
    first) is written as the output product's e4m3 input with its scale (OUT_SCALE), as
    triton_decode.fp8_rows would write it."""
    slot = tl.program_id(0).to(tl.int64)
    heads = tl.arange(0, HEADS_PAD)
    dims = tl.arange(0, HEAD_DIM)
    in_group = heads < HEADS
    rows = slot * HEADS + heads
    running_max = tl.load(S_MAX + rows, mask=in_group, other=float("-inf"))
    running_sum = tl.load(S_SUM + rows, mask=in_group, other=0.0)
    acc = tl.load(S_ACC + rows[:, None] * HEAD_DIM + dims[None, :], mask=in_group[:, None], other=0.0)
    prefix_length = tl.load(PREFIX_LENGTH + slot).to(tl.int32)
    running_max, running_sum, acc = _merge_prefix_partials(
        ACC, MAX, SUM, slot, heads, in_group, dims, prefix_length, running_max, running_sum, acc,
        acc_slot, acc_head, acc_split, m_slot, m_head, PREFIX_SPLITS, SPLIT,
    )  # fmt: skip
    # Rows past the heads have a zero sum: 0 there, so that they neither write nor enter the row's scale.
    out = tl.where(in_group[:, None], acc / tl.where(in_group, running_sum, 1.0)[:, None], 0.0)
    if QUANTIZE:
        width = HEADS * HEAD_DIM
        columns = tl.reshape(heads[:, None] * HEAD_DIM + dims[None, :], [HEADS_PAD * HEAD_DIM])
        row = tl.reshape(out.to(DTYPE).to(tl.float32), [HEADS_PAD * HEAD_DIM])
        store_fp8_row(OUT, OUT_SCALE, slot, slot * width + columns, columns < width, row, FP8_MAX)
    else:
        target = OUT + slot * o_slot + heads[:, None] * o_head + dims[None, :]
        tl.store(target, out.to(OUT.dtype.element_ty), mask=in_group[:, None])


# A second stream per device for the prefix pass run alongside (made on first use: the engine's first
# use is its warm-up step, before any graph capture).
_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


def triton_shared_prefix_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    lengths: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    prefix_length: torch.Tensor,
    groups: torch.Tensor,
    longest: int,
    scale: float,
    scales: KVScales | None = None,
    prefix_launch: LaunchConfig | None = None,
    suffix_launch: LaunchConfig | None = None,
    fp8_output: bool = False,
) -> torch.Tensor | Fp8Rows:
    """query [S, H, 1, D]; keys/values [S, KVH, L, D] (each slot's suffix, ``lengths`` [S] valid);
    prefix_keys/values [KVH, T, D] (the pool); prefix_length [S]; groups [G, 2 + members] int64 rows
    (pool start, prefix length, the slots reading it, -1 padded); no prefix longer than ``longest``;
    ``scales`` for a suffix in fp8 -> [S, 1, H, D] in the query's dtype, or with ``fp8_output`` the
    [S, H D] rows as the output product's e4m3 input (quantized in the merge kernel when the prefix
    pass runs alongside)."""
    slots, heads, _, head_dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    members = groups.shape[1] - 2
    prefix_launch = prefix_launch or PREFIX_LAUNCH
    prefix_splits = triton.cdiv(max(1, longest), prefix_launch.split)
    acc = torch.empty((slots, heads, prefix_splits, head_dim), dtype=torch.float32, device=query.device)
    maxima = torch.empty((slots, heads, prefix_splits), dtype=torch.float32, device=query.device)
    sums = torch.empty_like(maxima)
    out = torch.empty((slots, heads, head_dim), dtype=query.dtype, device=query.device)
    assert query.stride(-1) == 1 and keys.stride(-1) == 1 and values.stride(-1) == 1
    assert prefix_keys.stride(-1) == 1 and prefix_values.stride(-1) == 1 and groups.is_contiguous()
    scaled = scales is not None
    suffix_launch = suffix_launch or SUFFIX_LAUNCH[scaled]
    # Unused pointers when unscaled: any tensor will do (the kernel never reads them).
    k_scale, v_scale = (scales.keys, scales.values) if scales is not None else (keys, values)
    assert k_scale.stride(-1) == 1 and v_scale.stride(-1) == 1
    alongside = prefix_launch.alongside
    if alongside:
        suffix_acc = torch.empty((slots, heads, head_dim), dtype=torch.float32, device=query.device)
        suffix_max = torch.empty((slots, heads), dtype=torch.float32, device=query.device)
        suffix_sum = torch.empty_like(suffix_max)
        main = torch.cuda.current_stream(query.device)
        side = _side_stream(query.device)
        side.wait_stream(main)  # the queries are written
    else:
        suffix_acc = suffix_max = suffix_sum = acc  # unread
    with torch.cuda.stream(side) if alongside else contextlib.nullcontext():
        _prefix_group_kernel[(groups.shape[0], kv_heads, prefix_splits)](
            query, prefix_keys, prefix_values, groups, acc, maxima, sums,
            query.stride(0), query.stride(1),
            prefix_keys.stride(0), prefix_keys.stride(1),
            prefix_values.stride(0), prefix_values.stride(1),
            acc.stride(0), acc.stride(1), acc.stride(2),
            maxima.stride(0), maxima.stride(1),
            groups.stride(0),
            scale,
            GROUP=group, MEMBERS=members, ROWS=max(16, triton.next_power_of_2(members * group)), HEAD_DIM=head_dim,
            BLOCK=prefix_launch.block, SPLIT=prefix_launch.split, num_warps=prefix_launch.warps,
            num_stages=prefix_launch.stages,
        )  # fmt: skip
    _suffix_kernel[(slots, kv_heads)](
        query, keys, values, k_scale, v_scale, lengths, prefix_length, acc, maxima, sums, out,
        suffix_acc, suffix_max, suffix_sum,
        query.stride(0), query.stride(1),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        k_scale.stride(0), k_scale.stride(1),
        v_scale.stride(0), v_scale.stride(1),
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        out.stride(0), out.stride(1),
        scale,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim, BLOCK=suffix_launch.block,
        PREFIX_SPLITS=prefix_splits, SPLIT=prefix_launch.split, SCALED=scaled, MERGE_PREFIX=not alongside,
        num_warps=suffix_launch.warps, num_stages=suffix_launch.stages,
    )  # fmt: skip
    if not alongside:
        return fp8_rows(out.view(slots, heads * head_dim)) if fp8_output else out.view(slots, 1, heads, head_dim)
    main.wait_stream(side)
    codes = scale_out = out  # the written output: codes and their scale, or ``out`` (the other unused)
    if fp8_output:
        codes = torch.empty((padded_rows(slots), heads * head_dim), dtype=torch.float8_e4m3fn, device=query.device)
        scale_out = torch.empty((padded_rows(slots), 1), dtype=torch.float32, device=query.device)
    _combine_kernel[(slots,)](
        prefix_length, acc, maxima, sums, suffix_acc, suffix_max, suffix_sum, codes, scale_out,
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        out.stride(0), out.stride(1),
        HEADS=heads, HEADS_PAD=triton.next_power_of_2(heads), HEAD_DIM=head_dim, PREFIX_SPLITS=prefix_splits,
        SPLIT=prefix_launch.split, QUANTIZE=fp8_output, FP8_MAX=FP8_MAX, DTYPE=TRITON_DTYPES[query.dtype],
    )  # fmt: skip
    return Fp8Rows(codes, scale_out) if fp8_output else out.view(slots, 1, heads, head_dim)
