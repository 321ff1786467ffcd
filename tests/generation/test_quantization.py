"""--quantize on the CPU: fp8 is refused (never emulated), int8 weight-only runs through the fast
engine with the weights' memory reduced and tokens close to float32's; projection fusion keeps the
model's own forward unchanged."""

from __future__ import annotations

import pytest
import torch

from harness.errors import DeviceError
from harness.generation.engine import load_model
from harness.generation.fast_engine import FastEngine, FastEngineOptions
from harness.generation.plan import GenerationSettings, SamplingSettings, plan_jobs
from harness.generation.quantization import Quantization, fused_layers, quantize_weight, weight_bytes
from tests.support.tiny_model import build_tiny_model

GREEDY = SamplingSettings(temperature=0.0)
PROMPTS = [(0, "def add(a, b):\n"), (1, "\nQUESTION:\nx\nANSWER:\n")]


@pytest.fixture
def tiny(tmp_path):
    return load_model(str(build_tiny_model(tmp_path, "qwen2")), "float32", "cpu")


def test_fp8_is_refused_on_a_cpu(tiny):
    model, tokenizer = tiny
    with pytest.raises(DeviceError, match="fp8 needs a CUDA GPU"):
        FastEngine(model, tokenizer, GREEDY, FastEngineOptions(quantization=Quantization.FP8))


def test_int8_weights_round_trip_within_half_a_step():
    weight = torch.randn(32, 64)
    quantized, scale = quantize_weight(weight, Quantization.INT8)
    assert quantized.dtype == torch.int8
    assert (quantized.float() * scale[:, None] - weight).abs().max() <= scale.max() / 2 + 1e-6


def test_fusion_keeps_the_model_forward(tiny):
    model, _ = tiny
    ids = torch.tensor([[5, 9, 14, 20, 33]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        fused_layers(model)
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    assert model.model.layers[0].self_attn.k_proj.weight.untyped_storage().data_ptr() == (
        model.model.layers[0].self_attn.q_proj.weight.untyped_storage().data_ptr()
    )


def test_int8_engine_saves_weight_memory_and_mostly_agrees(tiny, tmp_path):
    model, tokenizer = tiny
    jobs = plan_jobs(PROMPTS, GenerationSettings("m", n=2, max_new_tokens=16, sampling=GREEDY))
    runs = {}
    for mode in (Quantization.NONE, Quantization.INT8):
        model, tokenizer = load_model(str(build_tiny_model(tmp_path / mode.value, "qwen2")), "float32", "cpu")
        before = weight_bytes(model)
        found: dict = {}
        engine = FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=3, chunk_steps=4, quantization=mode))
        engine.run(jobs, lambda s, found=found: found.setdefault((s.task_id, s.index), s.token_ids))
        runs[mode] = (before, weight_bytes(model), found)
    assert runs[Quantization.NONE][0] == runs[Quantization.NONE][1]
    assert runs[Quantization.INT8][1] < 0.5 * runs[Quantization.INT8][0]  # projections dominate the tiny model
    reference, quantized = runs[Quantization.NONE][2], runs[Quantization.INT8][2]
    assert reference.keys() == quantized.keys()
    first_tokens_equal = sum(reference[k][0] == quantized[k][0] for k in reference)
    assert first_tokens_equal >= len(reference) - 1


def test_the_engine_factory_refuses_fp8_on_a_cpu_and_quantizes_int8(tmp_path):
    from harness.generation.factory import ModelEngineFactory
    from harness.generation.plan import GenerationSettings

    directory = build_tiny_model(tmp_path, "llama")
    with pytest.raises(DeviceError, match="fp8"):
        ModelEngineFactory(GenerationSettings(str(directory), 1, 4, quantize="fp8"), "fast")("cpu", print)
    engine = ModelEngineFactory(GenerationSettings(str(directory), 1, 4, quantize="int8"), "fast")("cpu", print)
    assert engine.model.model.layers[0].mlp.down_proj.weights.weight.dtype == torch.int8
    with pytest.raises(Exception, match="--quantize int8 needs the fast engine"):
        ModelEngineFactory(GenerationSettings(str(directory), 1, 4, quantize="int8"), "hf")("cpu", print)


def test_a_quantized_lm_head_keeps_a_tied_embedding_and_is_counted(tiny):
    """fp8 gives the lm head a quantized copy of its own (quantization._quantized_lm_head; fp8 itself needs a
    GPU, so int8 codes stand in here): the input embedding keeps the original weight, the copy's bytes are
    counted by weight_bytes, and the logits stay close."""
    from harness.generation.quantization import QuantizedLinear, _quantized_lm_head

    model, _ = tiny
    ids = torch.tensor([[5, 9, 14, 20, 33]])
    embedding = model.model.embed_tokens.weight.clone()
    before = weight_bytes(model)
    with torch.inference_mode():
        expect = model(input_ids=ids).logits
        head = model.lm_head
        model.lm_head = _quantized_lm_head(head, Quantization.INT8)
        got = model(input_ids=ids).logits
    assert isinstance(model.lm_head, QuantizedLinear)
    assert model.lm_head.weights.weight.dtype == torch.int8
    assert torch.equal(model.model.embed_tokens.weight, embedding)
    tied = head.weight.untyped_storage().data_ptr() == model.model.embed_tokens.weight.untyped_storage().data_ptr()
    head_bytes = head.weight.numel() * (1 + 4 / head.weight.shape[1])  # int8 codes and a float32 scale per row
    # A tied head's float32 weight stays counted (the embedding); an untied one is replaced by its codes.
    freed = 0 if tied else head.weight.numel() * head.weight.element_size()
    assert weight_bytes(model) == pytest.approx(before + head_bytes - freed)
    assert ((got - expect).norm() / expect.norm()).item() < 0.05
