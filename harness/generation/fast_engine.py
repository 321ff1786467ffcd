"""The fast engine: slot-refill decoding around an unmodified Hugging Face model.

The batch is a fixed set of *slots*, each with its own KV cache row, position and sample.  A decode
step runs the model on one token per slot (each at its own position), picks the next tokens with the
hash-seeded sampler, and records them; a step (``steps_per_graph`` steps) is captured once as a CUDA
graph and replayed through a chunk of ``chunk_steps`` steps, so the host launches a graph per step
instead of hundreds of kernels.  Between chunks the host reads the new tokens, ends samples (EOS,
budget, an official EOF string), and refills the freed slots with waiting samples: a new prompt is
prefilled once, and its KV stored once in a pool its samples share (``prefix_attention.py``) or, in
the reference layout, copied into every slot that takes one of its samples. The host handles chunk c
while the GPU already runs chunk c+1, so the GPU does not wait for it; a finished slot therefore
idles one extra chunk before its refill. When no sample is waiting any more and the few still
running fit in a quarter of the slots, they are moved there and the run ends on a second, quarter-size
graph.

The model code is used as is: the cache is an object with the ``update`` method the attention layers
call, and attention is a function registered with transformers' ``AttentionInterface`` (see
``decode_attention``).  Models with sliding-window or other non-standard attention are refused
(``unsupported_reason``); the ``hf`` engine handles them.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.generation.attention import decode_attention, triton_applies
from harness.generation.decode_step import DecodeStep
from harness.generation.end_sharing import SlotState
from harness.generation.engine import (
    CUDA_CACHE_LOCK,
    EofScanner,
    FinishReason,
    JobSource,
    SampleFeed,
    SampleSink,
    SampleTracker,
    eos_token_ids,
    finish,
    first_eos_positions,
    job_source,
    kv_bytes_per_token,
    prompt_token_ids,
    rows_that_fit,
    run_shrinking_on_oom,
)
from harness.generation.kv_cache import KV_FP8_DTYPE, KVCacheFormat
from harness.generation.kv_cache import check_supported as check_kv_supported
from harness.generation.plan import PromptJob, SamplingSettings
from harness.generation.prefix_attention import (
    PrefixPool,
    PrefixSpace,
    group_members,
    group_rows,
    shared_prefix_attention,
)
from harness.generation.quantization import Quantization, fused_layers
from harness.generation.sampling import choose_tokens

ATTENTION_NAME = "taco_slots"
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
MAX_AUTO_SLOTS = 512
# A batched prefill's padded prompt tokens at most: bounds its activations (well inside the headroom
# _auto_slots keeps), whatever the prompts' lengths.
MAX_PREFILL_TOKENS = 8192


@dataclass(frozen=True)
class FastEngineOptions:
    slots: int | None = None  # None: as many as fit in free GPU memory (at most MAX_AUTO_SLOTS)
    chunk_steps: int = 16  # decode steps between two looks at the tokens
    # Decode steps in one CUDA graph, replayed chunk_steps / steps_per_graph times a chunk.  Capturing
    # costs the host one eager step per captured step, twice (a graph per bank), in every run's
    # set-up; replaying a one-step graph costs the GPU a few microseconds a step.
    steps_per_graph: int = 1
    cuda_graphs: bool = True  # on CUDA devices; the CPU always runs the same steps eagerly
    attention_kernel: str = "auto"  # "auto" (Triton on CUDA when possible), "triton" or "torch"
    # A prompt's K/V stored once and read by all its samples (prefix_attention.py); False copies it
    # into every sample's row (the reference layout).
    shared_prefix: bool = True
    # Decode through decode_step.DecodeStep (fused q/k/v and gate/up products, fused small kernels)
    # instead of the model's own forward; with the shared prefix, prefill through its layers too.
    fused_step: bool = True
    quantization: Quantization = Quantization.NONE  # applied to the model's projections (quantization.py)
    kv_cache: KVCacheFormat = KVCacheFormat.MODEL  # fp8: K/V stored as scaled float8 (kv_cache.py)
    # With the shared prefix, the prompts taken in one refill are prefilled together, this many (and
    # MAX_PREFILL_TOKENS padded tokens) to a forward: an eager forward costs the host about as much
    # for one prompt as for several.  1: one prompt a forward.
    prefill_batch: int = 16

    def __post_init__(self) -> None:
        if self.prefill_batch < 1:
            raise ValueError(f"prefill_batch must be at least 1, not {self.prefill_batch}")
        if self.steps_per_graph < 1 or self.chunk_steps % self.steps_per_graph:
            raise ValueError(f"steps_per_graph must divide chunk_steps ({self.chunk_steps}), not be {self.steps_per_graph}")


def unsupported_reason(model: Any) -> str | None:
    """Why the fast engine cannot run this model, or None if it can."""
    config = model.config
    model_type = getattr(config, "model_type", "?")
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    if not getattr(model, "_supports_attention_backend", False):
        return f"{type(model).__name__} does not take custom attention functions"
    layer_types = getattr(config, "layer_types", None) or ()
    if any(kind != "full_attention" for kind in layer_types):
        return "the model has sliding-window or other non-full attention layers"
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return "the model uses sliding-window attention"
    return None


def _slot_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    slot_lengths: torch.Tensor | None = None,
    slot_kernel: str = "auto",
    slot_pool: PrefixPool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function registered as ATTENTION_NAME.  With ``slot_lengths`` (decode) it attends
    each slot's query to that slot's cache prefix; without (a prompt's prefill) causal SDPA."""
    if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
        raise NotImplementedError("sliding-window and soft-capped attention are not supported by the fast engine")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if slot_lengths is None:
        out = F.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scale, enable_gqa=key.shape[1] != query.shape[1]
        )
        return out.transpose(1, 2).contiguous(), None
    if slot_pool is not None:
        attended = shared_prefix_attention(query, key, value, slot_lengths, slot_pool, module.layer_idx, scale, slot_kernel)
        assert isinstance(attended, torch.Tensor)
        return attended, None
    return decode_attention(query, key, value, slot_lengths, scale, slot_kernel), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _slot_attention)


