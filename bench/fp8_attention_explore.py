"""Exploration (session 8) of what the fp8 decode step still pays, on one GPU; the figures and what
came of each are in docs/BENCHMARKS.md (session 8) and docs/bench/fp8_explore_h200_s8.json.

* ``suffix``: the fp8 cache's suffix pass alone, one layer at the 3B shape mid-run (256 slots, 8 KV
  heads of 3 queries, suffixes 1-512), by launch choice: the kernel as the engine has it, with K kept
  position-major or stored [D, L], and with the head dimension taken in two halves (fewer live values);
  bf16 for reference.  (Round 1 also tried V stored [D, L] and q.k / p.v on the fp8 tensor cores: at
  16 rows Triton widens fp8 operands to fp16 anyway, and every one was slower.)
* ``silu``: the fp8 SiLU kernel, one program per row against two chunked passes and a two-pass loop.
* ``lm_head``: the lm head in bf16 against fp8 (row-wise and unit scales, with and without fast
  accumulation).
* ``accum``: each decode product in fp8 with and without fast accumulation, with its error.
* ``topk``: torch.topk over the vocabulary against two stages (per-chunk top 50, then the top 50).

    python bench/fp8_attention_explore.py --parts suffix,silu,lm_head,accum,topk --out explore.json
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

from bench.generation_steps import _graph_microseconds

RECORDS: list = []


def report(name, **values):
    RECORDS.append({"check": name, **values})
    print(json.dumps({"check": name, **values}), flush=True)


@triton.jit
def _explore_suffix(
    Q, K, V, K_SCALE, V_SCALE, LENGTHS, OUT,
    q_slot, q_head, k_slot, k_head, k_pos, v_slot, v_head, v_pos, v_dim, ks_slot, ks_head, vs_slot, vs_head,
    o_slot, o_head, scale,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
    FP8: tl.constexpr, V_T: tl.constexpr, QK8: tl.constexpr, PV8: tl.constexpr, K_T: tl.constexpr = False,
    TRANS_FIRST: tl.constexpr = False,
):  # fmt: skip
    slot = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    member = tl.arange(0, GROUP_PAD)
    dims = tl.arange(0, HEAD_DIM)
    offsets = tl.arange(0, BLOCK)
    heads = kv_head * GROUP + member
    in_group = member < GROUP
    q = tl.load(Q + slot * q_slot + heads[:, None] * q_head + dims[None, :], mask=in_group[:, None], other=0.0)
    q_scale = tl.full([GROUP_PAD], 1.0, tl.float32) * scale
    if QK8:
        top = tl.max(tl.abs(q.to(tl.float32)), 1)
        q_scale = tl.maximum(top, 1e-12) / 448.0
        q = (q.to(tl.float32) / q_scale[:, None]).to(tl.float8e4nv)
        q_scale = q_scale * scale
    elif FP8:
        q = q.to(tl.float16)
    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    running_sum = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
    length = tl.load(LENGTHS + slot).to(tl.int32)
    k_base = K + slot * k_slot + kv_head * k_head
    v_base = V + slot * v_slot + kv_head * v_head
    for block_start in range(0, length, BLOCK):
        positions = block_start + offsets
        valid = positions < length
        if K_T:  # K stored [D, L]: loaded as the product's operand, no transpose
            kt = tl.load(k_base + dims[:, None] * k_pos + positions[None, :], mask=valid[None, :], other=0.0)
        else:
            k = tl.load(k_base + positions[:, None] * k_pos + dims[None, :], mask=valid[:, None], other=0.0)
            kt = tl.trans(k)
        if V_T:
            v = tl.trans(tl.load(v_base + dims[:, None] * v_dim + positions[None, :], mask=valid[None, :], other=0.0))
        else:
            v = tl.load(v_base + positions[:, None] * v_pos + dims[None, :], mask=valid[:, None], other=0.0)
        if FP8:
            ks = tl.load(K_SCALE + slot * ks_slot + kv_head * ks_head + positions, mask=valid, other=0.0)
            vs = tl.load(V_SCALE + slot * vs_slot + kv_head * vs_head + positions, mask=valid, other=0.0)
            if QK8:
                scores = tl.dot(q, kt) * q_scale[:, None] * ks[None, :]
            elif K_T or TRANS_FIRST:
                scores = tl.dot(q, kt.to(tl.float16)) * scale * ks[None, :]
            else:
                scores = tl.dot(q, tl.trans(k.to(tl.float16))) * scale * ks[None, :]
        else:
            scores = tl.dot(q, kt) * scale
        scores = tl.where(valid[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        rescale = tl.exp(running_max - new_max)
        weights = tl.exp(scores - new_max[:, None])
        running_sum = running_sum * rescale + tl.sum(weights, 1)
        if FP8:
            weights = weights * vs[None, :]
            if PV8:
                w_scale = tl.maximum(tl.max(weights, 1), 1e-30) / 448.0
                part = tl.dot((weights / w_scale[:, None]).to(tl.float8e4nv), v) * w_scale[:, None]
            else:
                part = tl.dot(weights.to(tl.float16), v.to(tl.float16))
        else:
            part = tl.dot(weights.to(v.dtype), v)
        acc = acc * rescale[:, None] + part
        running_max = new_max
    out = acc / running_sum[:, None]
    tl.store(OUT + slot * o_slot + heads[:, None] * o_head + dims[None, :], out.to(OUT.dtype.element_ty), mask=in_group[:, None])


@triton.jit
def _explore_suffix_halves(
    Q, K, V, K_SCALE, V_SCALE, LENGTHS, OUT,
    q_slot, q_head, k_slot, k_head, k_pos, v_slot, v_head, v_pos, ks_slot, ks_head, vs_slot, vs_head,
    o_slot, o_head, scale,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HALF: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """fp8 suffix with the head dimension in two halves: fewer values live at once (registers)."""
    slot = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    member = tl.arange(0, GROUP_PAD)
    dims = tl.arange(0, HALF)
    offsets = tl.arange(0, BLOCK)
    heads = kv_head * GROUP + member
    in_group = member < GROUP
    q_ptr = Q + slot * q_slot + heads[:, None] * q_head + dims[None, :]
    q_lo = tl.load(q_ptr, mask=in_group[:, None], other=0.0).to(tl.float16)
    q_hi = tl.load(q_ptr + HALF, mask=in_group[:, None], other=0.0).to(tl.float16)
    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    running_sum = tl.zeros([GROUP_PAD], tl.float32)
    acc_lo = tl.zeros([GROUP_PAD, HALF], tl.float32)
    acc_hi = tl.zeros([GROUP_PAD, HALF], tl.float32)
    length = tl.load(LENGTHS + slot).to(tl.int32)
    k_base = K + slot * k_slot + kv_head * k_head
    v_base = V + slot * v_slot + kv_head * v_head
    for block_start in range(0, length, BLOCK):
        positions = block_start + offsets
        valid = positions < length
        k_ptr = k_base + positions[:, None] * k_pos + dims[None, :]
        k_lo = tl.load(k_ptr, mask=valid[:, None], other=0.0)
        scores = tl.dot(q_lo, tl.trans(k_lo.to(tl.float16)))
        k_hi = tl.load(k_ptr + HALF, mask=valid[:, None], other=0.0)
        scores = tl.dot(q_hi, tl.trans(k_hi.to(tl.float16)), scores)
        ks = tl.load(K_SCALE + slot * ks_slot + kv_head * ks_head + positions, mask=valid, other=0.0)
        vs = tl.load(V_SCALE + slot * vs_slot + kv_head * vs_head + positions, mask=valid, other=0.0)
        scores = scores * scale * ks[None, :]
        scores = tl.where(valid[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        rescale = tl.exp(running_max - new_max)
        weights = tl.exp(scores - new_max[:, None])
        running_sum = running_sum * rescale + tl.sum(weights, 1)
        weights = (weights * vs[None, :]).to(tl.float16)
        v_ptr = v_base + positions[:, None] * v_pos + dims[None, :]
        v_lo = tl.load(v_ptr, mask=valid[:, None], other=0.0)
        acc_lo = tl.dot(weights, v_lo.to(tl.float16), acc_lo * rescale[:, None])
        v_hi = tl.load(v_ptr + HALF, mask=valid[:, None], other=0.0)
        acc_hi = tl.dot(weights, v_hi.to(tl.float16), acc_hi * rescale[:, None])
        running_max = new_max
    out_ptr = OUT + slot * o_slot + heads[:, None] * o_head + dims[None, :]
    tl.store(out_ptr, (acc_lo / running_sum[:, None]).to(OUT.dtype.element_ty), mask=in_group[:, None])
    tl.store(out_ptr + HALF, (acc_hi / running_sum[:, None]).to(OUT.dtype.element_ty), mask=in_group[:, None])


# Round 1: V stored [D, L] (V_T), q.k in fp8 (QK8), p.v in fp8 (PV8); round 2: K stored [D, L] (K_T), the
# transpose taken before the widening (TRANS_FIRST).  All measured slower than "fp8" (docs/BENCHMARKS.md).
VARIANTS = {
    "bf16": dict(FP8=False, V_T=False, QK8=False, PV8=False),
    "fp8": dict(FP8=True, V_T=False, QK8=False, PV8=False),
    "fp8_qk8": dict(FP8=True, V_T=False, QK8=True, PV8=False),
    "fp8_vt": dict(FP8=True, V_T=True, QK8=False, PV8=False),
    "fp8_vt_qk8": dict(FP8=True, V_T=True, QK8=True, PV8=False),
    "fp8_vt_pv8": dict(FP8=True, V_T=True, QK8=False, PV8=True),
    "fp8_vt_qk8_pv8": dict(FP8=True, V_T=True, QK8=True, PV8=True),
    "fp8_kt": dict(FP8=True, V_T=False, QK8=False, PV8=False, K_T=True),
    "fp8_trans_first": dict(FP8=True, V_T=False, QK8=False, PV8=False, TRANS_FIRST=True),
}
CONFIGS = [(b, 4, s) for b in (64, 128, 256) for s in (2, 3)] + [(b, 8, 2) for b in (64, 128, 256)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--asm", type=Path, help="folder for the TTGIR/SASS of the best config of each variant")
    parser.add_argument("--parts", default="suffix,silu,lm_head,accum")
    args = parser.parse_args()
    parts = {
        "suffix": lambda: explore_suffix(args), "silu": explore_silu, "lm_head": explore_lm_head, "accum": explore_accum,
        "topk": explore_topk,
    }  # fmt: skip
    for part in args.parts.split(","):
        try:
            parts[part]()
        except Exception as exc:
            report("part_failed", part=part, error=str(exc)[-500:])
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "machine": torch.cuda.get_device_name(0),
                                        "records": RECORDS}, indent=1))  # fmt: skip


def explore_suffix(args) -> None:
    from harness.generation.kv_cache import dequantize_vectors, quantize_vectors

    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    slots, heads, kv_heads, dim, capacity = 256, 24, 8, 128, 528
    sk = torch.randn(slots, kv_heads, capacity, dim, device=dev, dtype=bf)
    sv = torch.randn_like(sk)
    lengths = torch.randint(1, 513, (slots,), device=dev)
    q = torch.randn(slots, heads, 1, dim, device=dev, dtype=bf)
    (qk, ks), (qv, vs) = quantize_vectors(sk), quantize_vectors(sv)
    qvt = qv.transpose(2, 3).contiguous()  # [S, KVH, D, L]
    qkt = qk.transpose(2, 3).contiguous()
    suffix_tokens = int(lengths.sum())
    # Reference: attention over the widened fp8 values, in float32.
    wk, wv = dequantize_vectors(qk, ks, torch.float32), dequantize_vectors(qv, vs, torch.float32)
    mask = torch.arange(capacity, device=dev)[None, :] < lengths[:, None]  # [S, L]
    qf = q.float().view(slots, kv_heads, heads // kv_heads, dim)
    scores = torch.einsum("sgrd,sgld->sgrl", qf, wk) * dim**-0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    expect = torch.einsum("sgrl,sgld->sgrd", scores.softmax(-1), wv).reshape(slots, heads, dim)
    del wk, wv, scores
    best = {}
    for name, flags in VARIANTS.items():
        fp8 = flags["FP8"]
        keys = (qkt if flags.get("K_T") else qk) if fp8 else sk
        values = (qvt if flags["V_T"] else qv) if fp8 else sv
        for block, warps, stages in CONFIGS:
            out = torch.empty((slots, heads, dim), dtype=bf, device=dev)
            v_pos, v_dim = (1, values.stride(2)) if flags["V_T"] else (values.stride(2), 1)

            def launch(
                out=out, keys=keys, values=values, v_pos=v_pos, v_dim=v_dim, block=block, warps=warps, stages=stages, flags=flags
            ):
                return _explore_suffix[(slots, kv_heads)](
                    q, keys, values, ks, vs, lengths, out,
                    q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
                    values.stride(0), values.stride(1), v_pos, v_dim, ks.stride(0), ks.stride(1), vs.stride(0), vs.stride(1),
                    out.stride(0), out.stride(1), dim**-0.5,
                    GROUP=heads // kv_heads, GROUP_PAD=16, HEAD_DIM=dim, BLOCK=block, num_warps=warps, num_stages=stages,
                    **flags,
                )  # fmt: skip

            record = {"variant": name, "config": [block, warps, stages]}
            try:
                compiled = launch()
                torch.cuda.synchronize()
                micros = _graph_microseconds(launch)
                per_token = kv_heads * dim * 2 * keys.element_size() + (8 * kv_heads if fp8 else 0)
                gbytes = suffix_tokens * per_token / 1e9
                err = ((out.float() - expect).norm() / expect.norm()).item()
                record.update(
                    us=round(micros, 1), tb_per_s=round(gbytes / micros * 1e3, 2), rel_error_vs_widened=round(err, 5),
                    regs=getattr(compiled, "n_regs", None), spills=getattr(compiled, "n_spills", None),
                    shared=getattr(getattr(compiled, "metadata", None), "shared", None),
                )  # fmt: skip
                if name not in best or record["us"] < best[name][0]["us"]:
                    best[name] = (record, compiled)
            except Exception as exc:
                record["error"] = str(exc)[-300:]
            report("suffix_variant", **record)
    for block, warps, stages in CONFIGS:
        out = torch.empty((slots, heads, dim), dtype=bf, device=dev)

        def halves(out=out, block=block, warps=warps, stages=stages):
            return _explore_suffix_halves[(slots, kv_heads)](
                q, qk, qv, ks, vs, lengths, out,
                q.stride(0), q.stride(1), qk.stride(0), qk.stride(1), qk.stride(2),
                qv.stride(0), qv.stride(1), qv.stride(2), ks.stride(0), ks.stride(1), vs.stride(0), vs.stride(1),
                out.stride(0), out.stride(1), dim**-0.5,
                GROUP=heads // kv_heads, GROUP_PAD=16, HALF=dim // 2, BLOCK=block, num_warps=warps, num_stages=stages,
            )  # fmt: skip

        record = {"variant": "fp8_halves", "config": [block, warps, stages]}
        try:
            compiled = halves()
            torch.cuda.synchronize()
            micros = _graph_microseconds(halves)
            gbytes = suffix_tokens * (kv_heads * dim * 2 + 8 * kv_heads) / 1e9
            err = ((out.float() - expect).norm() / expect.norm()).item()
            record.update(
                us=round(micros, 1), tb_per_s=round(gbytes / micros * 1e3, 2), rel_error_vs_widened=round(err, 5),
                regs=getattr(compiled, "n_regs", None), spills=getattr(compiled, "n_spills", None),
                shared=getattr(getattr(compiled, "metadata", None), "shared", None),
            )  # fmt: skip
            if "fp8_halves" not in best or record["us"] < best["fp8_halves"][0]["us"]:
                best["fp8_halves"] = (record, compiled)
        except Exception as exc:
            record["error"] = str(exc)[-300:]
        report("suffix_variant", **record)
    for name, (record, compiled) in best.items():
        report("suffix_best", **record)
        if args.asm:
            args.asm.mkdir(parents=True, exist_ok=True)
            for kind in ("ttgir", "sass"):
                try:
                    text = compiled.asm[kind]
                    (args.asm / f"{name}.{kind}").write_text(text if isinstance(text, str) else text.decode())
                except Exception as exc:
                    report("asm_failed", variant=name, kind=kind, error=str(exc)[-200:])


@triton.jit
def _silu_chunk_kernel(GATE_UP, ROW_SCALE, COL_SCALE, HIDDEN, CHUNK_MAX, width, chunks, DTYPE: tl.constexpr, BLOCK: tl.constexpr):
    """Pass 1 of the split SiLU: one chunk of a row, hidden in DTYPE and the chunk's largest magnitude."""
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    cols = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    row_scale = tl.load(ROW_SCALE + row)
    gate = tl.load(GATE_UP + row * 2 * width + cols, mask=inside, other=0.0)
    up = tl.load(GATE_UP + row * 2 * width + width + cols, mask=inside, other=0.0)
    gate = (gate.to(tl.float32) * row_scale * tl.load(COL_SCALE + cols, mask=inside, other=0.0)).to(DTYPE)
    up = (up.to(tl.float32) * row_scale * tl.load(COL_SCALE + width + cols, mask=inside, other=0.0)).to(DTYPE)
    gate = gate.to(tl.float32)
    hidden = (gate / (1.0 + tl.exp(-gate))).to(DTYPE) * up
    tl.store(HIDDEN + row * width + cols, hidden, mask=inside)
    tl.store(CHUNK_MAX + row * chunks + chunk, tl.max(tl.abs(hidden.to(tl.float32)), 0))


