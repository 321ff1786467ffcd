"""A byte-level tokenizer built in-process (no download): the 256 bytes, optionally byte-pair merges
learnt from the training texts, and two special tokens, wrapped as a transformers
``PreTrainedTokenizerFast`` so that ``save_pretrained``/``AutoTokenizer`` treat it like any other.

Every text round-trips exactly (bytes in, the same bytes out).  The end-of-sequence token is
``<|endoftext|>``, which is also one of TACO's EOF strings: decoded with special tokens skipped it
leaves no text, as generation decodes.  No BOS token is added, so a prompt's tokens are the same
whether it is tokenized alone (as generation does) or before its completion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN)
BYTES = 256
# The vocabulary of the bytes alone, with the special tokens: a vocab_size at or below it learns no merges.
BYTE_VOCAB_SIZE = BYTES + len(SPECIAL_TOKENS)


def byte_level_tokenizer(texts: Iterable[str], vocab_size: int = BYTE_VOCAB_SIZE) -> Any:
    """A ``PreTrainedTokenizerFast``: bytes, plus the most frequent byte-pair merges of ``texts`` up to
    ``vocab_size`` tokens (deterministic: the same texts give the same merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # The GPT-2 split (words, numbers, punctuation, whitespace runs) keeps merges inside such pieces.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, BYTE_VOCAB_SIZE),
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts if vocab_size > BYTE_VOCAB_SIZE else [], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, padding_side="left")
