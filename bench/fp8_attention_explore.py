"""Exploration (session 8) of what the fp8 decode step still pays, on one GPU; the figures and what
came of each are in docs/BENCHMARKS.md (session 8) and docs/bench/fp8_explore_h200_s8.json.

* ``silu``: the fp8 SiLU kernel, one program per row against the two chunked passes (by chunk) and a
  two-pass loop in one program per row.
* ``lm_head``: the lm head in bf16 against fp8 (row-wise and unit scales, with and without fast
  accumulation).
* ``topk``: torch.topk over the vocabulary against two stages (per-chunk top 50, then the top 50).

The products with and without fast accumulation are now part of generation_steps.py's ``products_time``
check (the errors quoted in docs/BENCHMARKS.md are from this file's ``accum`` part as of commit 04e481f).
The fp8 cache's suffix-pass variants of the same session (V or K stored [D, L], q.k and p.v on the fp8
codes, the head dimension in halves) were measured with this file as of commit 04e481f
(``git show 04e481f:bench/fp8_attention_explore.py``) and dropped: all were slower than the engine's kernel.

    python bench/fp8_attention_explore.py --parts silu,lm_head,topk --out explore.json
"""

# ruff: noqa: B023
# (the timed closures are called inside the loop iteration that makes them)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import triton
import triton.language as tl

from bench.generation_steps import RESULTS, _graph_microseconds, report
from harness.generation.triton_decode import _silu_hidden


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parts", default="silu,lm_head,topk")
    args = parser.parse_args()
    parts = {"silu": explore_silu, "lm_head": explore_lm_head, "topk": explore_topk}
    for part in args.parts.split(","):
        try:
            parts[part]()
        except Exception as exc:
            report("part_failed", part=part, error=str(exc)[-500:])
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "machine": torch.cuda.get_device_name(0),
                                        "records": RESULTS.get("records", [])}, indent=1))  # fmt: skip