@triton.jit
def _silu_quantize_kernel(HIDDEN, CHUNK_MAX, OUT, OUT_SCALE, width, chunks, FP8_MAX: tl.constexpr, CHUNKS_PAD: tl.constexpr,
                          BLOCK: tl.constexpr):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    which = tl.arange(0, CHUNKS_PAD)
    top = tl.max(tl.load(CHUNK_MAX + row * chunks + which, mask=which < chunks, other=0.0), 0)
    scale = tl.maximum(top, 1e-12) / FP8_MAX
    cols = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    hidden = tl.load(HIDDEN + row * width + cols, mask=inside, other=0.0).to(tl.float32)
    tl.store(OUT + row * width + cols, (hidden / scale).to(OUT.dtype.element_ty), mask=inside)
    if chunk == 0:
        tl.store(OUT_SCALE + row, scale)


@triton.jit
def _silu_two_pass_kernel(GATE_UP, ROW_SCALE, COL_SCALE, OUT, OUT_SCALE, width, FP8_MAX: tl.constexpr, DTYPE: tl.constexpr,
                          BLOCK: tl.constexpr):  # fmt: skip
    """One program per row, two passes over it in chunks (the second reads the row back from L2)."""
    row = tl.program_id(0).to(tl.int64)
    row_scale = tl.load(ROW_SCALE + row)
    top = tl.zeros([BLOCK], tl.float32)
    for start in range(0, width, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < width
        gate = tl.load(GATE_UP + row * 2 * width + cols, mask=inside, other=0.0)
        up = tl.load(GATE_UP + row * 2 * width + width + cols, mask=inside, other=0.0)
        gate = (gate.to(tl.float32) * row_scale * tl.load(COL_SCALE + cols, mask=inside, other=0.0)).to(DTYPE)
        up = (up.to(tl.float32) * row_scale * tl.load(COL_SCALE + width + cols, mask=inside, other=0.0)).to(DTYPE)
        gate = gate.to(tl.float32)
        hidden = (gate / (1.0 + tl.exp(-gate))).to(DTYPE) * up
        top = tl.maximum(top, tl.abs(hidden.to(tl.float32)))
    scale = tl.maximum(tl.max(top, 0), 1e-12) / FP8_MAX
    for start in range(0, width, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < width
        gate = tl.load(GATE_UP + row * 2 * width + cols, mask=inside, other=0.0)
        up = tl.load(GATE_UP + row * 2 * width + width + cols, mask=inside, other=0.0)
        gate = (gate.to(tl.float32) * row_scale * tl.load(COL_SCALE + cols, mask=inside, other=0.0)).to(DTYPE)
        up = (up.to(tl.float32) * row_scale * tl.load(COL_SCALE + width + cols, mask=inside, other=0.0)).to(DTYPE)
        gate = gate.to(tl.float32)
        hidden = (gate / (1.0 + tl.exp(-gate))).to(DTYPE) * up
        tl.store(OUT + row * width + cols, (hidden.to(tl.float32) / scale).to(OUT.dtype.element_ty), mask=inside)
    tl.store(OUT_SCALE + row, scale)


def explore_silu() -> None:
    from harness.generation.quantization import FP8_MAX, UnscaledProduct
    from harness.generation.triton_decode import _silu_times_up_kernel, silu_times_up, silu_times_up_fp8

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
                                                   DTYPE=tl.bfloat16, BLOCK=block, num_warps=4)  # fmt: skip
                _silu_quantize_kernel[(rows, chunks)](hidden, chunk_max, out, scale, width, chunks, FP8_MAX=FP8_MAX,
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


def explore_accum() -> None:
    """The fp8 products (scalar-1 tensor-wise) with and without fast accumulation."""
    from harness.generation.quantization import Quantization, quantize_weight
    from harness.generation.triton_decode import fp8_rows

    dev, bf = "cuda", torch.bfloat16
    unit = torch.ones((), device=dev)
    shapes = {
        "llama-3.2-3b": {"qkv": (5120, 3072), "out": (3072, 3072), "gate_up": (16384, 3072), "down": (3072, 8192)},
        "qwen2.5-coder-1.5b": {"qkv": (2048, 1536), "out": (1536, 1536), "gate_up": (17920, 1536), "down": (1536, 8960)},
    }
    for shape, products in shapes.items():
        for rows in (256, 512):
            figures = {}
            for name, (n, k) in products.items():
                x = torch.randn(rows, k, device=dev, dtype=bf)
                weight = torch.randn(n, k, device=dev, dtype=bf) * 0.02
                codes, _ = quantize_weight(weight, Quantization.FP8)
                xq = fp8_rows(x)
                exact = (xq.values.float() @ codes.float().t())[:rows]
                entry = {}
                for fast in (False, True):

                    def fn(fast=fast, xq=xq, codes=codes):
                        return torch._scaled_mm(
                            xq.values, codes.t(), scale_a=unit, scale_b=unit, out_dtype=bf, use_fast_accum=fast
                        )

                    got = fn().float()[:rows]
                    entry["fast" if fast else "exact"] = {
                        "us": round(_graph_microseconds(fn), 1),
                        "rel_error_of_codes_product": round(((got - exact).norm() / exact.norm()).item(), 6),
                    }
                figures[name] = entry
            totals = {kind: round(sum(f[kind]["us"] for f in figures.values()), 1) for kind in ("exact", "fast")}
            report("fast_accum_us", shape=shape, rows=rows, per_layer=totals, products=figures)


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