class _SlotCache:
    """Per-slot K/V rows.  Decode writes each slot's new K/V at that slot's own row index (its position,
    or with a shared prefix its position past the prefix) and hands the whole rows to attention (which
    reads only each slot's valid part)."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], write_index: torch.Tensor):
        self.keys, self.values, self.write_index = keys, values, write_index
        self.rows = torch.arange(write_index.shape[0], device=write_index.device)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self.rows, :, self.write_index] = key_states[:, :, 0]
        values[self.rows, :, self.write_index] = value_states[:, :, 0]
        return keys, values


class _PoolWriter:
    """A batched prefill's cache: each layer's K/V [B, KVH, L, D], as the forward makes them, are written
    to the prefix pool at each prompt's range (prompt b's first ``lengths[b]`` positions; the rest is
    padding), so no layer's K/V outlives its layer."""

    def __init__(self, pool: PrefixPool, targets: Sequence[tuple[int, int]]):
        self.pool, self.targets = pool, targets  # (pool start, length) per batch row

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.pool.keys[layer_idx], self.pool.values[layer_idx]
        for row, (start, length) in enumerate(self.targets):
            keys[:, start : start + length] = key_states[row, :, :length]
            values[:, start : start + length] = value_states[row, :, :length]
        return key_states, value_states


