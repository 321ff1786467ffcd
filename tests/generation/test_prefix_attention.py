"""Shared-prefix decode attention (CPU, float32): the torch kernel equals attention over the copied
layout, the pool allocator reuses freed ranges, a batched prefill through the decode step's layers
fills the pool as the model's forward does, and the fast engine gives the same tokens with the prompt
stored once as with it copied into every slot (greedy and sampled, with refills)."""

from __future__ import annotations

import pytest
import torch

from harness.generation import fast_engine as fast_module
from harness.generation.attention import torch_decode_attention
from harness.generation.decode_step import DecodeStep
from harness.generation.engine import load_model
from harness.generation.fast_engine import FastEngine, FastEngineOptions
from harness.generation.plan import GenerationSettings, SamplingSettings, plan_jobs
from harness.generation.prefix_attention import (
    PrefixPool,
    PrefixSpace,
    group_members,
    group_rows,
    torch_shared_prefix_attention,
)
from tests.support.tiny_model import build_tiny_model


def test_shared_prefix_attention_equals_attention_over_the_copied_layout():
    torch.manual_seed(3)
    slots, heads, kv_heads, dim, suffix = 6, 4, 2, 16, 9
    pool_k = torch.randn(kv_heads, 50, dim)
    pool_v = torch.randn_like(pool_k)
    start = torch.tensor([0, 0, 12, 12, 30, 0])
    length = torch.tensor([12, 12, 18, 18, 7, 0])  # two pairs of siblings, one slot without a prefix
    keys, values = torch.randn(slots, kv_heads, suffix, dim), torch.randn(slots, kv_heads, suffix, dim)
    lengths = torch.tensor([1, 9, 4, 2, 9, 5])
    query = torch.randn(slots, heads, 1, dim)
    copied_k = torch.zeros(slots, kv_heads, 18 + suffix, dim)
    copied_v = torch.zeros_like(copied_k)
    for s in range(slots):
        n, a = int(length[s]), int(start[s])
        copied_k[s, :, :n], copied_v[s, :, :n] = pool_k[:, a : a + n], pool_v[:, a : a + n]
        copied_k[s, :, n : n + suffix], copied_v[s, :, n : n + suffix] = keys[s], values[s]
    expected = torch_decode_attention(query, copied_k, copied_v, length + lengths, dim**-0.5)
    got = torch_shared_prefix_attention(query, keys, values, lengths, pool_k, pool_v, start, length, 18, dim**-0.5)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)


def test_prefix_space_takes_first_fit_and_merges_what_is_given_back():
    space = PrefixSpace(100)
    a, b, c = space.take(40), space.take(30), space.take(30)
    assert (a, b, c) == (0, 40, 70)
    assert space.take(1) is None
    space.give(b, 30)
    assert space.take(31) is None
    space.give(a, 40)
    assert space.free == [(0, 70)]
    assert space.take(50) == 0


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tiny(request, tmp_path_factory):
    return load_model(str(build_tiny_model(tmp_path_factory.mktemp(request.param), request.param)), "float32", "cpu")


PROMPTS = [(0, "\nQUESTION:\nAdd two numbers.\nANSWER:\n"), (4, "def f(n):\n    return n * 2\n"), (5, "Q"), (8, "x = [1, 2")]


@pytest.mark.parametrize("sampling", [SamplingSettings(temperature=0.0), SamplingSettings(0.8, 20, 0.9, seed=5)])
@pytest.mark.parametrize("fused_step", [False, True])
def test_shared_prefix_engine_equals_copied_prefix_engine(tiny, sampling, fused_step):
    model, tokenizer = tiny
    jobs = plan_jobs(PROMPTS, GenerationSettings("m", n=3, max_new_tokens=24, sampling=sampling))
    found = {}
    for shared in (False, True):
        # 5 slots for 12 samples: prompts are split across refills and pool ranges are reused.
        options = FastEngineOptions(slots=5, chunk_steps=4, shared_prefix=shared, fused_step=fused_step)
        out: dict = {}
        FastEngine(model, tokenizer, sampling, options).run(jobs, lambda s, out=out: out.setdefault((s.task_id, s.index), s))
        found[shared] = {key: sample.token_ids for key, sample in out.items()}
    assert len(found[True]) == 12
    assert found[True] == found[False]


def test_group_rows_put_siblings_together_in_runs_of_at_most_members():
    prefixes = [(0, 5), None, (0, 5), (10, 3), (0, 5), (20, 0)]
    rows = group_rows(prefixes, members=2, groups=6)
    assert rows[:3] == [[0, 5, 0, 2], [0, 5, 4, -1], [10, 3, 3, -1]]
    assert rows[3:] == [[0, 0, -1, -1]] * 3  # unused rows: length 0, no slots
    assert group_members(3) == 21 and group_members(128) == 1


def test_prefill_through_the_decode_steps_layers_writes_the_pool_as_the_model_forward_does(tiny):
    """A batch of right-padded prompts prefilled by DecodeStep.prefill leaves the pool as the model's own
    forward does (float32), and its padding tokens write only the padding position."""
    model, tokenizer = tiny
    prompts = [ids[:-1] for ids in (tokenizer(p)["input_ids"] for _, p in PROMPTS) if len(ids) > 1]
    width = max(len(ids) for ids in prompts)
    assert len({len(ids) for ids in prompts}) > 1  # some rows are padded
    starts = [sum(len(ids) + 3 for ids in prompts[:i]) for i in range(len(prompts))]  # gaps between the ranges
    padding = starts[-1] + len(prompts[-1]) + 3
    rows = [ids + [ids[-1]] * (width - len(ids)) for ids in prompts]
    config = model.config
    shape = (config.num_key_value_heads, padding + 1, config.hidden_size // config.num_attention_heads)

    def empty_pool() -> PrefixPool:
        layers = range(config.num_hidden_layers)
        none = torch.zeros(1, dtype=torch.int64)
        return PrefixPool([torch.zeros(shape) for _ in layers], [torch.zeros(shape) for _ in layers], none, none, none, 1)

    expected, got = empty_pool(), empty_pool()
    fast_module._register_attention()
    previous = model.config._attn_implementation
    model.set_attn_implementation(fast_module.ATTENTION_NAME)
    writer = fast_module._PoolWriter(expected, [(s, len(ids)) for s, ids in zip(starts, prompts)])
    try:
        with torch.inference_mode():
            model(
                input_ids=torch.tensor(rows),
                position_ids=torch.arange(width)[None].expand(len(rows), -1),
                use_cache=True,
                logits_to_keep=1,
                **{fast_module.cache_argument(model): writer},
            )
            index = [s + t if t < len(ids) else padding for s, ids in zip(starts, prompts) for t in range(width)]
            DecodeStep(model).prefill(torch.tensor(rows), torch.tensor(index), got, "torch")
    finally:
        model.set_attn_implementation(previous)
    for layer in range(config.num_hidden_layers):
        for mine, theirs in ((got.keys[layer], expected.keys[layer]), (got.values[layer], expected.values[layer])):
            assert torch.allclose(mine[:, :padding], theirs[:, :padding], atol=1e-5, rtol=1e-4)
            assert mine[:, padding].abs().sum() > 0  # the padding tokens' K/V went there, and nowhere else
            written = torch.zeros(padding, dtype=torch.bool)
            for s, ids in zip(starts, prompts):
                written[s : s + len(ids)] = True
            assert mine[:, :padding][:, ~written].abs().sum() == 0
