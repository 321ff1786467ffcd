"""The sampler: generate's temperature/top-k/top-p filter exactly, exact Gumbel-max frequencies,
and noise that depends only on (sample seed, step, token), never on the batch."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from harness.generation.plan import (
    GenerationSettings,
    SamplingSettings,
    plan_jobs,
    sample_seed,
    without_samples,
)
from harness.generation.sampling import (
    choose_tokens,
    filtered_candidates,
    hash_uniform,
    split_seeds,
)

torch.set_num_threads(1)


def _generate_filter(logits: torch.Tensor, s: SamplingSettings) -> torch.Tensor:
    scores = TemperatureLogitsWarper(s.temperature)(None, logits)
    if s.top_k:
        scores = TopKLogitsWarper(s.top_k)(None, scores)
    if s.top_p < 1:
        scores = TopPLogitsWarper(s.top_p)(None, scores)
    return scores


@pytest.mark.parametrize(
    "settings",
    [
        SamplingSettings(0.2, 50, 0.95),
        SamplingSettings(1.0, 50, 0.9),
        SamplingSettings(0.7, 0, 0.8),
        SamplingSettings(0.5, 7, 1.0),
    ],
)
def test_filter_keeps_exactly_what_generate_keeps(settings):
    torch.manual_seed(1)
    logits = torch.randn(64, 1000) * 3
    expected = _generate_filter(logits, settings)
    values, token_ids = filtered_candidates(logits, settings)
    ours = torch.full_like(logits, float("-inf")).scatter(1, token_ids, values)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(expected))
    kept = torch.isfinite(expected)
    assert torch.allclose(ours[kept], expected[kept])


def test_draws_follow_the_filtered_distribution():
    settings = SamplingSettings(temperature=0.8, top_k=5, top_p=0.9)
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.2, -1.0, 3.0, -2.0, 0.0]])
    draws = 20000
    rows = logits.expand(draws, -1).contiguous()
    seed_high, seed_low = split_seeds([sample_seed(0, 0, i) for i in range(draws)])
    chosen = choose_tokens(rows, settings, seed_high, seed_low, torch.zeros(draws, dtype=torch.int64))
    frequencies = torch.bincount(chosen, minlength=8).double() / draws
    probabilities = _generate_filter(logits, settings).softmax(-1)[0].double()
    assert torch.allclose(frequencies, probabilities, atol=0.012), (frequencies, probabilities)
    assert frequencies[probabilities == 0].sum() == 0


def test_noise_of_a_sample_does_not_depend_on_its_batch():
    seeds = [sample_seed(3, task, index) for task in range(4) for index in range(5)]
    high, low = split_seeds(seeds)
    steps = torch.arange(20) * 7
    tokens = torch.randint(0, 150000, (20, 50))
    together = hash_uniform(high, low, steps, tokens)
    for row in range(20):
        alone = hash_uniform(high[row : row + 1], low[row : row + 1], steps[row : row + 1], tokens[row : row + 1])
        assert torch.equal(alone[0], together[row])
    shuffled = torch.randperm(20)
    assert torch.equal(hash_uniform(high[shuffled], low[shuffled], steps[shuffled], tokens[shuffled]), together[shuffled])


def test_noise_is_uniform_and_varies_with_every_input():
    high, low = split_seeds([sample_seed(0, 1, 2)] * 4)
    tokens = torch.arange(200000).reshape(4, 50000)
    u = hash_uniform(high, low, torch.tensor([0, 1, 2, 3]), tokens)
    assert u.min() > 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.005
    assert abs(u.var().item() - 1 / 12) < 0.002
    other_seed = hash_uniform(*split_seeds([sample_seed(0, 1, 3)] * 4), torch.tensor([0, 1, 2, 3]), tokens)
    assert (u != other_seed).float().mean() > 0.999


def test_sampled_tokens_are_batch_invariant():
    settings = SamplingSettings(0.2, 50, 0.95)
    torch.manual_seed(0)
    logits = torch.randn(12, 5000)
    high, low = split_seeds([sample_seed(0, t, 0) for t in range(12)])
    steps = torch.arange(12)
    together = choose_tokens(logits, settings, high, low, steps)
    for row in range(12):
        single = choose_tokens(logits[row : row + 1], settings, high[row : row + 1], low[row : row + 1], steps[row : row + 1])
        assert single.item() == together[row].item()


def test_greedy_is_argmax():
    logits = torch.randn(5, 100)
    high, low = split_seeds([1] * 5)
    assert torch.equal(
        choose_tokens(logits, SamplingSettings(temperature=0.0), high, low, torch.zeros(5, dtype=torch.int64)), logits.argmax(-1)
    )


def test_seeds_depend_on_seed_task_and_index_only():
    assert sample_seed(0, 5, 3) == sample_seed(0, 5, 3)
    assert len({sample_seed(s, t, i) for s in range(3) for t in range(20) for i in range(20)}) == 1200
    assert all(0 <= sample_seed(0, t, 0) < 2**63 for t in range(100))


def test_without_samples_drops_finished_ones():
    jobs = plan_jobs([(0, "a"), (1, "b")], GenerationSettings("m", n=2, max_new_tokens=5))
    left = without_samples(jobs, {(0, 0), (0, 1), (1, 0)})
    assert [(j.task_id, [s.index for s in j.samples]) for j in left] == [(1, [1])]


@pytest.mark.parametrize(
    "settings", [SamplingSettings(0.2, 50, 0.95), SamplingSettings(0.7, 0, 0.8), SamplingSettings(1.0, 40, 1.0)]
)
def test_bf16_logits_give_the_candidates_and_draws_of_their_float32_copy(settings):
    # The engine hands the model's bf16 logits to the sampler as they are (the top-k runs on them and the
    # temperature divides only the survivors): the same candidates and draws as widening every logit first.
    torch.manual_seed(3)
    logits = (torch.randn(32, 5000) * 4).to(torch.bfloat16)
    values, token_ids = filtered_candidates(logits, settings)
    wide_values, wide_ids = filtered_candidates(logits.float(), settings)
    assert values.dtype == torch.float32
    assert torch.equal(values, wide_values)
    kept = torch.isfinite(values)
    assert [set(row[k].tolist()) for row, k in zip(token_ids, kept)] == [set(row[k].tolist()) for row, k in zip(wide_ids, kept)]
    high, low = split_seeds([sample_seed(0, t, 0) for t in range(32)])
    steps = torch.arange(32, dtype=torch.int64)
    assert torch.equal(
        choose_tokens(logits, settings, high, low, steps), choose_tokens(logits.float(), settings, high, low, steps)
    )