@triton.jit
def _silu_two_pass_kernel(GATE_UP, ROW_SCALE, COL_SCALE, OUT, OUT_SCALE, width, FP8_MAX: tl.constexpr, DTYPE: tl.constexpr,
                          BLOCK: tl.constexpr):  # fmt: skip
    """One program per row, two passes over it in chunks (the second reads the row back from L2)."""
    row = tl.program_id(0).to(tl.int64)
    top = tl.zeros([BLOCK], tl.float32)
    for start in range(0, width, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        hidden = _silu_hidden(GATE_UP, ROW_SCALE, COL_SCALE, row, cols, cols < width, width, True, DTYPE)
        top = tl.maximum(top, tl.abs(hidden.to(tl.float32)))
    scale = tl.maximum(tl.max(top, 0), 1e-12) / FP8_MAX
    for start in range(0, width, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        hidden = _silu_hidden(GATE_UP, ROW_SCALE, COL_SCALE, row, cols, cols < width, width, True, DTYPE)
        tl.store(OUT + row * width + cols, (hidden.to(tl.float32) / scale).to(OUT.dtype.element_ty), mask=cols < width)
    tl.store(OUT_SCALE + row, scale)


def explore_silu() -> None:
    from harness.generation.quantization import FP8_MAX, UnscaledProduct
    from harness.generation.triton_decode import (
        _quantize_chunks_kernel,
        _silu_chunk_kernel,
        _silu_times_up_kernel,
        silu_times_up,
        silu_times_up_fp8,
    )

    dev, bf = "cuda", torch.bfloat16
    for shape, rows, width in (("llama-3.2-3b", 256, 8192), ("qwen2.5-coder-1.5b", 512, 8960)):
        raw = (torch.randn(rows, 2 * width, device=dev) * 30).to(bf)
        product = UnscaledProduct(raw, torch.rand(rows, 1, device=dev) * 0.01, torch.rand(2 * width, device=dev) * 0.01, None)
        expect = silu_times_up_fp8(product, rows, bf)
        figures = {"bf16_silu_unquantized": _graph_microseconds(lambda: silu_times_up(product, rows, bf))}
        figures["fp8_now"] = _graph_microseconds(lambda: silu_times_up_fp8(product, rows, bf))
        out = torch.empty((rows, width), dtype=torch.float8_e4m3fn, device=dev)
        scale = torch.empty((rows, 1), dtype=torch.float32, device=dev)
        same = {}
        for warps in (8, 32):

            def one(warps=warps):
                _silu_times_up_kernel[(rows, 1)](raw, product.row_scale, product.col_scale, out, scale, width, SCALED=True,
                    QUANTIZE=True, FP8_MAX=FP8_MAX, DTYPE=tl.bfloat16, BLOCK=triton.next_power_of_2(width),
                    num_warps=warps)  # fmt: skip

            try:
                figures[f"fp8_now_warps{warps}"] = _graph_microseconds(one)
            except Exception as exc:
                figures[f"fp8_now_warps{warps}"] = str(exc)[-120:]
        for block in (512, 1024, 2048):
            chunks = triton.cdiv(width, block)
            hidden = torch.empty((rows, width), dtype=bf, device=dev)
            chunk_max = torch.empty((rows, chunks), dtype=torch.float32, device=dev)

            def split(block=block, chunks=chunks, hidden=hidden, chunk_max=chunk_max):
                _silu_chunk_kernel[(rows, chunks)](raw, product.row_scale, product.col_scale, hidden, chunk_max, width, chunks,
                                                   SCALED=True, DTYPE=tl.bfloat16, BLOCK=block, num_warps=4)  # fmt: skip
                _quantize_chunks_kernel[(rows, chunks)](hidden, chunk_max, out, scale, width, chunks, FP8_MAX=FP8_MAX,
                                                      CHUNKS_PAD=triton.next_power_of_2(chunks), BLOCK=block,
                                                      num_warps=4)  # fmt: skip

            figures[f"split_{block}"] = _graph_microseconds(split)
            split()
            same[f"split_{block}"] = bool(torch.equal(out.view(torch.uint8), expect.values[:rows].view(torch.uint8))) and bool(
                torch.equal(scale, expect.scale[:rows])
            )
            for warps in (4, 8):

                def two(block=block, warps=warps):
                    _silu_two_pass_kernel[(rows,)](raw, product.row_scale, product.col_scale, out, scale, width, FP8_MAX=FP8_MAX,
                                                   DTYPE=tl.bfloat16, BLOCK=block, num_warps=warps)  # fmt: skip

                figures[f"two_pass_{block}_w{warps}"] = _graph_microseconds(two)
                two()
                same[f"two_pass_{block}_w{warps}"] = bool(
                    torch.equal(out.view(torch.uint8), expect.values[:rows].view(torch.uint8))) and bool(
                    torch.equal(scale, expect.scale[:rows]))  # fmt: skip
        report("silu_us", shape=shape, rows=rows, width=width,
               us={k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}, identical_to_now=same)  # fmt: skip


def explore_lm_head() -> None:
    from harness.generation.quantization import Quantization, quantize_weight
    from harness.generation.triton_decode import fp8_rows

    dev, bf = "cuda", torch.bfloat16
    unit = torch.ones((), device=dev)
    for shape, rows, vocab, hidden in (("llama-3.2-3b", 256, 128256, 3072), ("qwen2.5-coder-1.5b", 512, 151936, 1536)):
        x = torch.randn(rows, hidden, device=dev, dtype=bf)
        weight = torch.randn(vocab, hidden, device=dev, dtype=bf) * 0.02
        codes, wscale = quantize_weight(weight, Quantization.FP8)
        xq = fp8_rows(x)
        exact = x.float() @ weight.float().t()
        figures, errors = {}, {}
        cases = {
            "bf16": lambda: torch.nn.functional.linear(x, weight),
            "fp8_rowwise": lambda: torch._scaled_mm(
                xq.values, codes.t(), scale_a=xq.scale, scale_b=wscale[None, :], out_dtype=bf
            ),
            "fp8_rowwise_fast": lambda: torch._scaled_mm(
                xq.values, codes.t(), scale_a=xq.scale, scale_b=wscale[None, :], out_dtype=bf, use_fast_accum=True
            ),
            "fp8_unit": lambda: torch._scaled_mm(xq.values, codes.t(), scale_a=unit, scale_b=unit, out_dtype=bf),
            "fp8_unit_fast": lambda: torch._scaled_mm(
                xq.values, codes.t(), scale_a=unit, scale_b=unit, out_dtype=bf, use_fast_accum=True
            ),
            "quantize_rows": lambda: fp8_rows(x),
        }
        for name, fn in cases.items():
            try:
                figures[name] = round(_graph_microseconds(fn), 1)
                if name.startswith("fp8_rowwise") or name == "bf16":
                    got = fn().float()[:rows]
                    errors[name] = round(((got - exact).norm() / exact.norm()).item(), 5)
            except Exception as exc:
                figures[name] = str(exc)[-160:]
        report("lm_head_us", shape=shape, rows=rows, us=figures, rel_error_vs_exact=errors)


def explore_topk() -> None:
    """torch.topk(50) over the vocabulary against two stages: the top 50 of each of C chunks, then the
    top 50 of those candidates (the same set of values)."""
    dev, bf = "cuda", torch.bfloat16
    for shape, rows, vocab in (("llama-3.2-3b", 256, 128256), ("qwen2.5-coder-1.5b", 512, 151936)):
        logits = torch.randn(rows, vocab, device=dev).to(bf)
        expect_values, expect_ids = torch.topk(logits, 50, dim=-1)
        figures = {"topk": round(_graph_microseconds(lambda: torch.topk(logits, 50, dim=-1)), 1)}
        agree = {}
        for chunks in (8, 16, 32, 64, 128):
            width = -(-vocab // chunks)
            padded = torch.full((rows, chunks * width), float("-inf"), device=dev, dtype=bf)
            padded[:, :vocab] = logits

            def two_stage(padded=padded, chunks=chunks, width=width):
                values, ids = torch.topk(padded.view(rows, chunks, width), 50, dim=-1)
                ids = ids + (torch.arange(chunks, device=dev) * width)[None, :, None]
                top, where = torch.topk(values.view(rows, -1), 50, dim=-1)
                return top, ids.view(rows, -1).gather(-1, where)

            figures[f"two_stage_{chunks}"] = round(_graph_microseconds(two_stage), 1)
            values, ids = two_stage()
            agree[f"two_stage_{chunks}"] = {
                "values_equal": bool(torch.equal(values, expect_values)),
                "ids_equal_share": (ids == expect_ids).float().mean().item(),
            }
        report("topk_us", shape=shape, rows=rows, us=figures, agreement=agree)


if __name__ == "__main__":
    main()
