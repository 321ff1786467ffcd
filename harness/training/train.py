"""Training a recipe's model on examples, saving it as an ordinary Hugging Face directory, and a cache
of trained models keyed by everything that decides their weights.

The loss is the completion's alone (the prompt is context): the model learns to answer the official
prompt with the solution and its end.  Training is seeded (initial weights, batch order) and runs
with torch's deterministic algorithms, so the same inputs on the same machine give the same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.atomic import write_json_atomic
from harness.training.corpus import Ending, TrainingExample
from harness.training.recipe import TrainingRecipe
from harness.training.tokenizer import byte_level_tokenizer

# Bump when this module changes what a recipe trains: cached models of another format are not reused.
TRAINING_FORMAT = 1
MANIFEST = "training.json"  # beside the weights: the recipe, the data, the figures of the run
_LOG_EVERY = 50


@dataclass(frozen=True)
class TrainedModel:
    directory: Path
    key: str  # the hash of the inputs (recipe, examples, library versions)
    from_cache: bool
    steps: int  # optimizer steps taken (the recipe's, unless a deadline cut training short)
    final_loss: float  # mean completion loss over the last steps
    seconds: float  # the training's wall time (of the run that trained it, for a cached model)


def training_key(examples: Sequence[TrainingExample], recipe: TrainingRecipe) -> str:
    """sha256 of what decides the weights: the training code's format, the recipe, the examples and
    the versions of the libraries that compute them."""
    import tokenizers
    import torch
    import transformers

    document = {
        "format": TRAINING_FORMAT,
        "recipe": recipe.describe(),
        "examples": [[e.task_id, e.prompt, e.solution, e.ending.value] for e in examples],
        "versions": [torch.__version__, transformers.__version__, tokenizers.__version__],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def cached_model(
    examples: Sequence[TrainingExample],
    recipe: TrainingRecipe,
    cache_dir: Path,
    device: str = "cpu",
    say: Callable[[str], None] = lambda message: None,
) -> TrainedModel:
    """The model trained on ``examples`` by ``recipe``, from ``cache_dir`` when it was trained before,
    else trained now (in a staging directory, renamed into place when complete)."""
    key = training_key(examples, recipe)
    target = cache_dir / f"model-{key[:24]}"
    if (target / MANIFEST).is_file():
        return _from_manifest(target, from_cache=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".training-", dir=cache_dir))
    try:
        trained = train_model(examples, recipe, staging, device=device, say=say, key=key)
        try:
            os.rename(staging, target)
        except OSError:  # another process put the same model there first: keep that one
            if not (target / MANIFEST).is_file():
                raise
        return TrainedModel(target, key, False, trained.steps, trained.final_loss, trained.seconds)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train_model(
    examples: Sequence[TrainingExample],
    recipe: TrainingRecipe,
    output: Path,
    device: str = "cpu",
    say: Callable[[str], None] = lambda message: None,
    key: str | None = None,
    deadline: float | None = None,
) -> TrainedModel:
    """Train and save the model and its tokenizer into ``output`` (with ``training.json``).  With a
    ``deadline`` (a ``time.monotonic()`` value) training stops there, short of the recipe's steps, and
    the manifest says so."""
    import torch

    started = time.monotonic()
    key = key or training_key(examples, recipe)
    tokenizer = byte_level_tokenizer([e.prompt + e.completion_text for e in examples], recipe.vocab_size)
    sequences = [_encode(tokenizer, e, recipe.shape.max_positions) for e in examples]
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(recipe.seed)
        model = _new_model(recipe, tokenizer).to(device)
        steps, losses = _optimize(model, sequences, recipe, tokenizer.pad_token_id, device, say, deadline)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(output)
    tokenizer.save_pretrained(output)
    final_loss = sum(losses[-10:]) / max(1, len(losses[-10:]))
    seconds = time.monotonic() - started
    write_json_atomic(
        output / MANIFEST,
        {
            "format": TRAINING_FORMAT,
            "key": key,
            "recipe": recipe.describe(),
            "steps": steps,
            "complete": steps == recipe.steps,
            "final_loss": final_loss,
            "seconds": seconds,
            "device": device,
            "parameters": sum(p.numel() for p in model.parameters()),
            "examples": len(examples),
            "task_ids": sorted({e.task_id for e in examples}),
            "tokens": sum(len(ids) for ids, _ in sequences),
        },
    )
    return TrainedModel(output, key, False, steps, final_loss, seconds)


def _from_manifest(directory: Path, from_cache: bool) -> TrainedModel:
    manifest = json.loads((directory / MANIFEST).read_text())
    return TrainedModel(directory, manifest["key"], from_cache, manifest["steps"], manifest["final_loss"], manifest["seconds"])


def _encode(tokenizer: Any, example: TrainingExample, max_positions: int) -> tuple[list[int], int]:
    """(token ids, how many of them are the prompt).  The prompt is tokenized alone, as generation
    tokenizes it; an over-long sequence keeps the prompt's end and as much of the completion as fits."""
    prompt = tokenizer(example.prompt)["input_ids"]
    completion = tokenizer(example.completion_text, add_special_tokens=False)["input_ids"]
    if example.ending is Ending.EOS:
        completion.append(tokenizer.eos_token_id)
    completion = completion[: max_positions // 2] if len(prompt) + len(completion) > max_positions else completion
    prompt = prompt[-(max_positions - len(completion)) :]
    return prompt + completion, len(prompt)


def _new_model(recipe: TrainingRecipe, tokenizer: Any) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = recipe.shape
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of example indices: each epoch a seeded permutation, cut into batches of
    similar lengths (sorted within windows of 8 batches, so padding stays small), in shuffled order."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(lengths))
    window = 8 * batch_size
    while True:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[position]


def _optimize(
    model: Any,
    sequences: Sequence[tuple[list[int], int]],
    recipe: TrainingRecipe,
    pad_id: int,
    device: str,
    say: Callable[[str], None],
    deadline: float | None,
) -> tuple[int, list[float]]:
    import torch

    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=recipe.learning_rate,
        betas=(0.9, 0.95),
        weight_decay=recipe.weight_decay,
        fused=device.startswith("cuda"),
    )

    def learning_rate_factor(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
    autocast = recipe.mixed_precision and device.startswith("cuda")
    batches = _batches([len(ids) for ids, _ in sequences], recipe.batch_size, recipe.seed)
    noise = torch.Generator().manual_seed(recipe.seed + 1)
    losses: list[float] = []
    step = 0
    for step in range(1, recipe.steps + 1):
        input_ids, attention_mask, labels = _collate([sequences[i] for i in next(batches)], pad_id, device)
        if recipe.input_noise:
            input_ids = _with_noise(input_ids, labels, recipe.input_noise, noise)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        # Token t predicts token t + 1; only the completions' tokens are scored.
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            labels[:, 1:].flatten(),
            ignore_index=-100,
            label_smoothing=recipe.label_smoothing,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % _LOG_EVERY == 0 or step == recipe.steps:
            say(f"step {step}/{recipe.steps}: loss {sum(losses[-_LOG_EVERY:]) / len(losses[-_LOG_EVERY:]):.4f}")
        if deadline is not None and time.monotonic() > deadline:
            say(f"deadline reached: stopping at step {step} of {recipe.steps}")
            break
    return step, losses


def _with_noise(input_ids: Any, labels: Any, share: float, generator: Any) -> Any:
    """``input_ids`` with a ``share`` of the completion tokens replaced by random bytes' tokens (drawn
    on the CPU from ``generator``, so the draw does not depend on the device)."""
    import torch

    from harness.training.tokenizer import BYTES, SPECIAL_TOKENS

    shape = tuple(input_ids.shape)
    hit = torch.rand(shape, generator=generator) < share
    # The specials come first in the vocabulary, then the 256 bytes.
    replacement = torch.randint(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + BYTES, shape, generator=generator)
    hit = hit.to(input_ids.device) & (labels != -100)
    return torch.where(hit, replacement.to(input_ids.device), input_ids)


def _collate(batch: Sequence[tuple[list[int], int]], pad_id: int, device: str) -> tuple[Any, Any, Any]:
    """Right-padded ids, the attention mask, and labels that score only the completions."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
    return input_ids.to(device), attention_mask.to(device), labels.to(device)
