"""Issue 14 on one GPU, in one run: self-checks of the new kernels, a profile of one CUDA-graph replay
(before and after), and useful tokens/s of the fast engine step by step: the copied-prefix layout
with the model's own forward (before), + shared-prefix attention, + the fused decode step, + more
slots in the memory the shared prefix frees, then fp8 and int8 at the same slots as bf16.

Workload (the issue's job): the real TACO test prompts (evenly spaced), n samples each, every sample
``--max-new-tokens`` long (random weights never stop by themselves), temperature 0.2, top-p 0.95.
Each variant first runs a short warm-up job with its own options, so that no variant's figure carries
the compile of kernels it happens to be the first to use.

    python bench/generation_steps.py --out steps.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

import torch

from bench.generation import DEFAULT_PROMPTS, SHAPES, build_model, build_tokenizer, evenly_spaced, load_prompts

RESULTS: dict = {}


def report(name: str, **values) -> None:
    RESULTS.setdefault("records", []).append({"check": name, **values})
    print(json.dumps({"check": name, **values}), flush=True)


def check_kernels() -> None:
    """Triton kernels against the torch reference in float32 (bf16 inputs upcast)."""
    from dataclasses import replace

    from harness.generation import triton_decode
    from harness.generation.attention import torch_decode_attention
    from harness.generation.decode_step import _rotate
    from harness.generation.kv_cache import KVScales, dequantize_vectors, quantize_vectors
    from harness.generation.prefix_attention import group_members, group_rows, torch_shared_prefix_attention
    from harness.generation.triton_attention import PREFIX_LAUNCH, triton_shared_prefix_attention
    from harness.generation.triton_decode import fp8_rows

    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    for slots, heads, kv_heads, dim, suffix in [(64, 12, 2, 128, 600), (48, 24, 8, 128, 520), (8, 8, 8, 64, 100)]:
        pool_tokens = 4000
        pk = torch.randn(kv_heads, pool_tokens, dim, device=dev, dtype=bf)
        pv = torch.randn_like(pk)
        plen = torch.randint(0, 1500, (slots,), device=dev)
        plen[0] = 0
        start = torch.randint(0, pool_tokens - 1500, (slots,), device=dev)
        start[1::2] = start[0::2][: slots // 2]  # siblings share a range
        plen[1::2] = plen[0::2][: slots // 2]
        sk = torch.randn(slots, kv_heads, suffix, dim, device=dev, dtype=bf)
        sv = torch.randn_like(sk)
        lengths = torch.randint(1, suffix + 1, (slots,), device=dev)
        q = torch.randn(slots, heads, 1, dim, device=dev, dtype=bf)
        # The copied-prefix layout: the prefix copied into each row, then the suffix.
        cap = int(plen.max()) + suffix
        ck = torch.zeros(slots, kv_heads, cap, dim, device=dev)
        cv = torch.zeros_like(ck)
        for s in range(slots):
            n, a = int(plen[s]), int(start[s])
            ck[s, :, :n], cv[s, :, :n] = pk[:, a : a + n].float(), pv[:, a : a + n].float()
            ck[s, :, n : n + suffix], cv[s, :, n : n + suffix] = sk[s].float(), sv[s].float()
        ref = torch_decode_attention(q.float(), ck, cv, plen + lengths, dim**-0.5)
        torch_got = torch_shared_prefix_attention(
            q.float(), sk.float(), sv.float(), lengths, pk.float(), pv.float(), start, plen, int(plen.max()), dim**-0.5
        )
        prefixes = [(int(a), int(b)) for a, b in zip(start.tolist(), plen.tolist())]
        groups = torch.tensor(group_rows(prefixes, group_members(heads // kv_heads), slots), dtype=torch.int64, device=dev)
        got = triton_shared_prefix_attention(q, sk, sv, lengths, pk, pv, plen, groups, int(plen.max()), dim**-0.5).float()
        # The fp8 cache: the kernel on quantized K/V against the fp32 reference over the same K/V widened.
        qsk, ssk = quantize_vectors(sk)
        qsv, ssv = quantize_vectors(sv)
        widened = [dequantize_vectors(x, y, torch.float32) for x, y in ((qsk, ssk), (qsv, ssv))]
        ref8 = torch_shared_prefix_attention(q.float(), widened[0], widened[1], lengths, pk.float(), pv.float(), start, plen,
                                             int(plen.max()), dim**-0.5)  # fmt: skip
        got8 = triton_shared_prefix_attention(
            q, qsk, qsv, lengths, pk, pv, plen, groups, int(plen.max()), dim**-0.5, KVScales(ssk, ssv)
        ).float()
        # The prefix pass's other placement (before the suffix pass, or beside it on a second stream with
        # the merge kernel), whichever PREFIX_LAUNCH does not take.
        other = replace(PREFIX_LAUNCH, alongside=not PREFIX_LAUNCH.alongside)
        got_other = triton_shared_prefix_attention(
            q, sk, sv, lengths, pk, pv, plen, groups, int(plen.max()), dim**-0.5, prefix_launch=other
        ).float()
        got8_other = triton_shared_prefix_attention(
            q, qsk, qsv, lengths, pk, pv, plen, groups, int(plen.max()), dim**-0.5, KVScales(ssk, ssv), prefix_launch=other
        ).float()
        placement = "before" if other.alongside is False else "alongside"
        # The merge kernel writing the output product's fp8 input rows, against quantizing its output after.
        for label, placement_launch in (("default", PREFIX_LAUNCH), (placement, other)):
            out8 = triton_shared_prefix_attention(
                q, qsk, qsv, lengths, pk, pv, plen, groups, int(plen.max()), dim**-0.5, KVScales(ssk, ssv),
                prefix_launch=placement_launch,
            )  # fmt: skip
            rows8 = triton_shared_prefix_attention(
                q, qsk, qsv, lengths, pk, pv, plen, groups, int(plen.max()), dim**-0.5, KVScales(ssk, ssv),
                prefix_launch=placement_launch, fp8_output=True,
            )  # fmt: skip
            expect_rows = fp8_rows(out8.reshape(slots, -1))
            report(
                "attention_fp8_output_rows",
                prefix=label,
                shape=[slots, heads, kv_heads, dim],
                codes_equal=(rows8.values[:slots].view(torch.uint8) == expect_rows.values[:slots].view(torch.uint8))
                .float()
                .mean()
                .item(),
                scales_equal=bool(torch.equal(rows8.scale[:slots], expect_rows.scale[:slots])),
            )
        report(
            "shared_prefix_vs_copied_fp32",
            shape=[slots, heads, kv_heads, dim],
            torch_max_abs=(ref - torch_got).abs().max().item(),
            triton_rel=((ref - got).norm() / ref.norm()).item(),
            fp8_cache_triton_vs_widened_rel=((ref8 - got8).norm() / ref8.norm()).item(),
            fp8_cache_vs_bf16_rel=((ref - got8).norm() / ref.norm()).item(),
            prefix_alongside=PREFIX_LAUNCH.alongside,
            **{
                f"prefix_{placement}_triton_rel": ((ref - got_other).norm() / ref.norm()).item(),
                f"prefix_{placement}_fp8_cache_vs_widened_rel": ((ref8 - got8_other).norm() / ref8.norm()).item(),
            },
        )
    r, d = torch.randn(64, 3072, device=dev, dtype=bf), torch.randn(64, 3072, device=dev, dtype=bf)
    w = torch.randn(3072, device=dev, dtype=bf)
    new_r, x = triton_decode.add_rms_norm(r, d, w, 1e-6)
    s = (r + d).float()
    expect = w.float() * (s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-6))
    report(
        "add_rms_norm_rel", rel=((x.float() - expect).norm() / expect.norm()).item(), residual_equal=bool((new_r == r + d).all())
    )
    from harness.generation.quantization import LinearWeights, Quantization, linear, quantize_weight

    x = torch.randn(200, 3072, device=dev, dtype=bf)
    weight = torch.randn(8192, 3072, device=dev, dtype=bf) * 0.02
    expect = x.float() @ weight.float().t()
    for mode in (Quantization.FP8, Quantization.INT8):
        quantized, scale = quantize_weight(weight, mode)
        got = linear(x, LinearWeights(quantized, scale, None, mode)).float()
        report("quantized_linear_rel", mode=mode.value, rel=((got - expect).norm() / expect.norm()).item())
    heads, kv_heads, dim, slots = 24, 8, 128, 64
    qkv = torch.randn(slots, (heads + 2 * kv_heads) * dim, device=dev, dtype=bf)
    cos, sin = torch.randn(slots, dim, device=dev, dtype=bf), torch.randn(slots, dim, device=dev, dtype=bf)
    keys = torch.zeros(slots, kv_heads, 300, dim, device=dev, dtype=bf)
    values = torch.zeros_like(keys)
    index = torch.randint(0, 300, (slots,), device=dev)
    query = triton_decode.rotary_and_write(qkv, cos, sin, keys, values, index, heads, kv_heads, dim)
    qq, kk, vv = qkv.float().split([heads * dim, kv_heads * dim, kv_heads * dim], -1)
    rows = torch.arange(slots, device=dev)
    key_codes = torch.zeros_like(keys, dtype=torch.float8_e4m3fn)
    value_codes = torch.zeros_like(key_codes)
    key_scales = torch.ones(keys.shape[:3], device=dev)
    value_scales = torch.ones_like(key_scales)
    triton_decode.rotary_and_write(qkv, cos, sin, key_codes, value_codes, index, heads, kv_heads, dim, key_scales, value_scales)
    expect_keys, expect_key_scales = quantize_vectors(_rotate(kk.view(slots, kv_heads, dim), cos.float(), sin.float()).to(bf))
    expect_values, _ = quantize_vectors(vv.view(slots, kv_heads, dim).to(bf))
    report(
        "rotary_and_write_fp8_cache",
        key_codes_equal=(key_codes[rows, :, index].float() == expect_keys.float()).float().mean().item(),
        value_codes_equal=(value_codes[rows, :, index].float() == expect_values.float()).float().mean().item(),
        key_scale_rel=((key_scales[rows, :, index] - expect_key_scales).abs() / expect_key_scales).max().item(),
    )
    report(
        "rotary_and_write_max_abs",
        query=(query.float() - _rotate(qq.view(slots, heads, dim), cos.float(), sin.float())).abs().max().item(),
        key=(keys[rows, :, index].float() - _rotate(kk.view(slots, kv_heads, dim), cos.float(), sin.float())).abs().max().item(),
        value=(values[rows, :, index].float() - vv.view(slots, kv_heads, dim)).abs().max().item(),
    )


def check_fp8_kernels() -> None:
    """The fp8 products between the fused kernels: each kernel that reads an unscaled product against the
    same kernel on the product scaled by torch (apply_scales), each kernel that writes an fp8 input
    against quantize_rows of its plain output; then a whole decode step (a random 4-layer model) through
    the fused kernels against the torch path with row-wise scaled products, in bf16 and fp8."""
    from harness.generation import triton_decode as td
    from harness.generation.quantization import FP8_MAX, UnscaledProduct, apply_scales, padded_rows

    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16

    def rel(a, b):
        return ((a.float() - b.float()).norm() / b.float().norm()).item()

    slots, width = 200, 3072
    row_scale = torch.rand(padded_rows(slots), 1, device=dev) * 0.01 + 0.001
    raw = (torch.randn(padded_rows(slots), width, device=dev) * 50).to(bf)
    product = UnscaledProduct(raw, row_scale, torch.rand(width, device=dev) * 0.01 + 0.001, None)
    residual, weight = torch.randn(slots, width, device=dev, dtype=bf), torch.randn(width, device=dev, dtype=bf)
    r0, x0 = td.add_rms_norm(residual, apply_scales(product, slots, bf), weight, 1e-6)
    r1, x1 = td.add_rms_norm(residual, product, weight, 1e-6)
    r2, q = td.add_rms_norm_fp8(residual, product, weight, 1e-6)
    codes, scale = td.quantize_rows(x0.contiguous(), torch.float8_e4m3fn, FP8_MAX)
    gate_raw = (torch.randn(padded_rows(slots), 2 * 8192, device=dev) * 50).to(bf)
    gate_up = UnscaledProduct(gate_raw, row_scale, torch.rand(2 * 8192, device=dev) * 0.01 + 0.001, None)
    h0 = td.silu_times_up(apply_scales(gate_up, slots, bf))
    h1 = td.silu_times_up(gate_up, slots, bf)
    hq = td.silu_times_up_fp8(gate_up, slots, bf)
    h_codes, h_scale = td.quantize_rows(h0.contiguous(), torch.float8_e4m3fn, FP8_MAX)
    # Past CHUNKED_SILU_ROWS the fp8 SiLU runs chunked (the 1.5B shape's 512 rows of 8,960).
    wide_rows, wide = 512, 8960
    wide_product = UnscaledProduct(
        (torch.randn(wide_rows, 2 * wide, device=dev) * 50).to(bf), torch.rand(wide_rows, 1, device=dev) * 0.01 + 0.001,
        torch.rand(2 * wide, device=dev) * 0.01 + 0.001, None,
    )  # fmt: skip
    wide_q = td.silu_times_up_fp8(wide_product, wide_rows, bf)
    wide_codes, wide_scale = td.quantize_rows(td.silu_times_up(wide_product, wide_rows, bf), torch.float8_e4m3fn, FP8_MAX)
    heads, kv_heads, dim = 24, 8, 128
    columns = (heads + 2 * kv_heads) * dim
    qkv = UnscaledProduct(
        (torch.randn(padded_rows(slots), columns, device=dev) * 50).to(bf), row_scale,
        torch.rand(columns, device=dev) * 0.01 + 0.001, torch.randn(columns, device=dev, dtype=bf),
    )  # fmt: skip
    cos, sin = torch.randn(slots, dim, device=dev, dtype=bf), torch.randn(slots, dim, device=dev, dtype=bf)
    caches = [torch.zeros(slots, kv_heads, 40, dim, device=dev, dtype=bf) for _ in range(4)]
    index = torch.randint(0, 40, (slots,), device=dev)
    q0 = td.rotary_and_write(apply_scales(qkv, slots, bf), cos, sin, caches[0], caches[1], index, heads, kv_heads, dim)
    q1 = td.rotary_and_write(qkv, cos, sin, caches[2], caches[3], index, heads, kv_heads, dim)
    report(
        "fp8_between_kernels",
        add_rms_norm_equal=bool((r0 == r1).all() and (x0 == x1).all() and (r2 == r0).all()),
        add_rms_norm_fp8_codes_equal=(q.values[:slots].float() == codes.float()).float().mean().item(),
        add_rms_norm_fp8_scales_equal=bool((q.scale[:slots] == scale).all()),
        silu_equal=bool((h0 == h1).all()),
        silu_fp8_codes_equal=(hq.values[:slots].float() == h_codes.float()).float().mean().item(),
        silu_fp8_scale_rel=((hq.scale[:slots] - h_scale).abs() / h_scale).max().item(),
        silu_fp8_chunked_identical=bool(
            torch.equal(wide_q.values[:wide_rows].view(torch.uint8), wide_codes.view(torch.uint8))
            and torch.equal(wide_q.scale[:wide_rows], wide_scale)
        ),
        rotary_equal=bool((q0 == q1).all() and (caches[0] == caches[2]).all() and (caches[1] == caches[3]).all()),
    )
    from harness.generation.quantization import LinearWeights, Quantization, fp8_unscaled_product, linear, quantize_weight

    x = torch.randn(256, 3072, device=dev, dtype=bf)
    weight = torch.randn(8192, 3072, device=dev, dtype=bf) * 0.02
    codes, channel_scale = quantize_weight(weight, Quantization.FP8)
    fp8 = LinearWeights(codes, channel_scale, None, Quantization.FP8)
    exact = x.float() @ weight.float().t()
    rowwise = linear(x, fp8).float()
    unscaled = apply_scales(fp8_unscaled_product(td.fp8_rows(x), fp8, torch.ones((), device=dev)), 256, bf).float()
    report(
        "fp8_product_unit_vs_rowwise", rowwise_vs_exact=rel(rowwise, exact), unit_vs_exact=rel(unscaled, exact),
        unit_vs_rowwise=rel(unscaled, rowwise),
    )  # fmt: skip
    _check_decode_step_paths()
    _check_prefill_paths()


def _check_decode_step_paths() -> None:
    """One decode step of a random llama-shaped model through the fused Triton kernels against the torch
    path (row-wise scaled products for fp8), on the same shared-prefix cache: relative error of the logits."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from harness.generation.decode_step import DecodeStep
    from harness.generation.prefix_attention import PrefixPool, group_members, group_rows
    from harness.generation.quantization import Quantization

    dev, bf = "cuda", torch.bfloat16
    config = LlamaConfig(
        vocab_size=4096, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
    )  # fmt: skip
    for mode in (Quantization.NONE, Quantization.FP8):
        torch.manual_seed(0)
        with torch.device(dev):
            model = AutoModelForCausalLM.from_config(config, dtype=bf).eval()
        step = DecodeStep(model, mode)
        slots, kv_heads, dim, capacity, prefix = 48, 2, 128, 64, 300
        members = 4
        layers = config.num_hidden_layers
        pool_keys = [torch.randn(kv_heads, 12 * prefix, dim, device=dev, dtype=bf) for _ in range(layers)]
        pool_values = [torch.randn_like(k) for k in pool_keys]
        ranges = [((s // members) * prefix, prefix - 7 * (s // members)) for s in range(slots)]
        groups = torch.tensor(group_rows(ranges, group_members(4), slots), dtype=torch.int64, device=dev)
        pool = PrefixPool(
            pool_keys, pool_values, torch.tensor([a for a, _ in ranges], device=dev),
            torch.tensor([b for _, b in ranges], device=dev), groups, prefix,
        )  # fmt: skip
        write_index = torch.randint(0, capacity - 1, (slots,), device=dev)
        positions = pool.length + write_index
        tokens = torch.randint(0, config.vocab_size, (slots,), device=dev)
        logits = {}
        between = step.fp8_between_kernels
        for kernel, fp8_between in (("torch", False), ("triton", False), ("triton", between)):
            torch.manual_seed(1)
            keys = [torch.randn(slots, kv_heads, capacity, dim, device=dev, dtype=bf) for _ in range(layers)]
            values = [torch.randn_like(k) for k in keys]
            step.fp8_between_kernels = fp8_between
            with torch.inference_mode():
                logits[kernel, fp8_between] = step.logits(tokens, positions, keys, values, write_index, pool, kernel).float()
        fused, torch_path, plain_fused = logits["triton", between], logits["torch", False], logits["triton", False]
        report(
            "decode_step_fused_vs_torch", quantize=mode.value, fp8_between_kernels=between,
            logits_rel=rel_error(fused, torch_path),
            argmax_equal=(fused.argmax(-1) == torch_path.argmax(-1)).float().mean().item(),
            # fp8 products between the kernels against row-wise scaled products after the same kernels:
            logits_rel_vs_rowwise_products=rel_error(fused, plain_fused),
            argmax_equal_vs_rowwise_products=(fused.argmax(-1) == plain_fused.argmax(-1)).float().mean().item(),
        )  # fmt: skip
        del model, step
        torch.cuda.empty_cache()


def _check_prefill_paths() -> None:
    """A batched prefill of a random llama-shaped model (right-padded rows of different lengths) through
    the decode step's layers (Triton kernels; fp8 products between them for fp8) against the model's own
    forward (its quantized linears for fp8): relative error of the pool's K and V at the last layer, and
    whether the padding wrote anywhere but its own position."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from harness.generation import fast_engine
    from harness.generation.decode_step import DecodeStep
    from harness.generation.prefix_attention import PrefixPool
    from harness.generation.quantization import Quantization

    dev, bf = "cuda", torch.bfloat16
    config = LlamaConfig(
        vocab_size=4096, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
    )  # fmt: skip
    lengths = [300, 517, 64, 401]
    width = max(lengths)
    starts = [sum(lengths[:i]) + 5 * i for i in range(len(lengths))]
    padding = starts[-1] + lengths[-1] + 5
    fast_engine._register_attention()
    for mode in (Quantization.NONE, Quantization.FP8):
        torch.manual_seed(0)
        with torch.device(dev):
            model = AutoModelForCausalLM.from_config(config, dtype=bf).eval()
        step = DecodeStep(model, mode)
        rows = torch.randint(0, config.vocab_size, (len(lengths), width), device=dev)
        index = torch.tensor([s + t if t < n else padding for s, n in zip(starts, lengths) for t in range(width)], device=dev)

        def pool():
            layers = range(config.num_hidden_layers)
            shape = (2, padding + 1, 128)
            none = torch.zeros(1, dtype=torch.int64, device=dev)
            return PrefixPool([torch.zeros(shape, dtype=bf, device=dev) for _ in layers],
                              [torch.zeros(shape, dtype=bf, device=dev) for _ in layers], none, none, none, 1)  # fmt: skip

        forward, fused = pool(), pool()
        model.set_attn_implementation(fast_engine.ATTENTION_NAME)
        argument = fast_engine.cache_argument(model)
        with torch.inference_mode():
            model(input_ids=rows, position_ids=torch.arange(width, device=dev)[None].expand(len(lengths), -1), use_cache=True,
                  logits_to_keep=1, **{argument: fast_engine._PoolWriter(forward, list(zip(starts, lengths)))})  # fmt: skip
            step.prefill(rows, index, fused, "triton")
        last = config.num_hidden_layers - 1
        written = torch.zeros(padding, dtype=torch.bool, device=dev)
        for s, n in zip(starts, lengths):
            written[s : s + n] = True
        report(
            "prefill_fused_vs_forward", quantize=mode.value, fp8_between_kernels=step.fp8_between_kernels,
            keys_rel=rel_error(fused.keys[last][:, :padding].float(), forward.keys[last][:, :padding].float()),
            values_rel=rel_error(fused.values[last][:, :padding].float(), forward.values[last][:, :padding].float()),
            first_layer_keys_rel=rel_error(fused.keys[0][:, :padding].float(), forward.keys[0][:, :padding].float()),
            padding_wrote_elsewhere=bool(fused.keys[last][:, :padding][:, ~written].abs().sum() > 0),
        )  # fmt: skip
        del model, step
        torch.cuda.empty_cache()


def rel_error(got: torch.Tensor, expect: torch.Tensor) -> float:
    return ((got - expect).norm() / expect.norm()).item()


# Each decode-step product's (output, input) width at each shape.
PRODUCT_SHAPES = {
    "llama-3.2-3b": {"qkv": (5120, 3072), "out": (3072, 3072), "gate_up": (16384, 3072), "down": (3072, 8192)},
    "qwen2.5-coder-1.5b": {"qkv": (2048, 1536), "out": (1536, 1536), "gate_up": (17920, 1536), "down": (1536, 8960)},
}


def check_products_time() -> None:
    """Each decode-step product at the 3B and 1.5B shapes, 256 and 512 rows: bf16 against fp8 with row-wise
    scales handed to torch._scaled_mm (its row-wise kernel) and fp8 with scalar 1s (tensor-wise; the scales
    applied by the next kernel), with and without fast accumulation, kernel time from CUDA graphs."""
    from harness.generation.quantization import LinearWeights, Quantization, fp8_unscaled_product, linear, quantize_weight
    from harness.generation.triton_decode import fp8_rows

    dev, bf = "cuda", torch.bfloat16
    unit = torch.ones((), device=dev)
    for shape, products in PRODUCT_SHAPES.items():
        for rows in (256, 512):
            figures = {}
            for name, (n, k) in products.items():
                x = torch.randn(rows, k, device=dev, dtype=bf)
                weight = torch.randn(n, k, device=dev, dtype=bf) * 0.02
                codes, scale = quantize_weight(weight, Quantization.FP8)
                fp8 = LinearWeights(codes, scale, None, Quantization.FP8)
                xq = fp8_rows(x)
                figures[name] = {
                    "bf16": round(_graph_microseconds(lambda x=x, w=weight: torch.nn.functional.linear(x, w)), 1),
                    "fp8_rowwise_with_quantization": round(_graph_microseconds(lambda x=x, w=fp8: linear(x, w)), 1),
                    "fp8_rowwise": round(
                        _graph_microseconds(
                            lambda xq=xq, w=fp8: torch._scaled_mm(
                                xq.values, w.weight.t(), scale_a=xq.scale, scale_b=w.scale[None, :], out_dtype=bf
                            )
                        ),
                        1,
                    ),
                    "fp8_unit_tensorwise": round(_graph_microseconds(lambda xq=xq, w=fp8: fp8_unscaled_product(xq, w, unit)), 1),
                    # The same without fast accumulation (quantization.FAST_ACCUMULATION).
                    "fp8_unit_tensorwise_exact_accumulation": round(
                        _graph_microseconds(
                            lambda xq=xq, w=fp8: torch._scaled_mm(
                                xq.values, w.weight.t(), scale_a=unit, scale_b=unit, out_dtype=bf, use_fast_accum=False
                            )
                        ),
                        1,
                    ),
                }
            totals = {kind: round(sum(f[kind] for f in figures.values()), 1) for kind in next(iter(figures.values()))}
            report("products_time_us", shape=shape, rows=rows, per_layer=totals, products=figures)


def check_attention_configs() -> None:
    """The shared-prefix kernels' launch choices on the attention_time workload: the suffix pass (positions
    per step, warps, stages) for each cache format at both shapes, and the prefix pass (positions per
    program, warps) at the 3B shape.  Microseconds per layer of each, best first."""
    from harness.generation.triton_attention import PREFIX_LAUNCH, LaunchConfig

    suffix_choices = [LaunchConfig(b, w, st) for b in (32, 64, 128) for w in (4, 8) for st in (2, 3)]
    prefix_choices = [
        LaunchConfig(64, w, 3, split=split, alongside=PREFIX_LAUNCH.alongside) for split in (128, 256, 512) for w in (4, 8)
    ]
    runs = [("suffix", shape, label, suffix_choices) for shape in ATTENTION_SHAPES for label in ("bf16", "fp8_suffix")]
    runs.append(("prefix", "llama-3.2-3b", "bf16", prefix_choices))
    results = []
    for part, shape, label, choices in runs:
        for config in choices:
            where = {"suffix_launch": config} if part == "suffix" else {"prefix_launch": config}
            launch = [config.block, config.warps, config.stages, config.split]
            record = {"part": part, "shape": shape, "cache": label, "config": launch}
            try:
                record.update(_attention_time(labels=(label,), shape=shape, **where)[label])
            except Exception as exc:  # a choice the compiler cannot take
                record["error"] = str(exc)[:160]
            results.append(record)
        ranked = sorted(
            (r for r in results if (r["part"], r["shape"], r["cache"]) == (part, shape, label) and "us_per_layer" in r),
            key=lambda r: r["us_per_layer"],
        )
        report("attention_configs_best", part=part, shape=shape, cache=label, best=ranked[:4])
    report("attention_configs", results=results)


def _graph_microseconds(fn, replays: int = 20, per_graph: int = 10) -> float:
    """Kernel time of ``fn`` per call: captured ``per_graph`` times in a CUDA graph, replayed."""
    fn()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(per_graph):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (replays * per_graph)


# slots, query heads, KV heads of each shape's attention workload
ATTENTION_SHAPES = {"llama-3.2-3b": (256, 24, 8), "qwen2.5-coder-1.5b": (512, 12, 2)}


def check_attention_time() -> None:
    """One layer's shared-prefix decode attention mid-run (the 3B shape: 256 slots, 8 KV heads; the 1.5B
    shape: 512 slots, 2 KV heads; 20 samples per prompt on 600-token prompts, suffixes 1-512 long): K/V in
    bf16 against an fp8 suffix, with the bytes each reads; the prefix pass before the suffix pass and on a
    second stream beside it."""
    from dataclasses import replace

    from harness.generation.triton_attention import PREFIX_LAUNCH

    for shape, name in (("llama-3.2-3b", "attention_time_3b_shape"), ("qwen2.5-coder-1.5b", "attention_time_1.5b_shape")):
        for alongside in (False, True):
            figures = _attention_time(shape=shape, prefix_launch=replace(PREFIX_LAUNCH, alongside=alongside))
            report(name, prefix="alongside the suffix pass" if alongside else "before the suffix pass", **figures)


def _attention_time(prefix_launch=None, suffix_launch=None, labels=("bf16", "fp8_suffix"), shape="llama-3.2-3b") -> dict:
    from harness.generation.kv_cache import KVScales, quantize_vectors
    from harness.generation.prefix_attention import group_members, group_rows
    from harness.generation.triton_attention import triton_shared_prefix_attention

    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    slots, heads, kv_heads = ATTENTION_SHAPES[shape]
    dim, capacity, prefix = 128, 528, 600
    prompts = -(-slots // 20)
    pk = torch.randn(kv_heads, prompts * prefix, dim, device=dev, dtype=bf)
    pv = torch.randn_like(pk)
    ranges = [((s // 20) * prefix, prefix) for s in range(slots)]
    plen = torch.full((slots,), prefix, device=dev)
    groups = torch.tensor(group_rows(ranges, group_members(heads // kv_heads), slots), dtype=torch.int64, device=dev)
    sk = torch.randn(slots, kv_heads, capacity, dim, device=dev, dtype=bf)
    sv = torch.randn_like(sk)
    lengths = torch.randint(1, 513, (slots,), device=dev)
    q = torch.randn(slots, heads, 1, dim, device=dev, dtype=bf)
    (qk, ks), (qv, vs) = quantize_vectors(sk), quantize_vectors(sv)
    scales = KVScales(ks, vs)
    suffix_tokens = int(lengths.sum())
    figures = {}
    for label, args in (("bf16", (sk, sv, None)), ("fp8_suffix", (qk, qv, scales))):
        if label not in labels:
            continue
        keys, values, sc = args
        micros = _graph_microseconds(
            lambda keys=keys, values=values, sc=sc: triton_shared_prefix_attention(
                q, keys, values, lengths, pk, pv, plen, groups, prefix, dim**-0.5, sc,
                prefix_launch=prefix_launch, suffix_launch=suffix_launch,
            )
        )  # fmt: skip
        per_token = kv_heads * dim * 2 * keys.element_size() + (8 * kv_heads if sc is not None else 0)
        gbytes = (suffix_tokens * per_token + prompts * prefix * kv_heads * dim * 2 * 2) / 1e9
        figures[label] = {
            "us_per_layer": round(micros, 1),
            "gb_read": round(gbytes, 3),
            "tb_per_s": round(gbytes / micros * 1e3, 2),
        }
    return figures


# rows and vocabulary of each shape's sampling step (the slots, the model's vocabulary)
TOPK_SHAPES = {"llama-3.2-3b": (256, 128256), "qwen2.5-coder-1.5b": (512, 151936)}


def check_topk_time() -> None:
    """The sampling step's top 50 (sampling.top_k: the Triton kernel) against torch.topk at each shape's
    rows x vocabulary: microseconds of each, and the same values and ids on random logits, on rows with a
    cluster of large logits, and on rows of one repeated value (both past the kernel's 512 candidate
    places: its exact slow path)."""
    from harness.generation.sampling import top_k
    from harness.generation.triton_topk import triton_topk

    torch.manual_seed(0)
    for shape, (rows, vocab) in TOPK_SHAPES.items():
        logits = (torch.randn(rows, vocab, device="cuda") * 3).to(torch.bfloat16)
        figures = {
            "torch_us": round(_graph_microseconds(lambda logits=logits: torch.topk(logits, 50, dim=-1)), 1),
            "triton_us": round(_graph_microseconds(lambda logits=logits: top_k(logits, 50)), 1),
        }
        # The passes' widths (triton_topk.STEP and GATHER are the defaults).
        for step, gather in ((8192, 8), (8192, 16), (16384, 8), (16384, 16), (32768, 8)):
            figures[f"triton_us_step{step}_gather{gather}"] = round(
                _graph_microseconds(lambda logits=logits, s=step, g=gather: triton_topk(logits, 50, s, g)), 1
            )
        odd = logits.clone()
        odd[: rows // 2, 1000:3000] = 12 + torch.randn(rows // 2, 2000, device="cuda").to(torch.bfloat16)
        odd[rows // 2 :: 2] = 1.5
        for label, case in (("random", logits), ("clustered_and_repeated", odd)):
            values, ids = top_k(case, 50)
            expect, _ = torch.topk(case, 50, dim=-1)
            figures[f"{label}_values_equal"] = bool(torch.equal(values, expect))
            figures[f"{label}_ids_point_at_values"] = bool(torch.equal(case.gather(1, ids), values))
            figures[f"{label}_ids_distinct"] = bool((ids.sort(dim=1).values.diff(dim=1) > 0).all())
        report("topk_time", shape=shape, rows=rows, vocab=vocab, k=50, **figures)


def check_silu_time() -> None:
    """The fp8 SiLU (silu_times_up_fp8, on an unscaled gate/up product) at each shape's rows x width:
    microseconds in one pass (one program per row) and chunked (two passes); the two's codes and scales
    compared.  (Session 10 also timed pass 2 computing the hidden values again instead of reading them
    back: 8.68 and 14.97 us, slower than both.)"""
    from harness.generation import triton_decode as td
    from harness.generation.quantization import UnscaledProduct

    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    chunked_rows = td.CHUNKED_SILU_ROWS
    for shape, (rows, width) in (("llama-3.2-3b", (256, 8192)), ("qwen2.5-coder-1.5b", (512, 8960))):
        product = UnscaledProduct(
            (torch.randn(rows, 2 * width, device=dev) * 50).to(bf), torch.rand(rows, 1, device=dev) * 0.01 + 0.001,
            torch.rand(2 * width, device=dev) * 0.01 + 0.001, None,
        )  # fmt: skip
        figures, outputs = {}, {}
        try:
            for label, chunk_from in (("one_pass", rows), ("chunked", 0)):
                td.CHUNKED_SILU_ROWS = chunk_from
                figures[f"{label}_us"] = round(_graph_microseconds(lambda p=product, r=rows: td.silu_times_up_fp8(p, r, bf)), 2)
                outputs[label] = td.silu_times_up_fp8(product, rows, bf)
        finally:
            td.CHUNKED_SILU_ROWS = chunked_rows
        first = outputs["one_pass"]
        figures["all_equal"] = all(
            bool((o.values[:rows].view(torch.uint8) == first.values[:rows].view(torch.uint8)).all())
            and bool((o.scale[:rows] == first.scale[:rows]).all())
            for o in outputs.values()
        )
        report("silu_fp8_time", shape=shape, rows=rows, width=width, **figures)


def check_syncs(prompts) -> None:
    """A short fast-engine run with CUDA's sync debug mode on: which calls make the host wait for the GPU
    (each one lets the GPU run dry while the host catches up)."""
    import warnings

    from harness.generation.fast_engine import FastEngine, FastEngineOptions
    from harness.generation.plan import SamplingSettings

    tokenizer = build_tokenizer([p for _, p in prompts], 4096)
    model = build_model("tiny", torch.bfloat16, "cuda", tokenizer.eos_token_id, tokenizer.pad_token_id)
    engine = FastEngine(model, tokenizer, SamplingSettings(0.2, 50, 0.95), FastEngineOptions(slots=8, chunk_steps=8))
    engine.run(_jobs(prompts[:2], 4, 40), lambda s: None)  # warm: compile and capture outside the count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            engine.run(_jobs(prompts, 4, 120), lambda s: None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    places: dict[str, int] = {}
    for warning in caught:
        where = f"{Path(warning.filename).name}:{warning.lineno}: {str(warning.message)[:60]}"
        places[where] = places.get(where, 0) + 1
    report("synchronizing_calls", total=len(caught), by_place=sorted(places.items(), key=lambda kv: -kv[1])[:12])


def check_greedy(prompts) -> None:
    """Greedy tokens of every layout/step variant against model.generate (fp32 and bf16)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from harness.generation.fast_engine import FastEngine, FastEngineOptions
    from harness.generation.plan import GenerationSettings, SamplingSettings, plan_jobs

    tokenizer = build_tokenizer([p for _, p in prompts], 4096)
    for dtype in (torch.float32, torch.bfloat16):
        config = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=2, head_dim=64, eos_token_id=None, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        )  # fmt: skip
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" not in name:
                    p.mul_(8)
        greedy = SamplingSettings(temperature=0.0)
        chosen = prompts[:6]
        refs = {}
        for task_id, prompt in chosen:
            inputs = tokenizer(prompt, return_tensors="pt").to("cuda")
            with torch.inference_mode():
                out = model.generate(**inputs, do_sample=False, max_new_tokens=64, pad_token_id=tokenizer.pad_token_id)
            refs[task_id] = out[0, inputs["input_ids"].shape[1] :].tolist()
        jobs = plan_jobs(chosen, GenerationSettings("m", n=2, max_new_tokens=64, sampling=greedy))
        for shared, fused in ((False, False), (True, False), (True, True)):
            engine = FastEngine(
                model, tokenizer, greedy, FastEngineOptions(slots=5, chunk_steps=8, shared_prefix=shared, fused_step=fused)
            )
            found = {}
            engine.run(jobs, lambda s, found=found: found.setdefault((s.task_id, s.index), s))
            equal = prefix = 0
            for (task_id, _), sample in found.items():
                got, ref = list(sample.token_ids), refs[task_id]
                equal += got == ref[: len(got)]
                prefix += next((j for j, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
            report(
                "greedy_vs_generate", dtype=str(dtype), shared_prefix=shared, fused_step=fused, samples=len(found),
                identical=equal, mean_common_prefix=prefix / len(found),
            )  # fmt: skip
        del model
        torch.cuda.empty_cache()


def _jobs(chosen, n, max_new):
    from harness.generation.plan import PromptJob, SampleSpec, sample_seed

    return [PromptJob(t, p, tuple(SampleSpec(i, sample_seed(0, t, i), max_new) for i in range(n))) for t, p in chosen]


def profile_replay(model, tokenizer, chosen, options, label: str) -> None:
    """torch.profiler over one chunk's CUDA-graph replays in steady state; kernel time by kind."""
    from harness.generation import fast_engine
    from harness.generation.fast_engine import FastEngine
    from harness.generation.plan import SamplingSettings

    original = fast_engine._SlotRun._launch
    captured: dict = {}

    def launch(self, chunk):
        if chunk == 6 and self.bank.graph is not None and not captured:
            torch.cuda.synchronize()
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(self.chunk_steps // self.steps_per_graph):  # one chunk's replays
                    self.bank.graph.replay()
                torch.cuda.synchronize()
            captured["events"] = [(e.key, e.device_time_total, e.count) for e in prof.key_averages()]
            captured["steps"] = self.chunk_steps
        return original(self, chunk)

    fast_engine._SlotRun._launch = launch
    try:
        engine = FastEngine(model, tokenizer, SamplingSettings(0.2, 50, 0.95), options)
        engine.run(_jobs(chosen, 16, 160), lambda s: None)
    finally:
        fast_engine._SlotRun._launch = original
    kinds: dict[str, float] = {}
    launches = 0
    for name, micros, count in captured.get("events", []):
        low = name.lower()
        if any(t in low for t in ("partial_kernel", "merge_kernel", "prefix_group_kernel", "suffix_kernel", "combine_kernel")):
            kind = "attention"
        elif any(t in low for t in ("gemm", "cutlass", "nvjet", "sm90", "matmul", "xmma", "cublas")):
            kind = "gemm"
        elif any(t in low for t in ("topk", "sort", "radix", "gather_topk", "bitonic", "candidates_kernel")):
            kind = "top-k"
        elif "rms_norm" in low or "rotary" in low or "silu" in low:
            kind = "fused elementwise (Triton)"
        else:
            kind = "other small kernels"
        kinds[kind] = kinds.get(kind, 0.0) + micros
        launches += count
    steps = captured.get("steps", 1)
    total = sum(kinds.values())
    report(
        "profile_one_replay", label=label, slots=options.slots, ms_per_step=total / 1000 / steps,
        kernels_per_step=launches / steps,
        share={k: round(v / total, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])} if total else {},
        ms_per_step_by_kind={k: round(v / 1000 / steps, 3) for k, v in kinds.items()},
        top=[(n[:80], round(m / 1000 / steps, 3)) for n, m, _ in sorted(captured.get("events", []), key=lambda e: -e[1])[:20]],
    )  # fmt: skip


def profile_fixed_costs(model, tokenizer, chosen, n, max_new, options, label: str) -> None:
    """Where a run's time outside the decode chunks goes: the set-up's parts (slot allocation, each
    bank's warm-up step and capture) and each refill's prefills (host time to queue them, time until
    the GPU finished them, and for one of them its GPU kernels by the profiler).  Timed with
    synchronizations, so the run itself is not a throughput figure."""
    from harness.generation import fast_engine
    from harness.generation.fast_engine import FastEngine
    from harness.generation.plan import SamplingSettings

    run_class = fast_engine._SlotRun
    patched = ("__init__", "_capture", "_decode_step", "_prefill_into_pool")
    originals = {name: getattr(run_class, name) for name in patched}
    found: dict = {"capture": [], "prefill": [], "warm_step_ms": []}

    def init(self, *a, **k):
        torch.cuda.synchronize()
        began = time.perf_counter()
        originals["__init__"](self, *a, **k)
        torch.cuda.synchronize()
        found["slot_run_init_ms"] = round(1000 * (time.perf_counter() - began), 1)

    def capture(self, bank):
        torch.cuda.synchronize()
        began = time.perf_counter()
        originals["_capture"](self, bank)
        torch.cuda.synchronize()
        found["capture"].append((bank.size, round(1000 * (time.perf_counter() - began), 1)))

    def decode_step(self, bank):
        if bank.graph is None and not torch.cuda.is_current_stream_capturing():
            began = time.perf_counter()
            originals["_decode_step"](self, bank)
            torch.cuda.synchronize()
            found["warm_step_ms"].append(round(1000 * (time.perf_counter() - began), 1))
        else:
            originals["_decode_step"](self, bank)

    def prefill_into_pool(self, entries):
        torch.cuda.synchronize()
        began = time.perf_counter()
        tokens = sum(length for _, _, length in entries)
        if len(found["prefill"]) == 2 and "prefill_kernels" not in found:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                originals["_prefill_into_pool"](self, entries)
                torch.cuda.synchronize()
            events = [(e.key, e.device_time_total, e.count) for e in prof.key_averages()]
            total = sum(m for _, m, _ in events)
            found["prefill_kernels"] = {
                "prompts": len(entries), "tokens": tokens, "gpu_ms": round(total / 1000, 2),
                "launches": sum(c for _, _, c in events),
                "top": [(k[:70], round(m / 1000, 2), c) for k, m, c in sorted(events, key=lambda e: -e[1])[:14]],
            }  # fmt: skip
            queued = time.perf_counter()
        else:
            originals["_prefill_into_pool"](self, entries)
            queued = time.perf_counter()
            torch.cuda.synchronize()
        done = time.perf_counter()
        found["prefill"].append((len(entries), tokens, round(1000 * (queued - began), 1), round(1000 * (done - began), 1)))

    for name, replacement in zip(patched, (init, capture, decode_step, prefill_into_pool)):
        setattr(run_class, name, replacement)
    try:
        engine = FastEngine(model, tokenizer, SamplingSettings(0.2, 50, 0.95, seed=0), options)
        engine.run(_jobs(chosen, n, max_new), lambda s: None)
    finally:
        for name, original in originals.items():
            setattr(run_class, name, original)
    stats = engine.last_run
    prefills = found.pop("prefill")
    # The profiled refill (the third) is left out of the sums: the profiler slows its host side.
    timed = prefills[:2] + prefills[3:]
    report(
        "fixed_costs", label=label, slots=options.slots, setup_s=round(stats.setup_seconds, 3), **found,
        refills_with_prefills=len(prefills), prefill_host_ms=round(sum(p[2] for p in timed), 1),
        prefill_done_ms=round(sum(p[3] for p in timed), 1), prefill_tokens=sum(p[1] for p in prefills),
        prefills=prefills[:12],
    )  # fmt: skip


class _PrefixPlacement:
    """Sets triton_attention.PREFIX_LAUNCH's ``alongside`` for a variant named ``*_prefix_alongside`` or
    ``*_prefix_before``, and puts the default back for the others (the engine reads it as it captures)."""

    def __init__(self) -> None:
        self.default = None

    def set(self, label: str) -> None:
        from dataclasses import replace

        from harness.generation import triton_attention

        if self.default is None:
            self.default = triton_attention.PREFIX_LAUNCH
        launch = self.default
        if label.endswith("_prefix_alongside") or label.endswith("_prefix_before"):
            launch = replace(launch, alongside=label.endswith("_prefix_alongside"))
        triton_attention.PREFIX_LAUNCH = launch


prefix_placement = _PrefixPlacement()


def warm_up(model, tokenizer, chosen, max_new, options) -> None:
    """A run with the variant's options before its measured one, so that the Triton kernels it uses are
    compiled and cuBLAS has chosen its algorithms (first-use costs a user pays once per machine, as Triton
    keeps its compiled kernels on disk), and the memory the measured run takes is already in the caching
    allocator: one sample of every prompt (each prompt's prefill once) with the measured run's token budget
    (its cache size).  Without it the first variant to use a kernel carried the compile in its figure, and
    the first of the session its allocations and first prefills: 1.1 s more set-up and 0.8 s more refill
    than the same run repeated in session 9's first run."""
    from harness.generation.fast_engine import FastEngine
    from harness.generation.plan import SamplingSettings

    engine = FastEngine(model, tokenizer, SamplingSettings(0.2, 50, 0.95, seed=0), options)
    engine.run(_jobs(chosen, 1, max_new), lambda s: None)
    torch.cuda.synchronize()


def measure(model, tokenizer, chosen, n, max_new, options, label: str, record: bool = True) -> dict:
    from harness.generation.fast_engine import FastEngine
    from harness.generation.plan import SamplingSettings

    engine = FastEngine(model, tokenizer, SamplingSettings(0.2, 50, 0.95, seed=0), options)
    jobs = _jobs(chosen, n, max_new)
    tokens = 0
    outputs: dict = {}

    def sink(sample):
        nonlocal tokens
        tokens += len(sample.token_ids)
        outputs[(sample.task_id, sample.index)] = sample.token_ids

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    engine.run(jobs, sink)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    stats = engine.last_run
    result = {
        "label": label,
        "slots": stats.slots,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "setup_seconds": round(stats.setup_seconds, 2),
        "useful_tok_s": round(tokens / seconds, 1),
        "ms_per_step": round(1000 * (seconds - stats.setup_seconds) / stats.decode_steps, 3),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }
    if stats.decode_gpu_seconds is not None and stats.refill_gpu_seconds is not None and stats.wall_seconds:
        # Where the wall time after set-up went: the GPU's decode chunks, its refills (prefills), and the
        # rest, when the GPU waited for the host.
        result["gpu_ms_per_step"] = round(1000 * stats.decode_gpu_seconds / stats.decode_steps, 3)
        result["decode_gpu_share"] = round(stats.decode_gpu_seconds / stats.wall_seconds, 3)
        result["refill_gpu_share"] = round(stats.refill_gpu_seconds / stats.wall_seconds, 3)
    if record:
        report("throughput", **result)
    result["outputs"] = outputs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="llama-3.2-3b=256:512,qwen2.5-coder-1.5b=512:1024", help="shape=slots:more_slots,...")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument(
        "--variants",
        default="before,shared,one_prefill,fused,more_slots,fp8,fp8_kv,kv_fp8,int8,fp8_more_slots,fp8_kv_more_slots,fused_again",
    )
    parser.add_argument(
        "--checks",
        default="kernels,fp8_kernels,greedy,syncs,attention_time,topk_time,products_time",
        help="Self-checks to run first ('' for none; also attention_configs, a sweep of the attention kernels' launch choices).",
    )
    parser.add_argument(
        "--rehearsal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Run each shape's first variant's measured job once, unrecorded, before the measured runs.",
    )
    parser.add_argument(
        "--fixed-costs",
        default="",
        help="Variants (comma-separated labels) whose set-up and prefills are timed part by part before their measured run.",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from harness.generation.fast_engine import FastEngineOptions
    from harness.generation.kv_cache import KVCacheFormat
    from harness.generation.quantization import Quantization, weight_bytes

    RESULTS["command"] = "python bench/generation_steps.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    RESULTS["machine"] = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    all_prompts = load_prompts(DEFAULT_PROMPTS if DEFAULT_PROMPTS.exists() else Path(".gpudata/prompts.jsonl"))
    chosen = evenly_spaced(all_prompts, args.prompts)

    def flush():
        if args.out:
            args.out.write_text(json.dumps(RESULTS, indent=1))

    checks = {
        "kernels": check_kernels,
        "greedy": lambda: check_greedy(evenly_spaced(all_prompts, 6)),
        "syncs": lambda: check_syncs(evenly_spaced(all_prompts, 12)),
        "attention_time": check_attention_time,
        "topk_time": check_topk_time,
        "silu_time": check_silu_time,
        "fp8_kernels": check_fp8_kernels,
        "products_time": check_products_time,
        "attention_configs": check_attention_configs,
    }
    for name in filter(None, args.checks.split(",")):
        try:
            checks[name]()
        except Exception:
            report("check_failed", error=traceback.format_exc()[-2000:])
        flush()
    variants = args.variants.split(",")
    for part in filter(None, args.shapes.split(",")):
        shape, slot_text = part.split("=")
        slots, more = (int(x) for x in slot_text.split(":"))
        tokenizer = build_tokenizer([p for _, p in all_prompts], SHAPES[shape][-1])
        prompt_tokens = [len(tokenizer(p)["input_ids"]) for _, p in chosen]
        report("shape", shape=shape, prompts=len(chosen), n=args.n, max_new_tokens=args.max_new_tokens,
               prompt_tokens_mean=sum(prompt_tokens) / len(prompt_tokens))  # fmt: skip
        base: dict | None = None
        plan = [
            ("before", dict(shared_prefix=False, fused_step=False), slots, Quantization.NONE),
            ("shared", dict(shared_prefix=True, fused_step=False, prefill_batch=1), slots, Quantization.NONE),
            # The fused step with each prompt prefilled in a forward of its own (before batched prefill).
            ("one_prefill", dict(shared_prefix=True, fused_step=True, prefill_batch=1), slots, Quantization.NONE),
            ("fused", dict(shared_prefix=True, fused_step=True), slots, Quantization.NONE),
            # The fused step with a whole chunk in one CUDA graph (before session 10's one-step graphs).
            ("fused_chunk_graph", dict(shared_prefix=True, fused_step=True, steps_per_graph=16), slots, Quantization.NONE),
            ("more_slots", dict(shared_prefix=True, fused_step=True), more, Quantization.NONE),
            ("kv_fp8", dict(shared_prefix=True, fused_step=True, kv_cache=KVCacheFormat.FP8), slots, Quantization.NONE),
            ("fp8", dict(shared_prefix=True, fused_step=True), slots, Quantization.FP8),
            ("fp8_kv", dict(shared_prefix=True, fused_step=True, kv_cache=KVCacheFormat.FP8), slots, Quantization.FP8),
            ("int8", dict(shared_prefix=True, fused_step=True), slots, Quantization.INT8),
            # fp8 at the doubled slot count, against more_slots (bf16 at the same slots).
            ("fp8_more_slots", dict(shared_prefix=True, fused_step=True), more, Quantization.FP8),
            ("fp8_kv_more_slots", dict(shared_prefix=True, fused_step=True, kv_cache=KVCacheFormat.FP8), more, Quantization.FP8),
        ]
        # The prefix pass forced beside (or before) the suffix pass, whatever triton_attention.PREFIX_LAUNCH says.
        plan += [
            (f"{label}_prefix_{where}", flags, count, quant)
            for label, flags, count, quant in list(plan)
            if label in ("fused", "fp8", "fp8_kv")
            for where in ("before", "alongside")
        ]
        # bf16 once more, last: how far the machine drifted over the run (the ratios below take the faster of
        # the two bf16 runs).
        plan.append(("fused_again", dict(shared_prefix=True, fused_step=True), slots, Quantization.NONE))
        model = None
        current = None
        for label, flags, count, quant in plan:
            if label not in variants:
                continue
            try:
                if model is None or quant is not current:
                    model = None
                    torch.cuda.empty_cache()
                    model = build_model(shape, torch.bfloat16, "cuda", tokenizer.eos_token_id, tokenizer.pad_token_id)
                    current = quant
                options = FastEngineOptions(slots=count, chunk_steps=16, quantization=quant, **flags)
                prefix_placement.set(label)
                warm_up(model, tokenizer, chosen, args.max_new_tokens, options)
                if args.rehearsal and base is None:
                    # Session 9's runs: the share of wall time in refills (the prompts' prefills) fell run
                    # after run in one process, whatever the variant (3B 0.058, 0.043, 0.045, 0.038; 1.5B
                    # 0.109, 0.092, 0.071, 0.040), at the same decode GPU time per step.  A user's long job
                    # runs warm: the first job here runs once unrecorded, so that the variants compare warm.
                    rehearsal = measure(model, tokenizer, chosen, args.n, args.max_new_tokens, options, label, record=False)
                    report("rehearsal", label=f"{shape} {label}", seconds=rehearsal["seconds"],
                           refill_gpu_share=rehearsal.get("refill_gpu_share"))  # fmt: skip
                if label in args.fixed_costs.split(","):
                    profile_fixed_costs(model, tokenizer, chosen, args.n, args.max_new_tokens, options, f"{shape} {label}")
                if label in ("before", "fused", "fp8_kv"):
                    profile_replay(model, tokenizer, chosen[:16], options, f"{shape} {label}")
                result = measure(model, tokenizer, chosen, args.n, args.max_new_tokens, options, f"{shape} {label}")
                result["weight_gib"] = round(weight_bytes(model) / 2**30, 2)
                if base is None:
                    base = result
                else:
                    same = sum(result["outputs"].get(k) == v for k, v in base["outputs"].items())
                    speedup = round(result["useful_tok_s"] / base["useful_tok_s"], 3)
                    report("vs_before", label=f"{shape} {label}", speedup=speedup, samples_identical_to_before=same,
                           samples=len(base["outputs"]), weight_gib=result["weight_gib"])  # fmt: skip
                if label in ("fused", "more_slots"):
                    RESULTS.setdefault(f"bf16_{label}", {})[shape] = result["useful_tok_s"]
                same_slots = "bf16_more_slots" if label.endswith("more_slots") else "bf16_fused"
                if label in ("fp8", "fp8_kv", "kv_fp8", "int8", "fp8_more_slots", "fp8_kv_more_slots") and shape in RESULTS.get(
                    same_slots, {}
                ):
                    report(f"{label}_vs_bf16_same_slots", shape=shape, slots=count,
                           ratio=round(result["useful_tok_s"] / RESULTS[same_slots][shape], 3))  # fmt: skip
            except Exception:
                report("variant_failed", label=f"{shape} {label}", error=traceback.format_exc()[-2500:])
                model = None
                torch.cuda.empty_cache()
            flush()
        measured = {r["label"].split(" ", 1)[1]: r for r in RESULTS["records"] if r["check"] == "throughput" and
                    r["label"].startswith(shape + " ")}  # fmt: skip
        if "fused" in measured and "fused_again" in measured:
            bf16 = max(measured["fused"]["useful_tok_s"], measured["fused_again"]["useful_tok_s"])
            report("bf16_drift", shape=shape, fused_again_vs_fused=round(measured["fused_again"]["useful_tok_s"] /
                   measured["fused"]["useful_tok_s"], 3))  # fmt: skip
            for label in ("fp8", "fp8_kv", "kv_fp8", "int8"):
                if label in measured:
                    report(
                        f"{label}_vs_faster_bf16_same_slots", shape=shape, ratio=round(measured[label]["useful_tok_s"] / bf16, 3)
                    )
        for where in ("before", "alongside"):
            base_label = f"fused_prefix_{where}"
            if base_label in measured:
                for label in ("fp8", "fp8_kv"):
                    if (quantized := measured.get(f"{label}_prefix_{where}")) is not None:
                        bf16_run = measured[base_label]
                        report(f"{label}_vs_bf16_same_slots_prefix_{where}", shape=shape,
                               ratio=round(quantized["useful_tok_s"] / bf16_run["useful_tok_s"], 3),
                               gpu_ratio=round(bf16_run["gpu_ms_per_step"] / quantized["gpu_ms_per_step"], 3))  # fmt: skip
        model = None
        torch.cuda.empty_cache()
    flush()


if __name__ == "__main__":
    main()