class _PromptCapture:
    """Collects one prompt's K/V during its prefill (batch 1), to be copied into slots."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
        return key_states, value_states


@dataclass(frozen=True)
class RunStats:
    slots: int
    decode_steps: int  # decode steps run
    row_steps: int  # slot-steps computed, busy or idle (the small bank at a run's end counts its own size)
    setup_seconds: float  # cache allocation and CUDA-graph capture
    # GPU time of the decode chunks and of the refills (prompt prefills, pool writes, slot resets), and
    # the run's wall time after set-up: where the rest went, the GPU waited for the host.  None off CUDA.
    decode_gpu_seconds: float | None = None
    refill_gpu_seconds: float | None = None
    wall_seconds: float | None = None


class _GpuTimes:
    """GPU time of each kind of a run's work, from CUDA event pairs around it.  A pair is read once the
    GPU has passed it (queried, never waited for: waiting would make the host wait for the GPU), so
    only the pairs still ahead of the GPU are kept."""

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda"
        self.pairs: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = {}
        self.milliseconds: dict[str, float] = {}

    @contextmanager
    def span(self, kind: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        pairs = self.pairs.setdefault(kind, [])
        while pairs and pairs[0][1].query():
            self._read(kind, pairs.pop(0))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield
        end.record()
        pairs.append((start, end))

    def _read(self, kind: str, pair: tuple[torch.cuda.Event, torch.cuda.Event]) -> None:
        self.milliseconds[kind] = self.milliseconds.get(kind, 0.0) + pair[0].elapsed_time(pair[1])

    def seconds(self, kind: str) -> float | None:
        """The kind's total (at the run's end: the last pair is waited for)."""
        if not self.enabled:
            return None
        pairs = self.pairs.get(kind, [])
        if pairs:
            pairs[-1][1].synchronize()
        for pair in pairs:
            self._read(kind, pair)
        pairs.clear()
        return self.milliseconds.get(kind, 0.0) / 1000


@dataclass
class _Active:
    tracker: SampleTracker
    first_chunk: int  # the first chunk whose tokens belong to this sample


class FastEngine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        sampling: SamplingSettings,
        options: FastEngineOptions = FastEngineOptions(),
        say: Callable[[str], None] | None = None,
    ):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fast engine cannot run this model: {reason}")
        self.model, self.tokenizer, self.sampling, self.options, self.say = model, tokenizer, sampling, options, say
        self.decode_step: DecodeStep | None = None
        if options.fused_step:
            self.decode_step = DecodeStep(model, options.quantization)
        elif options.quantization is not Quantization.NONE:
            fused_layers(model, options.quantization)
        if options.kv_cache is not KVCacheFormat.MODEL:
            fused_triton = (
                options.fused_step and options.shared_prefix and options.attention_kernel != "torch" and _triton_applies_to(model)
            )
            check_kv_supported(options.kv_cache, next(model.parameters()).device, fused_triton)
        self.eos_ids = eos_token_ids(model)
        self.eof_scanner = EofScanner(tokenizer)
        self.last_run: RunStats | None = None  # of the attempt that completed the last run

    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: SampleSink) -> None:
        source = job_source(jobs)
        planned = source.planned  # sizes the run; the jobs themselves are taken from the source as slots free up
        if not planned:
            return
        prompts = prompt_token_ids(self.tokenizer, planned)
        capacity = _round_up(max(len(p) + max(s.max_new_tokens for s in job.samples) for p, job in zip(prompts, planned)), 64)
        slots = self.options.slots or self._auto_slots(capacity, sum(len(job.samples) for job in planned))
        by_task = {job.task_id: ids for job, ids in zip(planned, prompts)}

        def attempt(remaining: JobSource, slot_count: int, sink: SampleSink) -> None:
            started = time.perf_counter()
            slot_run = _SlotRun(self, planned, prompts, capacity, slot_count, SampleFeed(remaining, by_task))
            slot_run.run(sink, started)
            self.last_run = RunStats(
                slot_count,
                slot_run.launched * slot_run.chunk_steps,
                slot_run.row_steps,
                slot_run.setup_seconds,
                slot_run.gpu_times.seconds("decode"),
                slot_run.gpu_times.seconds("refill"),
                time.perf_counter() - started - slot_run.setup_seconds,
            )

        previous = self.model.config._attn_implementation
        _register_attention()
        self.model.set_attn_implementation(ATTENTION_NAME)
        try:
            with torch.inference_mode():
                run_shrinking_on_oom(attempt, source, slots, on_sample, self.say)
        finally:
            self.model.set_attn_implementation(previous)

    def _auto_slots(self, capacity: int, samples: int) -> int:
        device = next(self.model.parameters()).device
        if device.type != "cuda":
            return max(1, min(64, samples))
        config = self.model.config
        free, _ = torch.cuda.mem_get_info(device)
        # Memory this process's caching allocator holds but no tensor uses (an earlier engine's KV
        # slots, say) is free to us, though the driver counts it as taken.
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        vocab = config.vocab_size
        # Per slot: its K/V rows, plus the step's logits in float32 and the sampler's copies of them.
        per_slot = kv_bytes_per_token(config, self.model.dtype) * capacity + 6 * 4 * vocab
        # Headroom: one prompt's prefill activations and the CUDA graph's activations, with margin.
        reserved = 4 * 2**30 + 16 * capacity * config.intermediate_size * self.model.dtype.itemsize
        return min(samples, rows_that_fit(int(free * 0.92), per_slot, reserved, MAX_AUTO_SLOTS))


class _Bank:
    """The per-slot state the decode step reads and writes, for the first ``size`` slots: the full set,
    or (for the end of a run, when few samples are left) a small prefix of it, as views of the same
    storage.  Each bank has its own CUDA graph."""

    def __init__(self, run: _SlotRun, size: int):
        self.size = size
        self.tokens, self.positions, self.steps = run.tokens[:size], run.positions[:size], run.steps[:size]
        self.seed_high, self.seed_low = run.seed_high[:size], run.seed_low[:size]
        self.recent = run.recent[:size]
        self.pool = run.pool.view(size) if run.pool is not None else None
        # The cache row index each step writes: the position, or the position past the shared prefix.
        self.write_index = run.write_index[:size] if run.pool is not None else self.positions
        self.cache = _SlotCache([k[:size] for k in run.keys], [v[:size] for v in run.values], self.write_index)
        self.key_scales = [k[:size] for k in run.key_scales] if run.key_scales is not None else None
        self.value_scales = [v[:size] for v in run.value_scales] if run.value_scales is not None else None
        self.graph: torch.cuda.CUDAGraph | None = None


class _SlotRun:
    """One pass over the jobs with a fixed number of slots (allocated here, freed with the object)."""

    def __init__(
        self, engine: FastEngine, jobs: Sequence[PromptJob], prompts: list[list[int]], capacity: int, slots: int, feed: SampleFeed
    ):
        self.engine, self.capacity = engine, capacity
        model, options = engine.model, engine.options
        self.model = model
        self.device = next(model.parameters()).device
        self.chunk_steps, self.steps_per_graph = options.chunk_steps, options.steps_per_graph
        config = model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = _head_dim(config)
        self.kernel = options.attention_kernel
        if self.kernel == "auto":
            self.kernel = "triton" if _triton_applies_to(model) else "torch"
        self.use_graphs = options.cuda_graphs and self.device.type == "cuda"
        on = {"device": self.device}
        fp8_cache = options.kv_cache is KVCacheFormat.FP8
        cache_dtype = KV_FP8_DTYPE if fp8_cache else model.dtype
        self.pool: PrefixPool | None = None
        if options.shared_prefix:
            self.members = group_members(heads // kv_heads)
            # Rows hold only the suffix: the last prompt token and the generated ones.
            self.capacity = capacity = _round_up(max(s.max_new_tokens for job in jobs for s in job.samples) + 1, 16)
            longest = max(len(p) for p in prompts) - 1
            pool_tokens = _pool_tokens(jobs, prompts, slots)
            layers = range(config.num_hidden_layers)
            # One position past the prompts' room: where a batched prefill through the decode step's layers
            # writes its padding tokens' K/V.
            self.pool_padding = pool_tokens
            self.pool = PrefixPool(
                [torch.zeros((kv_heads, pool_tokens + 1, head_dim), dtype=model.dtype, **on) for _ in layers],
                [torch.zeros((kv_heads, pool_tokens + 1, head_dim), dtype=model.dtype, **on) for _ in layers],
                torch.zeros(slots, dtype=torch.int64, **on),
                torch.zeros(slots, dtype=torch.int64, **on),
                torch.tensor(group_rows([], self.members, slots), dtype=torch.int64, **on),
                longest,
            )
            self.space = PrefixSpace(pool_tokens)
            self.slot_prefix: list[tuple[int, int] | None] = [None] * slots  # the pool range each slot reads
            self.entries: dict[int, tuple[int, int]] = {}  # job index -> (pool start, prefix length)
            self.write_index = torch.zeros(slots, dtype=torch.int64, **on)
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=cache_dtype, **on) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=cache_dtype, **on) for _ in range(config.num_hidden_layers)]
        self.key_scales: list[torch.Tensor] | None = None
        self.value_scales: list[torch.Tensor] | None = None
        if fp8_cache:
            self.key_scales = [torch.ones(shape[:3], dtype=torch.float32, **on) for _ in range(config.num_hidden_layers)]
            self.value_scales = [torch.ones(shape[:3], dtype=torch.float32, **on) for _ in range(config.num_hidden_layers)]
        self.positions = torch.zeros(slots, dtype=torch.int64, **on)
        self.tokens = torch.zeros(slots, dtype=torch.int64, **on)
        self.steps = torch.zeros(slots, dtype=torch.int64, **on)
        self.seed_high = torch.zeros(slots, dtype=torch.int64, **on)
        self.seed_low = torch.zeros(slots, dtype=torch.int64, **on)
        self.recent = torch.zeros((slots, self.chunk_steps), dtype=torch.int64, **on)
        # The column of ``recent`` the next step writes, on the device: a graph replayed for several
        # steps of a chunk cannot carry it as a constant.
        self.column = torch.zeros(1, dtype=torch.int64, **on)
        pin = self.device.type == "cuda"
        self.recent_host = [torch.zeros((slots, self.chunk_steps), dtype=torch.int64, pin_memory=pin) for _ in range(2)]
        self.recent_ready = [torch.cuda.Event() if pin else None for _ in range(2)]
        self.gpu_times = _GpuTimes(self.device)
        self.full = _Bank(self, slots)
        # A run ends with few samples left (the long ones): decoding them in a quarter-size bank
        # makes those steps cheaper than dragging all the idle slots along.
        self.small = _Bank(self, slots // 4) if slots >= 8 else None
        self.bank = self.full
        self.cache_argument = cache_argument(model)
        self.launched = self.row_steps = 0
        self.setup_seconds = 0.0
        self.active: list[_Active | None] = [None] * slots
        # The jobs above (every one the run may get) only size it: the run's own arrive from the feed as slots free up.
        self.feed = feed
        # Seconds a decode step took lately (from one chunk's tokens ready to the next's, over about a
        # sample's life: the refills' prefills included), with the samples running then, and a step of
        # the full bank with none running (timed before the first chunk): what the engine tells a shared
        # queue (``_slot_state``).
        self.step_seconds: deque[float] = deque(maxlen=32)
        self.step_running = 0
        self.chunk_ready_at: float | None = None
        self.idle_step_seconds = 0.0
        self.jobs, self.prompts, self.pending = feed.jobs, feed.prompts, feed.pending
        self.prefix: tuple[int, _PromptCapture | None] | None = None  # the last prefilled job's K/V

    # --- GPU work ---------------------------------------------------------------------------------

    def _decode_step(self, bank: _Bank) -> None:
        if bank.pool is not None:
            torch.sub(bank.positions, bank.pool.length, out=bank.write_index)
        step = self.engine.decode_step
        if step is not None:
            cache = bank.cache
            logits = step.logits(
                bank.tokens, bank.positions, cache.keys, cache.values, bank.write_index, bank.pool, self.kernel,
                bank.key_scales, bank.value_scales,
            )  # fmt: skip
        else:
            logits = self.model(
                input_ids=bank.tokens[:, None],
                position_ids=bank.positions[:, None],
                use_cache=True,
                slot_lengths=bank.write_index + 1,
                slot_kernel=self.kernel,
                slot_pool=bank.pool,
                **{self.cache_argument: bank.cache},
            ).logits[:, -1]
        chosen = choose_tokens(logits, self.engine.sampling, bank.seed_high, bank.seed_low, bank.steps)
        bank.recent.index_copy_(1, self.column, chosen[:, None])
        torch.remainder(self.column + 1, self.chunk_steps, out=self.column)
        bank.tokens.copy_(chosen)
        # A finished slot runs on until its refill; clamping keeps its writes inside the cache row.
        if bank.pool is not None:
            torch.minimum(bank.positions + 1, bank.pool.length + (self.capacity - 1), out=bank.positions)
        else:
            bank.positions.add_(1).clamp_(max=self.capacity - 1)
        bank.steps.add_(1)

    def _steps(self, bank: _Bank, count: int) -> None:
        for _ in range(count):
            self._decode_step(bank)

    def _capture(self, bank: _Bank) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            # Warm-up: kernel selection, Triton compilation, workspace allocation.  One step runs every
            # kernel of the graph (its steps are alike).
            self._decode_step(bank)
        torch.cuda.current_stream(self.device).wait_stream(side)
        bank.graph = torch.cuda.CUDAGraph()
        # Another device's worker thread may run meanwhile (thread_local: its calls do not break this
        # capture), but not capture or empty the allocator's cache (the lock).  The capture stream is
        # this device's own: torch.cuda.graph's default one is made once per process, on the device of
        # whichever thread captured first, and another device's kernels cannot be captured on it.
        with CUDA_CACHE_LOCK, torch.cuda.graph(bank.graph, stream=side, capture_error_mode="thread_local"):
            self._steps(bank, self.steps_per_graph)
        for state in (self.positions, self.tokens, self.steps, self.column):
            state.zero_()

    def _launch(self, chunk: int) -> None:
        self.row_steps += self.bank.size * self.chunk_steps
        with self.gpu_times.span("decode"):
            if self.bank.graph is not None:
                for _ in range(self.chunk_steps // self.steps_per_graph):
                    self.bank.graph.replay()
            else:
                self._steps(self.bank, self.chunk_steps)
        buffer = chunk % 2
        ready = self.recent_ready[buffer]
        self.recent_host[buffer].copy_(self.recent, non_blocking=ready is not None)
        if ready is not None:
            ready.record()

    def _forward_prompts(self, rows: list[list[int]], cache: _PromptCapture | _PoolWriter) -> None:
        """The model's forward over prompt rows of one length, for the K/V it hands to ``cache``."""
        self.model(
            # Through pinned memory: a plain copy from a list would wait for the chunks already queued.
            input_ids=_to_device(torch.tensor(rows), self.device),
            position_ids=torch.arange(len(rows[0]), device=self.device)[None].expand(len(rows), -1),
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_argument: cache},
        )

    def _prefill(self, job_index: int) -> _PromptCapture | None:
        ids = self.prompts[job_index][:-1]  # the last prompt token is fed by the first decode step
        if not ids:
            return None
        capture = _PromptCapture()
        self._forward_prompts([ids], capture)
        return capture

    def _prefill_into_pool(self, entries: list[tuple[int, int, int]]) -> None:
        """Prefill the prompts of ``entries`` (job index, pool start, length) and write their K/V to the
        pool: in batches of similar lengths, right-padded to the batch's longest (causal attention keeps
        each prompt's K/V what its own forward would give, whatever padding follows it)."""
        assert self.pool is not None
        entries = sorted(entries, key=lambda entry: entry[2])
        while entries:
            count = 1
            while (
                count < min(len(entries), self.engine.options.prefill_batch)
                and (count + 1) * entries[count][2] <= MAX_PREFILL_TOKENS
            ):
                count += 1
            batch, entries = entries[:count], entries[count:]
            width = batch[-1][2]
            # Padding repeats the prompt's last prefix token: any token would do, none is ever read.
            rows = [self.prompts[job][:length] + [self.prompts[job][length - 1]] * (width - length) for job, _, length in batch]
            step = self.engine.decode_step
            if step is None:
                self._forward_prompts(rows, _PoolWriter(self.pool, [(start, length) for _, start, length in batch]))
                continue
            # The decode step's layers over the whole batch: a few fused kernels a layer where the model's
            # own forward launches about a hundred (and its host time, not the GPU's, set a prefill's cost).
            index = [start + t if t < length else self.pool_padding for _, start, length in batch for t in range(width)]
            step.prefill(
                _to_device(torch.tensor(rows), self.device), _to_device(torch.tensor(index), self.device), self.pool, self.kernel
            )

    def _shared_entry(self, job_index: int, to_prefill: list[tuple[int, int, int]]) -> tuple[int, int] | None:
        """The pool range holding this job's prompt prefix; on first use it is taken and the job added to
        ``to_prefill`` (the refill prefills them together); None while the pool has no room for it."""
        if job_index in self.entries:
            return self.entries[job_index]
        assert self.pool is not None
        length = len(self.prompts[job_index]) - 1
        start = self.space.take(length) if length else 0
        if start is None:
            return None
        if length:
            to_prefill.append((job_index, start, length))
        self.entries[job_index] = (start, length)
        return start, length

    def _release_entries(self) -> None:
        """Give back the pool ranges of prompts no running or waiting sample needs any more (an idle
        slot may still read a released range until its refill; its output is discarded)."""
        needed = {active.tracker.job_index for active in self.active if active is not None}
        if self.pending:
            needed.add(self.pending[0][0])
        for job_index in [j for j in self.entries if j not in needed]:
            self.space.give(*self.entries.pop(job_index))

    def _refill(self, first_chunk: int) -> None:
        with self.gpu_times.span("refill"):
            self._refill_slots(first_chunk)

    def _refill_slots(self, first_chunk: int) -> None:
        free = [slot for slot, active in enumerate(self.active) if active is None]
        self.feed.top_up(len(free), self._slot_state)
        taken: list[int] = []
        values: list[tuple[int, int, int, int]] = []  # token, position, seed high/low per taken slot
        prefixes: list[tuple[int, int]] = []  # pool start and length per taken slot (shared prefix)
        eos = self.engine.eos_ids
        to_prefill: list[tuple[int, int, int]] = []  # (job index, pool start, length) of new pool entries
        if self.pool is not None:
            self._release_entries()
        while free and self.pending:
            job_index = self.pending[0][0]
            entry = (0, 0)
            if self.pool is not None:
                found = self._shared_entry(job_index, to_prefill)
                if found is None:
                    break  # the pool is full: wait for running prompts to end
                entry = found
            group: list[int] = []
            seeds: list[int] = []
            while free and self.pending and self.pending[0][0] == job_index:
                _, spec = self.pending.popleft()
                slot = free.pop(0)
                group.append(slot)
                seeds.append(spec.seed)
                self.active[slot] = _Active(SampleTracker(job_index, spec, eos), first_chunk)
            prompt = self.prompts[job_index]
            if self.pool is None:
                if self.prefix is None or self.prefix[0] != job_index:
                    self.prefix = (job_index, self._prefill(job_index))
                capture = self.prefix[1]
                if capture is not None:
                    rows = torch.tensor(group, device=self.device)
                    for layer, keys in enumerate(self.keys):
                        keys[rows, :, : len(prompt) - 1] = capture.keys[layer][0]
                        self.values[layer][rows, :, : len(prompt) - 1] = capture.values[layer][0]
            taken.extend(group)
            prefixes.extend(entry for _ in group)
            for seed in seeds:
                values.append((prompt[-1], len(prompt) - 1, seed >> 32, seed & 0xFFFFFFFF))
        if to_prefill:
            self._prefill_into_pool(to_prefill)
        # Idle slots restart at position 0 so that their (discarded) attention stays cheap.
        taken.extend(free)
        values.extend((0, 0, 0, 0) for _ in free)
        prefixes.extend((0, 0) for _ in free)
        if not taken:
            return
        rows = _to_device(torch.tensor(taken), self.device)
        table = _to_device(torch.tensor([v + p for v, p in zip(values, prefixes)], dtype=torch.int64), self.device)
        self.tokens.index_copy_(0, rows, table[:, 0])
        self.positions.index_copy_(0, rows, table[:, 1])
        self.seed_high.index_copy_(0, rows, table[:, 2])
        self.seed_low.index_copy_(0, rows, table[:, 3])
        self.steps.index_fill_(0, rows, 0)
        if self.pool is not None:
            self.pool.start.index_copy_(0, rows, table[:, 4])
            self.pool.length.index_copy_(0, rows, table[:, 5])
            for slot, prefix in zip(taken, prefixes):
                self.slot_prefix[slot] = prefix if prefix[1] > 0 else None
            self._upload_groups()

    def _slot_state(self) -> SlotState:
        """What the slots are doing, for a shared queue: the steps each running sample may still take
        (as far as the host has seen its tokens), and the step times."""
        left = tuple(a.tracker.spec.max_new_tokens - len(a.tracker.tokens) for a in self.active if a is not None)
        step = statistics.fmean(self.step_seconds) if self.step_seconds else 0.0
        return SlotState(self.bank.size, left, 0, step, self.step_running, self.idle_step_seconds)

    def _upload_groups(self) -> None:
        assert self.pool is not None
        rows = group_rows(self.slot_prefix, self.members, len(self.slot_prefix))
        self.pool.groups.copy_(_to_device(torch.tensor(rows, dtype=torch.int64), self.device))

    def _shrink(self) -> None:
        """Move the samples still running into the small bank's slots (only when none is in flight)."""
        small = self.small
        assert small is not None, "run() shrinks only when there is a small bank"
        moving = [slot for slot in range(small.size, len(self.active)) if self.active[slot] is not None]
        free = [slot for slot in range(small.size) if self.active[slot] is None]
        if moving:
            source = torch.tensor(moving, device=self.device)
            target = torch.tensor(free[: len(moving)], device=self.device)
            moved = [*self.keys, *self.values, self.tokens, self.positions, self.steps, self.seed_high, self.seed_low]
            moved += [*(self.key_scales or []), *(self.value_scales or [])]
            if self.pool is not None:
                moved += [self.pool.start, self.pool.length]
            for tensor in moved:
                if tensor.dtype == KV_FP8_DTYPE:  # index_copy_ has no float8 kernel: move the bytes
                    tensor = tensor.view(torch.uint8)
                tensor.index_copy_(0, target, tensor.index_select(0, source))
            for old, new in zip(moving, free):
                self.active[new], self.active[old] = self.active[old], None
            if self.pool is not None:
                for old, new in zip(moving, free):
                    self.slot_prefix[new], self.slot_prefix[old] = self.slot_prefix[old], None
                self._upload_groups()
        self.bank = small

    # --- host loop --------------------------------------------------------------------------------

    def _time_idle_step(self) -> float:
        """Seconds of a decode step of the full bank with no sample running (the fastest of a few)."""
        bank = self.full
        times = []
        for _ in range(3):
            _synchronize(self.device)
            begun = time.perf_counter()
            if bank.graph is not None:
                bank.graph.replay()
            else:
                self._steps(bank, self.steps_per_graph)
            _synchronize(self.device)
            times.append((time.perf_counter() - begun) / self.steps_per_graph)
        for state in (self.positions, self.tokens, self.steps, self.column):
            state.zero_()
        return min(times)

    def run(self, on_sample: SampleSink, started: float) -> None:
        if self.use_graphs:
            for bank in filter(None, (self.full, self.small)):
                self._capture(bank)
            torch.cuda.synchronize(self.device)
        self.idle_step_seconds = self._time_idle_step()
        self.setup_seconds = time.perf_counter() - started
        self._refill(first_chunk=0)
        self._launch(0)
        self.launched, handled = 1, 0
        ended: list[tuple[SampleTracker, FinishReason]] = []
        while True:
            running = sum(a is not None for a in self.active)
            busy = bool(self.pending) or running > 0
            ending = self.feed.exhausted and not self.pending
            shrink = self.bank is self.full and self.small is not None and ending and 0 < running <= self.small.size
            while busy and not shrink and self.launched - handled < 2:
                self._launch(self.launched)  # keep the GPU one chunk ahead of the host
                self.launched += 1
            # The samples that ended at the last look are decoded and handed on (journaled) only now,
            # with the next chunk already queued: that work need not fit between two chunks.
            finish(self.engine.tokenizer, self.jobs, ended, on_sample)
            ended = []
            if handled < self.launched:
                ended = self._handle(handled)
                handled += 1
            if shrink and handled == self.launched:
                self._shrink()
            self._refill(first_chunk=self.launched)
            if not busy and handled == self.launched:
                break
        finish(self.engine.tokenizer, self.jobs, ended, on_sample)

    def _handle(self, chunk: int) -> list[tuple[SampleTracker, FinishReason]]:
        """Take a chunk's tokens: the samples that ended in it (their slots are free now)."""
        buffer = chunk % 2
        ready = self.recent_ready[buffer]
        if ready is not None:
            ready.synchronize()
        now = time.perf_counter()
        if self.chunk_ready_at is not None:
            self.step_seconds.append((now - self.chunk_ready_at) / self.chunk_steps)
            self.step_running = sum(a is not None and a.first_chunk <= chunk for a in self.active)
        self.chunk_ready_at = now
        block = self.recent_host[buffer].numpy()
        # The whole block at once (EOS positions, Python lists): per slot only list work remains, so
        # the host's look stays well inside the GPU's next chunk at hundreds of slots.
        first_eos = first_eos_positions(block, self.engine.eos_ids).tolist()
        rows = block.tolist()
        ended: list[tuple[SampleTracker, FinishReason]] = []
        running: list[tuple[int, SampleTracker]] = []
        for slot, active in enumerate(self.active):
            if active is None or active.first_chunk > chunk:
                continue
            reason = active.tracker.take(rows[slot], first_eos[slot])
            if reason is None:
                running.append((slot, active.tracker))
            else:
                ended.append((active.tracker, reason))
                self.active[slot] = None
        recent = block[[slot for slot, _ in running]]
        for (slot, tracker), stopped in zip(running, self.engine.eof_scanner.hits([t for _, t in running], recent)):
            if stopped:
                ended.append((tracker, FinishReason.STOP))
                self.active[slot] = None
        return ended


def cache_argument(model: Any) -> str:
    """The name of the model forward's cache argument: transformers renamed past_key_values to cache (5.2x)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _triton_applies_to(model: Any) -> bool:
    """Whether the Triton attention kernels take this model's heads, dtype and device."""
    probe = torch.empty(1, 1, 1, _head_dim(model.config), dtype=model.dtype, device=next(model.parameters()).device)
    return triton_applies(probe)


def _pool_tokens(jobs: Sequence[PromptJob], prompts: list[list[int]], slots: int) -> int:
    """Pool size for the shared prefixes: the prompts that can be running at once.  A prompt stays as
    long as its longest sample runs, so with n samples per prompt about 4 * slots / n prompts are
    alive at a time (room for that many of the average length); never less than the longest prompt,
    never more than all of them."""
    lengths = [len(p) - 1 for p in prompts]
    per_prompt = max(1.0, sum(len(job.samples) for job in jobs) / len(jobs))
    alive = min(len(jobs), slots, -(-4 * slots // int(per_prompt)))
    mean = sum(lengths) / len(lengths)
    return max(1, min(sum(lengths), max(lengths) + int(alive * mean)))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Pinned + non_blocking: the copy queues behind the chunk already launched instead of waiting for it.
    if device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
