"""Triton kernels for decode attention with a per-slot length (split-K "flash decoding").

Pass 1: one program per (slot, KV head, split of the cache) runs an online softmax over the split's
valid positions for all query heads of the group, and writes partial (sum of weighted values, max,
normaliser).  Splits that start beyond the slot's length do no work.  Pass 2 merges the splits of each
(slot, head).  Imported only on CUDA when triton is present.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SPLIT = 512  # cache positions per pass-1 program
BLOCK = 64  # positions per inner step


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
        scores = tl.dot(q, tl.trans(k)) * scale
        scores = tl.where(valid[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        rescale = tl.exp(running_max - new_max)
        weights = tl.exp(scores - new_max[:, None])
        running_sum = running_sum * rescale + tl.sum(weights, 1)
        v = tl.load(v_base + positions[:, None] * v_pos + dims[None, :], mask=valid[:, None], other=0.0)
        acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v)
        running_max = new_max

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
# the slot's own suffix (the last prompt token and the generated ones).  The prefix pass runs one
# program per (group of sibling slots, KV head, prefix split): it loads the queries of every sibling's
# query heads of that KV head as one [rows, D] block, so each prefix K/V block is read once for the
# whole group and multiplied on the tensor cores.  The suffix pass is the per-slot kernel above, writing
# the splits after the prefix ones; the merge skips the prefix splits past a slot's prefix length.
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
            scores = tl.dot(q, tl.trans(k)) * scale
            scores = tl.where(valid[None, :], scores, float("-inf"))
            new_max = tl.maximum(running_max, tl.max(scores, 1))
            rescale = tl.exp(running_max - new_max)
            weights = tl.exp(scores - new_max[:, None])
            running_sum = running_sum * rescale + tl.sum(weights, 1)
            v = tl.load(v_base + positions[:, None] * pv_pos + dims[None, :], mask=valid[:, None], other=0.0)
            acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v)
            running_max = new_max
        target = slots[:, None] * acc_slot + heads[:, None] * acc_head + split * acc_split + dims[None, :]
        tl.store(ACC + target, acc, mask=used[:, None])
        tl.store(MAX + slots * m_slot + heads * m_head + split, running_max, mask=used)
        tl.store(SUM + slots * m_slot + heads * m_head + split, running_sum, mask=used)


@triton.jit
def _shared_merge_kernel(
    ACC, MAX, SUM, OUT, PREFIX_LENGTH,
    acc_slot, acc_head, acc_split,
    m_slot, m_head,
    o_slot, o_head,
    PREFIX_SPLITS: tl.constexpr, SPLITS: tl.constexpr, SPLITS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
    SPLIT: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    dims = tl.arange(0, HEAD_DIM)
    prefix_length = tl.load(PREFIX_LENGTH + slot).to(tl.int32)
    # Prefix splits past the slot's prefix were not written (their group programs had nothing to do).
    used = (splits < SPLITS) & ((splits >= PREFIX_SPLITS) | (splits * SPLIT < prefix_length))
    maxima = tl.load(MAX + slot * m_slot + head * m_head + splits, mask=used, other=float("-inf"))
    sums = tl.load(SUM + slot * m_slot + head * m_head + splits, mask=used, other=0.0)
    top = tl.max(maxima, 0)  # finite: the first suffix split always holds the slot's current token
    weights = tl.where(used, tl.exp(maxima - top), 0.0)
    acc = tl.load(
        ACC + slot * acc_slot + head * acc_head + splits[:, None] * acc_split + dims[None, :], mask=used[:, None], other=0.0
    )
    out = tl.sum(acc * weights[:, None], 0) / tl.sum(sums * weights, 0)
    tl.store(OUT + slot * o_slot + head * o_head + dims, out.to(OUT.dtype.element_ty))


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
) -> torch.Tensor:
    """query [S, H, 1, D]; keys/values [S, KVH, L, D] (each slot's suffix, ``lengths`` [S] valid);
    prefix_keys/values [KVH, T, D] (the pool); prefix_length [S]; groups [G, 2 + members] int64 rows
    (pool start, prefix length, the slots reading it, -1 padded); no prefix longer than ``longest``
    -> [S, 1, H, D]."""
    slots, heads, _, head_dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    members = groups.shape[1] - 2
    prefix_splits = triton.cdiv(max(1, longest), SPLIT)
    suffix_splits = triton.cdiv(keys.shape[2], SPLIT)
    splits = prefix_splits + suffix_splits
    acc = torch.empty((slots, heads, splits, head_dim), dtype=torch.float32, device=query.device)
    maxima = torch.empty((slots, heads, splits), dtype=torch.float32, device=query.device)
    sums = torch.empty_like(maxima)
    out = torch.empty((slots, heads, head_dim), dtype=query.dtype, device=query.device)
    assert query.stride(-1) == 1 and keys.stride(-1) == 1 and values.stride(-1) == 1
    assert prefix_keys.stride(-1) == 1 and prefix_values.stride(-1) == 1 and groups.is_contiguous()
    _prefix_group_kernel[(groups.shape[0], kv_heads, prefix_splits)](
        query, prefix_keys, prefix_values, groups, acc, maxima, sums,
        query.stride(0), query.stride(1),
        prefix_keys.stride(0), prefix_keys.stride(1),
        prefix_values.stride(0), prefix_values.stride(1),
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        groups.stride(0),
        scale,
        GROUP=group, MEMBERS=members, ROWS=max(16, triton.next_power_of_2(members * group)), HEAD_DIM=head_dim, BLOCK=BLOCK,
        SPLIT=SPLIT,
    )  # fmt: skip
    suffix_acc, suffix_max, suffix_sum = acc[:, :, prefix_splits:], maxima[:, :, prefix_splits:], sums[:, :, prefix_splits:]
    _partial_kernel[(slots, kv_heads, suffix_splits)](
        query, keys, values, lengths, suffix_acc, suffix_max, suffix_sum,
        query.stride(0), query.stride(1),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        scale,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim, BLOCK=BLOCK, SPLIT=SPLIT,
    )  # fmt: skip
    _shared_merge_kernel[(slots, heads)](
        acc, maxima, sums, out, prefix_length,
        acc.stride(0), acc.stride(1), acc.stride(2),
        maxima.stride(0), maxima.stride(1),
        out.stride(0), out.stride(1),
        PREFIX_SPLITS=prefix_splits, SPLITS=splits, SPLITS_PAD=max(2, triton.next_power_of_2(splits)), HEAD_DIM=head_dim,
        SPLIT=SPLIT,
    )  # fmt: skip
    return out.view(slots, 1, heads, head_dim)
