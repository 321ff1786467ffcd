"""Attention of one new token per slot against that slot's own cached prefix.

Each slot (batch row) has its own length: keys at positions >= length are stale and ignored.  Grouped
query attention reads each K/V head once for its whole group of query heads (no ``repeat_kv``).  On
CUDA with bf16/fp16 a Triton kernel reads only the valid prefix of every slot, so a slot's cost
follows its own length rather than the cache's capacity; elsewhere a masked torch version is used.
"""

from __future__ import annotations

import torch

from harness.generation.triton_support import triton_runs_on


def decode_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, scale: float, kernel: str = "auto"
) -> torch.Tensor:
    """query [S, H, 1, D], keys/values [S, KVH, L, D], lengths [S] -> attention output [S, 1, H, D]."""
    if kernel == "triton" or (kernel == "auto" and triton_applies(query)):
        from harness.generation.triton_attention import triton_decode_attention

        return triton_decode_attention(query, keys, values, lengths, scale)
    return torch_decode_attention(query, keys, values, lengths, scale)


def triton_applies(query: torch.Tensor) -> bool:
    head_dim = query.shape[-1]
    return (
        query.dtype in (torch.bfloat16, torch.float16)
        and head_dim >= 16
        and head_dim & (head_dim - 1) == 0
        and triton_runs_on(query)
    )


def torch_decode_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, scale: float
) -> torch.Tensor:
    slots, heads, _, head_dim = query.shape
    kv_heads, capacity = keys.shape[1], keys.shape[2]
    grouped = query.reshape(slots, kv_heads, heads // kv_heads, head_dim)
    scores = torch.matmul(grouped, keys.transpose(-1, -2)).float() * scale  # [S, KVH, group, L]
    stale = torch.arange(capacity, device=keys.device)[None, :] >= lengths[:, None]
    scores = scores.masked_fill(stale[:, None, None, :], float("-inf"))
    out = torch.matmul(scores.softmax(dim=-1).to(values.dtype), values)  # [S, KVH, group, D]
    return out.reshape(slots, 1, heads, head_dim)
