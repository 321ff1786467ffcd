"""The k largest logits of each row, sorted, in Triton (CUDA, bf16/fp16 logits, small k).

``torch.topk`` over a vocabulary of 128k-152k tokens took 6-13% of a decode step's GPU time on the
H200 (0.31 ms at 256 rows x 128k, 0.65 ms at 512 x 152k).  Here two kernels, one program per row:

1. ``_candidates_kernel`` reads the row in chunks of 256 logits and keeps each chunk's largest.  The
   k-th largest of those chunk maxima, ``t``, is a lower bound of the row's k-th largest logit (the k
   chunks it ranks cannot hold fewer than k logits >= t), so the row's top k are among the logits
   >= t, and those lie in the chunks whose largest is >= t (about k chunks).  Only those chunks are
   read again, and their logits >= t (about k of them: a chunk's largest rarely has a neighbour
   above ``t``) appended to a scratch row.
2. ``_sort_kernel`` sorts the scratch row and writes the first k.  If a row had more candidates than
   the scratch row holds (many equal or clustered logits), that row alone is selected exactly the slow
   way instead: radix selection over the row's 16-bit keys (``_radix_select``).

Logits are compared as 16-bit keys that order as the floats do (the sign bit flipped for positives,
every bit for negatives), packed with the token id as ``key << 32 | (2**31 - 1 - id)`` so that one
int64 sort puts the largest first and, among equal logits, the smaller token id first: the result is
exact, deterministic, and a row's result never depends on the other rows.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TOPK_MAX = 64  # the largest k taken here (torch.topk beyond)
CHUNK = 256  # logits per chunk maximum
# Logits per step of the first pass over a row.  One program reads the whole row, so its steps are
# sequential: fewer, wider steps keep more of the row in flight.
STEP = 16384
# Chunks per step of the second pass.  Wider steps hold more registers (64 chunks: 221 a thread, one
# program per multiprocessor; 8: 48 to 56, four or five).
GATHER = 8
RADIX_STEP = 4096  # logits per step of the exact slow path
CANDIDATES = 512  # scratch places per row


@triton.jit
def _order_keys(X, row_start, ids, inside):
    """The 16-bit logits at ``ids`` as int32 keys in [0, 65535] ordered as the floats; 0 outside."""
    bits = tl.load(X + row_start + ids, mask=inside, other=0.0).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    keys = tl.where(bits >= 0x8000, 0xFFFF - bits, bits | 0x8000)
    return tl.where(inside, keys, 0)


@triton.jit
def _pack(keys, ids):
    return (keys.to(tl.int64) << 32) | (0x7FFFFFFF - ids).to(tl.int64)


@triton.jit
def _candidates_kernel(
    X, SCRATCH, COUNT, CHUNKS, vocab, x_row,
    K: tl.constexpr, CHUNK: tl.constexpr, STEP: tl.constexpr, STEPS_PAD: tl.constexpr, CANDIDATES: tl.constexpr,
    GATHER: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    row_start = row * x_row
    offsets = tl.arange(0, STEP)
    PER_STEP: tl.constexpr = STEP // CHUNK
    ALL_CHUNKS: tl.constexpr = STEPS_PAD * PER_STEP
    # Pass 1: every chunk's largest key, a row per step (0 past the row's chunks).
    maxima = tl.zeros([STEPS_PAD, PER_STEP], tl.int32)
    steps = tl.arange(0, STEPS_PAD)[:, None]
    for start in range(0, vocab, STEP):
        ids = start + offsets
        keys = _order_keys(X, row_start, ids, ids < vocab)
        step_maxima = tl.max(tl.reshape(keys, [PER_STEP, CHUNK]), 1)
        maxima = tl.where(steps == start // STEP, step_maxima[None, :], maxima)
    # t: the k-th largest chunk maximum (0, so every logit, if the row has fewer than k chunks).
    flat = tl.reshape(maxima, [ALL_CHUNKS])
    ranked = tl.sort(flat, descending=True)
    chunk_ids = tl.arange(0, ALL_CHUNKS)
    threshold = tl.sum(tl.where(chunk_ids == K - 1, ranked, 0), 0)
    # The chunks that can hold a logit >= t (those whose largest is), listed in CHUNKS' row.
    selected = (flat >= threshold) & (chunk_ids * CHUNK < vocab)
    listed = CHUNKS + row * ALL_CHUNKS
    tl.store(listed + tl.cumsum(selected.to(tl.int32), 0) - 1, chunk_ids, mask=selected)
    chosen = tl.sum(selected.to(tl.int32), 0)
    tl.debug_barrier()  # the list's stores, by every thread, before the loads below
    # Pass 2: in those chunks only, the logits >= t, appended in any order (the sort kernel orders them).
    count = COUNT + row
    target = SCRATCH + row * CANDIDATES
    within = tl.arange(0, CHUNK)[None, :]
    for first in range(0, chosen, GATHER):
        places = first + tl.arange(0, GATHER)
        chunk = tl.load(listed + places, mask=places < chosen, other=0)
        ids = chunk[:, None] * CHUNK + within
        inside = (places < chosen)[:, None] & (ids < vocab)
        keys = _order_keys(X, row_start, ids, inside)
        taken = inside & (keys >= threshold)
        place = tl.atomic_add(count + ids * 0, 1, mask=taken, sem="relaxed")
        tl.store(target + place, _pack(keys, ids), mask=taken & (place < CANDIDATES))


@triton.jit
def _radix_select(X, row_start, vocab, TARGET, K: tl.constexpr, STEP: tl.constexpr):
    """The exact top k of a row, packed, to TARGET[0:K] in any order: the k-th largest key by two 256-bin
    histograms (its high byte, then its low byte among the keys with that high byte), then the keys above
    it and the first equal ones by token id."""
    offsets = tl.arange(0, STEP)
    bins = tl.arange(0, 256)
    counts = tl.zeros([256], tl.int32)
    for start in range(0, vocab, STEP):
        ids = start + offsets
        inside = ids < vocab
        counts += tl.histogram(_order_keys(X, row_start, ids, inside) >> 8, 256, mask=inside)
    high = tl.max(tl.where(tl.cumsum(counts, 0, reverse=True) >= K, bins, 0), 0)
    above = tl.sum(tl.where(bins > high, counts, 0), 0)
    counts = tl.zeros([256], tl.int32)
    for start in range(0, vocab, STEP):
        ids = start + offsets
        inside = ids < vocab
        keys = _order_keys(X, row_start, ids, inside)
        counts += tl.histogram(keys & 0xFF, 256, mask=inside & ((keys >> 8) == high))
    low = tl.max(tl.where(above + tl.cumsum(counts, 0, reverse=True) >= K, bins, 0), 0)
    threshold = high * 256 + low
    greater = above + tl.sum(tl.where(bins > low, counts, 0), 0)
    taken_above = 0
    taken_equal = 0
    for start in range(0, vocab, STEP):
        ids = start + offsets
        inside = ids < vocab
        keys = _order_keys(X, row_start, ids, inside)
        is_above = inside & (keys > threshold)
        is_equal = inside & (keys == threshold)
        above_rank = taken_above + tl.cumsum(is_above.to(tl.int32), 0) - 1
        equal_rank = taken_equal + tl.cumsum(is_equal.to(tl.int32), 0) - 1
        tl.store(TARGET + above_rank, _pack(keys, ids), mask=is_above)
        tl.store(TARGET + greater + equal_rank, _pack(keys, ids), mask=is_equal & (equal_rank < K - greater))
        taken_above += tl.sum(is_above.to(tl.int32), 0)
        taken_equal += tl.sum(is_equal.to(tl.int32), 0)


@triton.jit
def _sort_kernel(
    X, SCRATCH, COUNT, VALUES, IDS, vocab, x_row, K: tl.constexpr, RADIX_STEP: tl.constexpr, CANDIDATES: tl.constexpr
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    count = tl.load(COUNT + row)
    source = SCRATCH + row * CANDIDATES
    if count > CANDIDATES:  # more candidates than places: this row the exact slow way
        _radix_select(X, row * x_row, vocab, source, K, RADIX_STEP)
        tl.debug_barrier()  # its stores, by every thread, before the loads below
    filled = tl.where(count > CANDIDATES, K, count)
    places = tl.arange(0, CANDIDATES)
    packed = tl.sort(tl.load(source + places, mask=places < filled, other=-1), descending=True)  # -1: below all
    ids = 0x7FFFFFFF - (packed & 0x7FFFFFFF)
    first = places < K
    tl.store(VALUES + row * K + places, tl.load(X + row * x_row + ids, mask=first), mask=first)
    tl.store(IDS + row * K + places, ids, mask=first)


def triton_topk(logits: torch.Tensor, k: int, step: int = STEP, gather: int = GATHER) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, token ids) [B, k] of the k largest logits of each row of ``logits`` [B, V] (bf16/fp16 on
    CUDA, k <= TOPK_MAX), largest first; equal logits rank by token id.  ``step`` and ``gather`` (powers
    of two, step a multiple of CHUNK) set the passes' widths (bench/generation_steps.py's topk_time)."""
    rows, vocab = logits.shape
    assert logits.dtype in (torch.bfloat16, torch.float16) and 0 < k <= min(TOPK_MAX, vocab)
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    scratch = torch.empty((rows, CANDIDATES), dtype=torch.int64, device=logits.device)
    count = torch.zeros(rows, dtype=torch.int32, device=logits.device)
    values = torch.empty((rows, k), dtype=logits.dtype, device=logits.device)
    ids = torch.empty((rows, k), dtype=torch.int64, device=logits.device)
    # Room for every step's chunk maxima, and at least k of them.
    steps_pad = max(triton.next_power_of_2(triton.cdiv(vocab, step)), triton.next_power_of_2(triton.cdiv(k, step // CHUNK)))
    chunks = torch.empty((rows, steps_pad * (step // CHUNK)), dtype=torch.int32, device=logits.device)
    _candidates_kernel[(rows,)](
        logits, scratch, count, chunks, vocab, logits.stride(0),
        K=k, CHUNK=CHUNK, STEP=step, STEPS_PAD=steps_pad, CANDIDATES=CANDIDATES, GATHER=gather, num_warps=8,
    )  # fmt: skip
    _sort_kernel[(rows,)](
        logits, scratch, count, values, ids, vocab, logits.stride(0), K=k, RADIX_STEP=RADIX_STEP, CANDIDATES=CANDIDATES,
        num_warps=8,
    )  # fmt: skip
    return values, ids
