"""The reference engine: ``model.generate`` on left-padded batches of samples.

It works for any causal LM transformers supports.  Token selection is the same as the fast engine's:
a logits processor applies generate's temperature/top-k/top-p filter and the hash-seeded Gumbel draw,
and generate (with ``do_sample=False``) takes the argmax, which is that draw.  Greedy settings use
generate's own greedy decoding untouched.  A stopping criterion ends rows at their token budget and,
every ``check_every`` steps, at the official EOF strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from harness.generation.engine import (
    EofScanner,
    FinishReason,
    JobSource,
    SampleFeed,
    SampleSink,
    SampleTracker,
    eos_token_ids,
    finish,
    job_source,
    kv_bytes_per_token,
    prompt_token_ids,
    rows_that_fit,
    run_shrinking_on_oom,
)
from harness.generation.plan import PromptJob, SamplingSettings
from harness.generation.sampling import choose_tokens, split_seeds

MAX_AUTO_ROWS = 256


class HFEngine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        sampling: SamplingSettings,
        batch_size: int | None = None,
        check_every: int = 16,
        say: Callable[[str], None] | None = None,
    ):
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling
        self.batch_size, self.check_every, self.say = batch_size, check_every, say
        self.eos_ids = eos_token_ids(model)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (int(self.eos_ids[0]) if len(self.eos_ids) else 0)

    def run(self, jobs: Sequence[PromptJob] | JobSource, on_sample: SampleSink) -> None:
        source = job_source(jobs)
        planned = source.planned  # sizes the batches; the jobs themselves are taken from the source batch by batch
        if not planned:
            return
        prompts = {job.task_id: ids for job, ids in zip(planned, prompt_token_ids(self.tokenizer, planned))}
        rows = sum(len(job.samples) for job in planned)
        batch = self.batch_size or self._auto_rows(
            max(map(len, prompts.values())), max(s.max_new_tokens for j in planned for s in j.samples), rows
        )

        def attempt(remaining: JobSource, batch_rows: int, sink: SampleSink) -> None:
            feed = SampleFeed(remaining, prompts)
            while True:
                feed.top_up(batch_rows)
                if not feed.pending:
                    return
                work = [feed.pending.popleft() for _ in range(min(batch_rows, len(feed.pending)))]
                self._generate(feed.jobs, prompts, work, sink)

        from transformers import GenerationConfig

        # Only our settings apply: the checkpoint's generation_config.json could add processors
        # (repetition penalty, its own top-k...) that the fast engine would not apply.
        saved = self.model.generation_config
        self.model.generation_config = GenerationConfig(
            bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id, pad_token_id=saved.pad_token_id
        )
        try:
            with torch.inference_mode():
                run_shrinking_on_oom(attempt, source, batch, on_sample, self.say)
        finally:
            self.model.generation_config = saved

    def _auto_rows(self, prompt_max: int, new_max: int, rows: int) -> int:
        device = self.model.device
        if device.type != "cuda":
            return max(1, min(16, rows))
        free, _ = torch.cuda.mem_get_info(device)
        config = self.model.config
        per_row = kv_bytes_per_token(config, self.model.dtype) * (prompt_max + new_max) + 4 * 4 * config.vocab_size
        reserved = 4 * 2**30
        return min(rows, rows_that_fit(int(free * 0.9), per_row, reserved, MAX_AUTO_ROWS))

    def _generate(self, jobs: Sequence[PromptJob], prompts: dict[int, list[int]], rows: list, on_sample: SampleSink) -> None:
        from transformers import (
            GenerationConfig,
            LogitsProcessorList,
            StoppingCriteriaList,
        )

        device = self.model.device
        ids = [prompts[jobs[j].task_id] for j, _ in rows]
        width = max(map(len, ids))
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, prompt in enumerate(ids):  # left padding, as decoder-only batching needs
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        trackers = [SampleTracker(j, spec, self.eos_ids) for j, spec in rows]
        stopper = _StopRows(trackers, self.tokenizer, width, self.check_every)
        processors = LogitsProcessorList()
        if not self.sampling.greedy:
            high, low = split_seeds([spec.seed for _, spec in rows], device)
            processors.append(_HashDraw(self.sampling, high, low, width))
        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max(spec.max_new_tokens for _, spec in rows),
            eos_token_id=self.eos_ids.tolist() or None,
            pad_token_id=self.pad_id,
        )
        output = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
        stopper.catch_up(output)
        finish(self.tokenizer, jobs, [(t, r) for t, r in zip(trackers, stopper.reasons) if r is not None], on_sample)


class _HashDraw:
    """A logits processor that leaves only the token the hash-seeded sampler picks (so argmax = the draw)."""

    def __init__(self, sampling: SamplingSettings, seed_high: torch.Tensor, seed_low: torch.Tensor, prompt_width: int):
        self.sampling, self.seed_high, self.seed_low, self.prompt_width = sampling, seed_high, seed_low, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        steps = torch.full_like(self.seed_low, input_ids.shape[1] - self.prompt_width)
        chosen = choose_tokens(scores.float(), self.sampling, self.seed_high, self.seed_low, steps)
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, chosen[:, None], 0.0)


class _StopRows:
    """A stopping criterion: rows end at their token budget (checked on the device every step) and at
    the official EOF strings (checked on the host every ``every`` steps); generate itself ends rows at EOS."""

    def __init__(self, trackers: list[SampleTracker], tokenizer: Any, prompt_width: int, every: int):
        self.trackers, self.tokenizer, self.prompt_width, self.every = trackers, tokenizer, prompt_width, every
        self.scanner = EofScanner(tokenizer)
        self.reasons: list[FinishReason | None] = [None] * len(trackers)
        self.seen = 0
        self.done: torch.Tensor | None = None
        self.budgets: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_width
        if self.budgets is None or self.done is None:  # both are set on the first step
            self.budgets = torch.tensor([t.spec.max_new_tokens for t in self.trackers], device=input_ids.device)
            self.done = torch.zeros(len(self.trackers), dtype=torch.bool, device=input_ids.device)
        if generated % self.every == 0:
            self.catch_up(input_ids)
        # Budgets are checked every step without a host round trip.
        return self.done | (self.budgets <= generated)

    def catch_up(self, input_ids: torch.Tensor) -> None:
        """Feed the tokens generated since the last look to the trackers and end rows that are done."""
        generated = input_ids.shape[1] - self.prompt_width
        if generated <= self.seen:
            return
        fresh = input_ids[:, self.prompt_width + self.seen :].cpu().numpy()
        self.seen = generated
        running = []
        for row, tracker in enumerate(self.trackers):
            if self.reasons[row] is None:
                self.reasons[row] = tracker.extend(fresh[row])
                if self.reasons[row] is None:
                    running.append(row)
        for row, stopped in zip(running, self.scanner.hits([self.trackers[r] for r in running], fresh[running])):
            if stopped:
                self.reasons[row] = FinishReason.STOP
        if self.done is not None:
            self.done = torch.tensor([r is not None for r in self.reasons], device=input_ids.device)
