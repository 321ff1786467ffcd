"""One decode step of a llama-family model (llama, qwen2, qwen3, mistral) written out with fused
projections, for the fast engine's CUDA graph, and a prompt prefill through the same layers.

The Hugging Face forward runs q, k and v (gate and up) as separate products and norms, rotary and
residual adds as chains of small kernels.  Here every layer runs one q/k/v product and one gate/up
product on the fused weights of ``quantization.fused_layers`` (quantized there for fp8/int8), and on
CUDA three Triton kernels (``triton_decode.py``) do residual add + RMSNorm, rotary + the K/V write,
and SiLU-times-up each in one pass.  Elsewhere the same steps run as torch operations in the order
the Hugging Face modules use, so on the CPU in float32 the step computes what the model's forward
computes (the tests compare greedy tokens with ``model.generate``).  The same layers prefill a batch of
prompts into the shared-prefix pool (``prefill``): causal attention within each prompt in place of the
decode attention, no logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from harness.generation.attention import decode_attention
from harness.generation.kv_cache import KVScales
from harness.generation.prefix_attention import PrefixPool, shared_prefix_attention
from harness.generation.quantization import (
    Fp8Rows,
    LayerWeights,
    Quantization,
    UnscaledProduct,
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
        slots = tokens.shape[0]
        lengths = write_index + 1
        destination = _Destination(keys, values, write_index, key_scales, value_scales)

        def attend(query: torch.Tensor, index: int, fp8_output: bool) -> torch.Tensor | Fp8Rows:
            attended = self._attend(
                query.view(slots, self.heads, 1, self.head_dim), index, keys, values, lengths, pool, kernel,
                key_scales, value_scales, fp8_output,
            )  # fmt: skip
            return attended if isinstance(attended, Fp8Rows) else attended.reshape(slots, -1)

        residual, delta = self._layers(tokens, positions, destination, attend, kernel)
        norm = self.final_norm
        if kernel == "triton" and self.fp8_between_kernels:
            from harness.generation import triton_decode

            assert isinstance(delta, UnscaledProduct)
            _, x = triton_decode.add_rms_norm_fp8(residual, delta, norm.weight, norm.variance_epsilon)
            head = self.lm_head.weights  # fp8 under --quantize fp8 (quantization.fused_layers)
            logits = fp8_scaled_product(x, head.weight, head.scale, slots, self.dtype)
            return logits if head.bias is None else logits + head.bias
        if kernel == "triton":
            from harness.generation import triton_decode

            assert not isinstance(delta, UnscaledProduct)
            _, normed = triton_decode.add_rms_norm(residual, delta, norm.weight, norm.variance_epsilon)
        else:
            assert not isinstance(delta, UnscaledProduct)
            normed = norm(residual + delta if delta is not None else residual)
        return self.lm_head(normed)

    def prefill(self, tokens: torch.Tensor, pool_index: torch.Tensor, pool: PrefixPool, kernel: str) -> None:
        """Write the K/V of a batch of prompts, tokens [B, W] (right-padded), into the pool: token t of row b
        at pool position pool_index[b W + t] (a padding token at a position no prompt uses).  The layers
        run as in a decode step, over all B W tokens at once, with causal attention within each row in
        place of the decode attention; no logits are computed."""
        batch, width = tokens.shape
        rows = batch * width
        positions = torch.arange(width, device=tokens.device).repeat(batch)
        destination = _Destination(
            [k[None] for k in pool.keys], [v[None] for v in pool.values], pool_index, shared_row=True
        )  # fmt: skip
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim

        def attend(query: torch.Tensor, index: int, fp8_output: bool) -> torch.Tensor | Fp8Rows:
            # Each row's keys and values back from the pool (a padding token's from its unused position:
            # causal attention never lets a real token see them).
            keys = pool.keys[index].transpose(0, 1).index_select(0, pool_index).view(batch, width, kv_heads, dim)
            values = pool.values[index].transpose(0, 1).index_select(0, pool_index).view(batch, width, kv_heads, dim)
            attended = F.scaled_dot_product_attention(
                query.view(batch, width, heads, dim).transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
                is_causal=True, scale=self.scale, enable_gqa=kv_heads != heads,
            )  # fmt: skip
            flat = attended.transpose(1, 2).reshape(rows, heads * dim)
            if fp8_output:
                from harness.generation import triton_decode

                return triton_decode.fp8_rows(flat)
            return flat

        self._layers(tokens.reshape(rows), positions, destination, attend, kernel)

    def _layers(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        destination: _Destination,
        attend: _Attend,
        kernel: str,
    ) -> tuple[torch.Tensor, torch.Tensor | UnscaledProduct | None]:
        """Every decoder layer over token rows [S]: their K/V written to ``destination``, their queries
        attended by ``attend``; returns the residual stream and the last layer's output still to be added
        to it (the final norm's inputs).  On CUDA the fused kernels; with fp8 products between them (the
        product's input quantized by the kernel before it, its raw sums scaled by the kernel after it)
        where the model allows."""
        fused = kernel == "triton"
        if fused:
            from harness.generation import triton_decode
        rows = tokens.shape[0]
        residual = self.embed(tokens)  # [S, hidden]
        cos, sin = self.rotary(residual[:, None], positions[:, None])  # [S, 1, D] each
        cos, sin = cos[:, 0], sin[:, 0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        if fused and self.fp8_between_kernels:
            delta_fp8: UnscaledProduct | None = None
            for index, layer in enumerate(self.layers):
                norm = self.input_norms[index]
                residual, normed = triton_decode.add_rms_norm_fp8(residual, delta_fp8, norm.weight, norm.variance_epsilon)
                query = triton_decode.rotary_and_write(
                    fp8_unscaled_product(normed, layer.qkv, self.unit), cos, sin, *destination.rows(index, rows),
                    heads, kv_heads, dim, *destination.scales(index),
                )  # fmt: skip
                attended = attend(query, index, True)
                assert isinstance(attended, Fp8Rows)
                out = fp8_unscaled_product(attended, layer.out, self.unit)
                norm = self.post_norms[index]
                residual, normed = triton_decode.add_rms_norm_fp8(residual, out, norm.weight, norm.variance_epsilon)
                hidden_rows = triton_decode.silu_times_up_fp8(
                    fp8_unscaled_product(normed, layer.gate_up, self.unit), rows, self.dtype
                )
                delta_fp8 = fp8_unscaled_product(hidden_rows, layer.down, self.unit)
            return residual, delta_fp8
        delta: torch.Tensor | None = None
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
                    qkv, cos, sin, *destination.rows(index, rows), heads, kv_heads, dim, *destination.scales(index)
                )
            else:
                assert destination.key_scales is None, "an fp8 cache is written by the Triton rotary kernel"
                query, key, value = qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
                query, key = query.view(rows, heads, dim), key.view(rows, kv_heads, dim)
                query_norm, key_norm = self.query_norms[index], self.key_norms[index]
                if query_norm is not None and key_norm is not None:
                    query, key = query_norm(query), key_norm(key)
                query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
                destination.put(index, key, value.view(rows, kv_heads, dim))
            attended = attend(query, index, False)
            assert isinstance(attended, torch.Tensor)
            attended = linear(attended, layer.out)
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
        return residual, delta

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


# A pass's attention: (queries [S, H, D], layer index, whether the out product takes fp8 rows) -> the
# attention output [S, H D], as those fp8 rows when asked.
_Attend = Callable[[torch.Tensor, int, bool], "torch.Tensor | Fp8Rows"]


@dataclass(frozen=True)
class _Destination:
    """Where a pass writes each layer's rotated keys and values: per layer [S, KVH, L, D], token s in row s
    at position write_index[s] (for a decode step, each slot's own cache row; fp8 with per-vector scales
    for an fp8 cache), or with ``shared_row`` one row [1, KVH, L, D] that every token writes into (a
    prefill into the pool)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    write_index: torch.Tensor
    key_scales: list[torch.Tensor] | None = None
    value_scales: list[torch.Tensor] | None = None
    shared_row: bool = False

    def rows(self, index: int, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``index``'s keys and values as one row per token (the shared row repeated, not copied) and
        the write index: the rotary kernel's arguments."""
        keys, values = self.keys[index], self.values[index]
        if self.shared_row:
            keys, values = keys.expand(count, -1, -1, -1), values.expand(count, -1, -1, -1)
        return keys, values, self.write_index

    def scales(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.key_scales is None or self.value_scales is None:
            return None, None
        return self.key_scales[index], self.value_scales[index]

    def put(self, index: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Write rotated keys and values [S, KVH, D] by torch indexing."""
        keys, values = self.keys[index], self.values[index]
        if self.shared_row:
            keys[0][:, self.write_index] = key.transpose(0, 1)
            values[0][:, self.write_index] = value.transpose(0, 1)
        else:
            keys[self.slot_rows, :, self.write_index] = key
            values[self.slot_rows, :, self.write_index] = value

    @cached_property
    def slot_rows(self) -> torch.Tensor:
        """0..S-1, made once a pass (not once a layer), and only by a pass that writes by torch indexing."""
        return torch.arange(self.write_index.shape[0], device=self.write_index.device)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as the Hugging Face models apply it (rotate-half), x [S, heads, D], cos/sin [S, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]
