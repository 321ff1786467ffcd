"""Decode attention with the prompt's K/V stored once and shared by all the prompt's samples.

A slot's context is two pieces: its prompt prefix, kept in a *pool* (one [KV heads, tokens, head dim]
tensor per layer) at ``prefix_start[slot]`` for ``prefix_length[slot]`` tokens, and its own *suffix*
row (the last prompt token, fed by the first decode step, then the generated tokens), of which the
first ``lengths[slot]`` are valid.  Sibling samples point at the same pool range, so the prompt is
stored and written once instead of once per sample.  The softmax runs over both pieces together,
which is exactly attention over their concatenation: the copied-prefix layout (``attention.py``) is
the reference this must equal.  On CUDA a Triton kernel does it; elsewhere a torch version gathers
the prefixes and masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.generation.attention import triton_applies
from harness.generation.kv_cache import KVScales, dequantize_vectors
from harness.generation.quantization import Fp8Rows


@dataclass(frozen=True)
class PrefixPool:
    """The shared prompt K/V of every layer and, per slot, where its prompt lies in them (tensors of
    fixed shape, updated in place between chunks, so a CUDA graph can read them)."""

    keys: list[torch.Tensor]  # per layer [KV heads, tokens, head dim]
    values: list[torch.Tensor]
    start: torch.Tensor  # [slots] int64: the slot's prompt's first pool token
    length: torch.Tensor  # [slots] int64: its prompt tokens in the pool (the last one is in the suffix)
    # [groups, 2 + members] int64: per group of sibling slots, the pool start, the prefix length and
    # the slots (-1 padded); rows of unused groups have length 0.  Built by group_rows().
    groups: torch.Tensor
    longest: int  # the longest prefix the pool holds (bounds the kernels' prefix splits)

    def view(self, size: int) -> PrefixPool:
        """The same pool for the first ``size`` slots (the groups then name only slots below ``size``)."""
        return PrefixPool(self.keys, self.values, self.start[:size], self.length[:size], self.groups, self.longest)


def shared_prefix_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    lengths: torch.Tensor,
    pool: PrefixPool,
    layer: int,
    scale: float,
    kernel: str = "auto",
    scales: KVScales | None = None,
    fp8_output: bool = False,
) -> torch.Tensor | Fp8Rows:
    """query [S, H, 1, D], suffix keys/values [S, KVH, L, D], lengths [S] -> attention output [S, 1, H, D].
    With ``scales`` the suffix K/V are fp8 (kv_cache.py); the pool is in the model's dtype.  With
    ``fp8_output`` (Triton only: the fused fp8 decode step) the output comes as the next fp8 product's
    input rows [S, H D], quantized by the kernels' last pass."""
    prefix_keys, prefix_values = pool.keys[layer], pool.values[layer]
    if kernel == "triton" or (kernel == "auto" and triton_applies(query)):
        from harness.generation.triton_attention import triton_shared_prefix_attention

        return triton_shared_prefix_attention(
            query, keys, values, lengths, prefix_keys, prefix_values, pool.length, pool.groups, pool.longest, scale, scales,
            fp8_output=fp8_output,
        )  # fmt: skip
    assert not fp8_output, "fp8 output rows come from the Triton kernels"
    if scales is not None:  # the reference: widened first
        keys, values = dequantize_vectors(keys, scales.keys, query.dtype), dequantize_vectors(values, scales.values, query.dtype)
    return torch_shared_prefix_attention(
        query, keys, values, lengths, prefix_keys, prefix_values, pool.start, pool.length, pool.longest, scale
    )


def torch_shared_prefix_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    lengths: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    prefix_start: torch.Tensor,
    prefix_length: torch.Tensor,
    longest: int,
    scale: float,
) -> torch.Tensor:
    slots, heads, _, head_dim = query.shape
    kv_heads, capacity = keys.shape[1], keys.shape[2]
    width = max(1, longest)
    offsets = torch.arange(width, device=keys.device)
    # Each slot's prefix gathered from the pool (positions past its length read some pool token and are masked).
    index = (prefix_start[:, None] + offsets[None, :]).clamp(max=prefix_keys.shape[1] - 1)  # [S, W]
    gathered_keys = prefix_keys[:, index].permute(1, 0, 2, 3)  # [S, KVH, W, D]
    gathered_values = prefix_values[:, index].permute(1, 0, 2, 3)
    all_keys = torch.cat([gathered_keys, keys], dim=2)
    all_values = torch.cat([gathered_values, values], dim=2)
    valid = torch.cat(
        [
            offsets[None, :] < prefix_length[:, None],
            torch.arange(capacity, device=keys.device)[None, :] < lengths[:, None],
        ],
        dim=1,
    )  # [S, W + L]
    grouped = query.reshape(slots, kv_heads, heads // kv_heads, head_dim)
    scores = torch.matmul(grouped, all_keys.transpose(-1, -2)).float() * scale
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    out = torch.matmul(scores.softmax(dim=-1).to(all_values.dtype), all_values)
    return out.reshape(slots, 1, heads, head_dim)


def group_members(group: int) -> int:
    """Sibling slots per prefix program of the Triton kernel: their query heads (``group`` per KV head)
    make at most 64 rows of one block."""
    return max(1, 64 // group)


def group_rows(slot_prefixes: list[tuple[int, int] | None], members: int, groups: int) -> list[list[int]]:
    """The rows of PrefixPool.groups: slots reading the same pool range (start, length), in runs of at
    most ``members``, padded to ``groups`` rows of 2 + members values."""
    by_range: dict[tuple[int, int], list[int]] = {}
    for slot, prefix in enumerate(slot_prefixes):
        if prefix is not None and prefix[1] > 0:
            by_range.setdefault(prefix, []).append(slot)
    rows = []
    for (start, length), slots in by_range.items():
        for first in range(0, len(slots), members):
            run = slots[first : first + members]
            rows.append([start, length, *run, *[-1] * (members - len(run))])
    assert len(rows) <= groups, "more groups than slots"
    rows.extend([0, 0, *[-1] * members] for _ in range(groups - len(rows)))
    return rows


class PrefixSpace:
    """First-fit allocation of token ranges in the pool (host side).  A prompt's range is taken when
    its first sample starts and given back when its last sample has ended."""

    def __init__(self, tokens: int):
        self.tokens = tokens
        self.free: list[tuple[int, int]] = [(0, tokens)]  # (start, length), sorted by start, never adjacent

    def take(self, length: int) -> int | None:
        """The start of a free range of ``length`` tokens, now taken; None if no free range is that long."""
        for i, (start, size) in enumerate(self.free):
            if size >= length:
                if size == length:
                    del self.free[i]
                else:
                    self.free[i] = (start + length, size - length)
                return start
        return None

    def give(self, start: int, length: int) -> None:
        if length == 0:
            return
        self.free.append((start, length))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for begin, size in self.free:
            if merged and merged[-1][0] + merged[-1][1] == begin:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            else:
                merged.append((begin, size))
        self.free = merged
