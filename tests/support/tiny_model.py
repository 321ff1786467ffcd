"""Tiny causal LMs built offline (config + in-process tokenizer), saved to a directory like a
downloaded checkpoint, for CPU tests of the generation engines."""

from __future__ import annotations

import os
import string
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

torch.set_num_threads(1)

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def char_tokenizer(add_bos: bool) -> PreTrainedTokenizerFast:
    """One token per printable character; deterministic, no training."""
    vocab = {token: i for i, token in enumerate(SPECIALS + list(string.printable))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    if add_bos:
        from tokenizers import processors

        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )


def build_tiny_model(directory: Path, family: str = "qwen2", seed: int = 0, weight_scale: float = 12.0) -> Path:
    """Save a ~100k-parameter model of ``family`` (qwen2: no BOS, tied embeddings; llama: BOS, untied;
    qwen3: query/key norms; mistral: no sliding window) with its tokenizer into ``directory``.  Weights are
    scaled up so greedy paths vary instead of repeating one token."""
    tokenizer = char_tokenizer(add_bos=family == "llama")
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if family == "qwen2":
        config = Qwen2Config(**common, bos_token_id=None, tie_word_embeddings=True)
    elif family == "llama":
        config = LlamaConfig(**common, bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    elif family == "qwen3":
        config = Qwen3Config(**common, head_dim=16, bos_token_id=None, tie_word_embeddings=True)
    elif family == "mistral":
        config = MistralConfig(**common, sliding_window=None, bos_token_id=None, tie_word_embeddings=False)
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa").eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.mul_(weight_scale)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
