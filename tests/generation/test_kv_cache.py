"""--kv-cache fp8 on the CPU: the scaled fp8 format itself, the reference attention over it, and the
refusal (never emulated) where the fused Triton step cannot run."""

from __future__ import annotations

import pytest
import torch

from harness.errors import DeviceError
from harness.generation.engine import load_model
from harness.generation.fast_engine import FastEngine, FastEngineOptions
from harness.generation.kv_cache import KVCacheFormat, KVScales, dequantize_vectors, quantize_vectors
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.generation.prefix_attention import PrefixPool, group_members, group_rows, shared_prefix_attention
from harness.generation.quantization import FP8_MAX
from tests.support.tiny_model import build_tiny_model


def test_each_vector_keeps_its_own_range():
    torch.manual_seed(0)
    # Vectors a million times apart in size: one scale per vector keeps each to e4m3's relative precision.
    x = torch.randn(3, 5, 64) * torch.tensor([1e-3, 1.0, 1e3])[:, None, None]
    codes, scale = quantize_vectors(x)
    assert codes.dtype == torch.float8_e4m3fn and scale.shape == (3, 5)
    assert torch.equal(codes.float().abs().amax(-1), torch.full((3, 5), FP8_MAX))  # the largest lands on the format's top
    back = dequantize_vectors(codes, scale, torch.float32)
    relative = (back - x).abs() / x.abs().amax(-1, keepdim=True)
    assert relative.max() <= 2**-4  # half a step of three mantissa bits, relative to the vector's largest entry
    zero_codes, zero_scale = quantize_vectors(torch.zeros(2, 8))
    assert torch.equal(dequantize_vectors(zero_codes, zero_scale, torch.float32), torch.zeros(2, 8))


def test_the_reference_attention_over_an_fp8_suffix_is_attention_over_its_widened_values():
    torch.manual_seed(1)
    slots, heads, kv_heads, dim, suffix, layer = 4, 4, 2, 16, 12, 0
    prefix = [(0, 9), (0, 9), (20, 5), (0, 0)]
    keys, values = torch.randn(slots, kv_heads, suffix, dim), torch.randn(slots, kv_heads, suffix, dim)
    (key_codes, key_scales), (value_codes, value_scales) = quantize_vectors(keys), quantize_vectors(values)
    start = torch.tensor([p[0] for p in prefix])
    length = torch.tensor([p[1] for p in prefix])
    groups = torch.tensor(group_rows(prefix, group_members(heads // kv_heads), slots))
    pool = PrefixPool([torch.randn(kv_heads, 30, dim)], [torch.randn(kv_heads, 30, dim)], start, length, groups, 9)
    query = torch.randn(slots, heads, 1, dim)
    lengths = torch.tensor([1, 12, 5, 3])
    widened_keys = dequantize_vectors(key_codes, key_scales, torch.float32)
    widened_values = dequantize_vectors(value_codes, value_scales, torch.float32)
    expected = shared_prefix_attention(query, widened_keys, widened_values, lengths, pool, layer, 0.25, "torch")
    scales = KVScales(key_scales, value_scales)
    got = shared_prefix_attention(query, key_codes, value_codes, lengths, pool, layer, 0.25, "torch", scales)
    assert torch.allclose(got, expected, atol=1e-6)
    exact = shared_prefix_attention(query, keys, values, lengths, pool, layer, 0.25, "torch")
    assert 0 < (got - exact).abs().max() < 0.1  # fp8 rounds, a little


def test_an_fp8_cache_is_refused_on_a_cpu(tmp_path):
    model, tokenizer = load_model(str(build_tiny_model(tmp_path, "qwen2")), "float32", "cpu")
    with pytest.raises(DeviceError, match="--kv-cache fp8 needs a CUDA GPU"):
        FastEngine(model, tokenizer, SamplingSettings(temperature=0.0), FastEngineOptions(kv_cache=KVCacheFormat.FP8))


def test_the_engine_factory_refuses_an_fp8_cache_on_a_cpu_and_for_the_hf_engine(tmp_path):
    from harness.generation.factory import ModelEngineFactory

    directory = build_tiny_model(tmp_path, "llama")
    with pytest.raises(DeviceError, match="--kv-cache fp8"):
        ModelEngineFactory(GenerationSettings(str(directory), 1, 4, kv_cache="fp8"), "fast")("cpu", print)
    with pytest.raises(Exception, match="--kv-cache fp8 needs the fast engine"):
        ModelEngineFactory(GenerationSettings(str(directory), 1, 4, kv_cache="fp8"), "hf")("cpu", print)


def test_the_cache_format_is_part_of_a_journals_settings():
    settings = GenerationSettings("m", 1, 4)
    assert settings.fingerprint()["kv_cache"] == "model"
    assert GenerationSettings("m", 1, 4, kv_cache="fp8").fingerprint()["kv_cache"] == "fp8"
