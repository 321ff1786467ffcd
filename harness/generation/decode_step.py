"""One decode step of a llama-family model (llama, qwen2, qwen3, mistral) written out with fused
projections, for the fast engine's CUDA graph.

The Hugging Face forward runs q, k and v (gate and up) as separate products and norms, rotary and
residual adds as chains of small kernels.  Here every layer runs one q/k/v product and one gate/up
product on the fused weights of ``quantization.fused_layers`` (quantized there for fp8/int8), and on
CUDA three Triton kernels (``triton_decode.py``) do residual add + RMSNorm, rotary + the K/V write,
and SiLU-times-up each in one pass.  Elsewhere the same steps run as torch operations in the order
the Hugging Face modules use, so on the CPU in float32 the step computes what the model's forward
computes (the tests compare greedy tokens with ``model.generate``).  Prefill still runs the model's
own forward.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.generation.attention import decode_attention
from harness.generation.kv_cache import KVScales
from harness.generation.prefix_attention import PrefixPool, shared_prefix_attention
from harness.generation.quantization import (
    Fp8Rows,
    LayerWeights,
    Quantization,
    fp8_scaled_product,
    fp8_unscaled_product,
    fused_layers,
    linear,
)


class DecodeStep:
    def __init__(self, model: Any, quantization: Quantization = Quantization.NONE):
        config = model.config
        inner = model.model
        self.layers: list[LayerWeights] = fused_layers(model, quantization)
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.final_norm = inner.norm
        self.lm_head = model.lm_head
        self.input_norms = [layer.input_layernorm for layer in inner.layers]
        self.post_norms = [layer.post_attention_layernorm for layer in inner.layers]
        first = inner.layers[0].self_attn
        self.query_norms = [getattr(layer.self_attn, "q_norm", None) for layer in inner.layers]
        self.key_norms = [getattr(layer.self_attn, "k_norm", None) for layer in inner.layers]
        self.act = inner.layers[0].mlp.act_fn
        self.silu = getattr(config, "hidden_act", "silu") == "silu"
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = first.head_dim
        self.scale = first.scaling
        self.dtype = next(model.parameters()).dtype
        # fp8 products between the fused kernels (triton_decode.py): where every projection but q/k/v is
        # without bias, and q/k/v's output goes straight to the rotary kernel.
        self.fp8_between_kernels = (
            quantization is Quantization.FP8
            and self.silu
            and all(norm is None for norm in self.query_norms)
            and all(part.bias is None for layer in self.layers for part in (layer.out, layer.gate_up, layer.down))
        )
        device = next(model.parameters()).device
        self.unit = torch.ones((), dtype=torch.float32, device=device)

    def logits(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        write_index: torch.Tensor,
        pool: PrefixPool | None,
        kernel: str,
        key_scales: list[torch.Tensor] | None = None,
        value_scales: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """tokens/positions/write_index [S]; keys/values per layer [S, KVH, L, D] (written at
        ``write_index``; fp8 with key_scales/value_scales per layer [S, KVH, L] for an fp8 cache, which
        needs the pool and the Triton kernels); returns the next-token logits [S, V] in the model's dtype."""
        scaled = key_scales is not None and value_scales is not None
        assert not scaled or (pool is not None and kernel == "triton"), "an fp8 cache needs the shared prefix and Triton"
        fused = kernel == "triton"
        if fused:
            from harness.generation import triton_decode
        slots = tokens.shape[0]
        residual = self.embed(tokens)  # [S, hidden]
        cos, sin = self.rotary(residual[:, None], positions[:, None])  # [S, 1, D] each
        cos, sin = cos[:, 0], sin[:, 0]
        lengths = write_index + 1
        rows = torch.arange(slots, device=tokens.device)
        delta: torch.Tensor | None = None
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        if fused and self.fp8_between_kernels:
            return self._fp8_logits(
                tokens, residual, cos, sin, keys, values, write_index, lengths, pool, key_scales, value_scales
            )
        for index, layer in enumerate(self.layers):
            norm = self.input_norms[index]
            if fused:
                residual, x = triton_decode.add_rms_norm(residual, delta, norm.weight, norm.variance_epsilon)
            else:
                if delta is not None:
                    residual = residual + delta
                x = norm(residual)
            qkv = linear(x, layer.qkv)  # [S, (H + 2 KVH) D]
            if fused and self.query_norms[index] is None:
                query = triton_decode.rotary_and_write(
                    qkv, cos, sin, keys[index], values[index], write_index, heads, kv_heads, dim,
                    key_scales[index] if key_scales is not None else None,
                    value_scales[index] if value_scales is not None else None,
                )  # fmt: skip
            else:
                assert not scaled, "an fp8 cache is written by the Triton rotary kernel"
                query, key, value = qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
                query, key = query.view(slots, heads, dim), key.view(slots, kv_heads, dim)
                query_norm, key_norm = self.query_norms[index], self.key_norms[index]
                if query_norm is not None and key_norm is not None:
                    query, key = query_norm(query), key_norm(key)
                query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
                keys[index][rows, :, write_index] = key
                values[index][rows, :, write_index] = value.view(slots, kv_heads, dim)
            query = query.view(slots, heads, 1, dim)
            attended = self._attend(query, index, keys, values, lengths, pool, kernel, key_scales, value_scales)
            assert isinstance(attended, torch.Tensor)
            attended = linear(attended.reshape(slots, heads * dim), layer.out)
            norm = self.post_norms[index]
            if fused:
                residual, x = triton_decode.add_rms_norm(residual, attended, norm.weight, norm.variance_epsilon)
            else:
                residual = residual + attended
                x = norm(residual)
            gate_up = linear(x, layer.gate_up)
            if fused and self.silu:
                hidden = triton_decode.silu_times_up(gate_up)
            else:
                gate, up = gate_up.chunk(2, dim=-1)
                hidden = self.act(gate) * up
            delta = linear(hidden, layer.down)
        norm = self.final_norm
        if fused:
            _, x = triton_decode.add_rms_norm(residual, delta, norm.weight, norm.variance_epsilon)
        else:
            x = norm(residual + delta if delta is not None else residual)
        return self.lm_head(x)

    def _attend(
        self,
        query: torch.Tensor,
        index: int,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        lengths: torch.Tensor,
        pool: PrefixPool | None,
        kernel: str,
        key_scales: list[torch.Tensor] | None,
        value_scales: list[torch.Tensor] | None,
        fp8_output: bool = False,
    ) -> torch.Tensor | Fp8Rows:
        """Layer ``index``'s decode attention over the slots' caches (with the shared prefix where there is a
        pool); with ``fp8_output`` (Triton) as the out product's fp8 input rows, which the shared-prefix
        kernels' merge pass writes itself."""
        if pool is not None:
            layer_scales = KVScales(key_scales[index], value_scales[index]) if key_scales and value_scales else None
            return shared_prefix_attention(
                query, keys[index], values[index], lengths, pool, index, self.scale, kernel, layer_scales, fp8_output
            )
        attended = decode_attention(query, keys[index], values[index], lengths, self.scale, kernel)
        if fp8_output:
            from harness.generation import triton_decode

            return triton_decode.fp8_rows(attended.reshape(attended.shape[0], -1))
        return attended

    def _fp8_logits(
        self,
        tokens: torch.Tensor,
        residual: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        write_index: torch.Tensor,
        lengths: torch.Tensor,
        pool: PrefixPool | None,
        key_scales: list[torch.Tensor] | None,
        value_scales: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        """The fused step with fp8 products: each product's input comes quantized from the kernel before
        it, and its raw sums are scaled by the kernel after it (triton_decode.py)."""
        from harness.generation import triton_decode

        slots = tokens.shape[0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        delta = None
        for index, layer in enumerate(self.layers):
            norm = self.input_norms[index]
            residual, x = triton_decode.add_rms_norm_fp8(residual, delta, norm.weight, norm.variance_epsilon)
            query = triton_decode.rotary_and_write(
                fp8_unscaled_product(x, layer.qkv, self.unit), cos, sin, keys[index], values[index], write_index,
                heads, kv_heads, dim,
                key_scales[index] if key_scales is not None else None,
                value_scales[index] if value_scales is not None else None,
            )  # fmt: skip
            query = query.view(slots, heads, 1, dim)
            rows = self._attend(query, index, keys, values, lengths, pool, "triton", key_scales, value_scales, fp8_output=True)
            assert isinstance(rows, Fp8Rows)
            out = fp8_unscaled_product(rows, layer.out, self.unit)
            norm = self.post_norms[index]
            residual, x = triton_decode.add_rms_norm_fp8(residual, out, norm.weight, norm.variance_epsilon)
            hidden = triton_decode.silu_times_up_fp8(fp8_unscaled_product(x, layer.gate_up, self.unit), slots, self.dtype)
            delta = fp8_unscaled_product(hidden, layer.down, self.unit)
        norm = self.final_norm
        _, x = triton_decode.add_rms_norm_fp8(residual, delta, norm.weight, norm.variance_epsilon)
        head = self.lm_head.weights  # fp8 under --quantize fp8 (quantization.fused_layers)
        logits = fp8_scaled_product(x, head.weight, head.scale, slots, self.dtype)
        return logits if head.bias is None else logits + head.bias


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as the Hugging Face models apply it (rotate-half), x [S, heads, D], cos/sin [S, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]
