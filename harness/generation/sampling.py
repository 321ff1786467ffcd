"""Token selection with per-sample, batch-independent randomness (torch).

The filter is ``model.generate``'s: logits / temperature, keep the top-k, then the smallest set of
the most likely tokens whose probability reaches top-p (generate's TopPLogitsWarper rule: drop a
token while the cumulative probability of it and everything less likely is <= 1 - top_p, and always
keep the most likely one).  The draw is Gumbel-max: argmax(filtered logit + Gumbel noise) is an exact
sample from the softmax of the filtered logits.  The noise is not taken from a random generator but
hashed from (sample seed, sample step, token id), so a sample gets the same noise whatever batch,
slot, process or GPU it runs in.  Everything here is plain tensor code (the top k of 16-bit logits on
CUDA by a Triton kernel), safe under CUDA graphs.
"""

from __future__ import annotations

import torch

from harness.generation.plan import SamplingSettings
from harness.generation.triton_support import triton_runs_on

_MASK32 = 0xFFFFFFFF
# An odd multiplier below 2**27: a 32-bit value times it stays below 2**63, so int64 never overflows.
_MULTIPLIER = 0x45D9F3B


def _scramble32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer mix (two xorshift-multiply rounds), on int64 tensors holding 32-bit values."""
    x = ((x >> 16) ^ x) * _MULTIPLIER & _MASK32
    x = ((x >> 16) ^ x) * _MULTIPLIER & _MASK32
    return (x >> 16) ^ x


def split_seeds(seeds: list[int], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """63-bit sample seeds as (high 32 bits, low 32 bits) int64 tensors."""
    values = torch.tensor(seeds, dtype=torch.int64)
    return (values >> 32).to(device), (values & _MASK32).to(device)


def hash_uniform(seed_high: torch.Tensor, seed_low: torch.Tensor, steps: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in (0, 1), float64, shape of ``token_ids`` [B, K], one per (sample seed, step, token)."""
    h = _scramble32(seed_high ^ 0x5BD1E995)
    h = _scramble32(h ^ seed_low)
    h = _scramble32(h ^ (steps & _MASK32))
    h = _scramble32(h[:, None] ^ token_ids)
    return (h.to(torch.float64) + 0.5) * (1.0 / 2**32)


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest of each row of ``logits`` [B, V] and their token ids, largest first: Triton's
    (triton_topk.py: exact, ties by token id) for bf16/fp16 logits on CUDA and k <= 64, else torch.topk."""
    if logits.dtype in (torch.bfloat16, torch.float16) and logits.dim() == 2 and triton_runs_on(logits):
        from harness.generation.triton_topk import TOPK_MAX, triton_topk

        if k <= TOPK_MAX:
            return triton_topk(logits, k)
    return torch.topk(logits, k, dim=-1)


def filtered_candidates(logits: torch.Tensor, settings: SamplingSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, token ids) of the candidates, [B, K] each, most likely first, in float32; tokens removed
    by top-p have score -inf.  ``logits`` [B, V] in any float dtype.

    The top-k runs on the logits as they come (bf16 from a bf16 model) and the temperature divides only
    the k survivors: widening to float32 is exact and dividing by a positive temperature keeps the
    order, so the candidates and their scores are those of dividing every logit in float32 first, at a
    fraction of the memory traffic over a vocabulary of 150k tokens (half the step's sampling time on
    an H200)."""
    vocab = logits.shape[-1]
    k = settings.top_k if 0 < settings.top_k < vocab else vocab
    values, token_ids = top_k(logits, k)
    values = values.float()
    if settings.temperature != 1.0:
        values = values / settings.temperature
    if settings.top_p < 1.0:
        ascending = values.flip(-1)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - settings.top_p)
        drop[..., -1] = False  # the most likely token always stays
        values = values.masked_fill(drop.flip(-1), float("-inf"))
    return values, token_ids


def choose_tokens(
    logits: torch.Tensor,
    settings: SamplingSettings,
    seed_high: torch.Tensor,
    seed_low: torch.Tensor,
    steps: torch.Tensor,
) -> torch.Tensor:
    """The next token of every row [B] (int64) from ``logits`` [B, V] (any float dtype).  ``steps`` [B]
    is each sample's count of tokens generated so far; greedy settings ignore the seeds."""
    if settings.greedy:
        return logits.argmax(dim=-1)
    values, token_ids = filtered_candidates(logits, settings)
    uniform = hash_uniform(seed_high, seed_low, steps, token_ids)
    gumbel = -torch.log(-torch.log(uniform))
    pick = (values.to(torch.float64) + gumbel).argmax(dim=-1, keepdim=True)
    return token_ids.gather(-1, pick).squeeze(-1)
