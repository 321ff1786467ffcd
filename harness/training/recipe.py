"""What decides a trained model (pure): its shape and the training settings, with two recipes, one
for the CPU demo (the bundled sample, seconds) and one scaled for a GPU (hundreds of problems, minutes).

The model is Llama-style (RMSNorm, rotary positions, SwiGLU, grouped-query attention, tied
embeddings): a ``model_type`` both generation engines run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.training.tokenizer import BYTE_VOCAB_SIZE


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    max_positions: int  # the longest training sequence (prompt + completion); longer prompts lose their start

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden_size and be a multiple of kv_heads ({self.kv_heads})")


@dataclass(frozen=True)
class TrainingRecipe:
    shape: ModelShape
    steps: int
    batch_size: int  # sequences per optimizer step
    learning_rate: float  # peak, after a linear warm-up, then cosine decay to min_lr_ratio of it
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # The share of each target's probability spread over the whole vocabulary.  A model that memorised
    # its few programs is otherwise certain of every token, and sampling never errs; with it, each token
    # keeps a small, calibrated chance of a wrong pick, as a real model's uncertainty gives.
    label_smoothing: float = 0.0
    # The share of completion tokens replaced, in the model's input only, by a random byte: the model
    # learns to go on with the right program after a wrong token, as it must after a sampling mistake,
    # so a sampled program has isolated typos instead of running off into noise that never stops.
    input_noise: float = 0.0
    vocab_size: int = BYTE_VOCAB_SIZE  # bytes and the special tokens; larger adds byte-pair merges
    solutions_per_problem: int = 1
    seed: int = 0
    mixed_precision: bool = False  # bf16 autocast (on CUDA); the weights stay float32

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")

    def describe(self) -> dict:
        return asdict(self)


# The bundled sample (samples/problems.jsonl, six short problems): about 0.3M parameters, trained in
# well under 90 s on 2 CPU cores until every solution is memorised, so greedy decoding solves them.
# The label smoothing leaves each token about a 1% chance of a wrong pick when sampled at temperature 1
# with top-k 50 and no top-p (the demo's settings): short programs mostly pass, long ones mostly fail.
DEMO_RECIPE = TrainingRecipe(
    shape=ModelShape(hidden_size=96, intermediate_size=256, layers=3, heads=4, kv_heads=2, max_positions=1024),
    steps=200,
    batch_size=8,
    learning_rate=4e-3,
    warmup_steps=20,
    label_smoothing=0.05,
    input_noise=0.05,
)

# The same recipe scaled for one GPU and a few hundred problems (taco_test_examples.jsonl): 27.3M
# parameters and a byte-pair vocabulary of 4096.  On an H200 a step took 0.15 s on those 495 problems, so
# the 3000 steps take about 7.5 minutes; docs/BENCHMARKS.md reports a run cut at 200 s (step 1361) by
# bench/train_code_model.py --train-seconds.
GPU_RECIPE = TrainingRecipe(
    shape=ModelShape(hidden_size=512, intermediate_size=1536, layers=8, heads=8, kv_heads=4, max_positions=4096),
    steps=3000,
    batch_size=32,
    learning_rate=1e-3,
    warmup_steps=100,
    vocab_size=4096,
    mixed_precision=True,
)
