"""Both engines on tiny real models (CPU): the fast engine's greedy tokens equal ``model.generate``'s
for Qwen2 and Llama configs, across slot refills; sampled tokens equal the hf engine's and do not
depend on the slot count; budgets, EOS, early EOF stops and out-of-memory halving behave."""

from __future__ import annotations

import pytest
import torch

from harness.data.prompts import truncate_at_eof
from harness.generation import engine as engine_module
from harness.generation import fast_engine as fast_module
from harness.generation.decode_step import DecodeStep
from harness.generation.engine import (
    EofScanner,
    FinishReason,
    SampleTracker,
    load_model,
)
from harness.generation.fast_engine import (
    FastEngine,
    FastEngineOptions,
    unsupported_reason,
)
from harness.generation.hf_engine import HFEngine
from harness.generation.plan import (
    GenerationSettings,
    PromptJob,
    SampleSpec,
    SamplingSettings,
    plan_jobs,
)
from tests.support.tiny_model import build_tiny_model, char_tokenizer

PROMPTS = [
    (0, "\nQUESTION:\nAdd two numbers a and b.\nUse Standard Input format\nANSWER:\n"),
    (3, "\nQUESTION:\nx\nANSWER:\n"),
    (7, "def f(n):\n    return n * 2\n" * 3),
    (9, "Q"),
]
GREEDY = SamplingSettings(temperature=0.0)
SAMPLED = SamplingSettings(temperature=0.7, top_k=20, top_p=0.9, seed=11)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tiny(request, tmp_path_factory):
    directory = build_tiny_model(tmp_path_factory.mktemp(request.param), request.param)
    model, tokenizer = load_model(str(directory), "float32", "cpu")
    return model, tokenizer


def _run(engine, jobs) -> dict[tuple[int, int], object]:
    found = {}
    engine.run(jobs, lambda sample: found.setdefault((sample.task_id, sample.index), sample))
    return found


def _reference(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def _with_eos(model, token_id: int):
    """Make ``token_id`` the end-of-sequence token (for model.generate and both engines)."""
    model.generation_config.eos_token_id = token_id
    model.config.eos_token_id = token_id


@pytest.fixture
def frequent_eos(tiny):
    """Use a token greedy decoding actually produces as EOS, so that samples end by themselves."""
    model, tokenizer = tiny
    saved = (model.generation_config.eos_token_id, model.config.eos_token_id)
    _with_eos(model, None)
    tokens = _reference(model, tokenizer, PROMPTS[0][1], 40)
    _with_eos(model, tokens[25])
    yield tokens[25]
    model.generation_config.eos_token_id, model.config.eos_token_id = saved


@pytest.mark.parametrize("slots, chunk", [(3, 5), (16, 4)])
def test_fast_greedy_equals_generate_token_for_token(tiny, frequent_eos, slots, chunk):
    model, tokenizer = tiny
    settings = GenerationSettings("tiny", n=3, max_new_tokens=48, sampling=GREEDY)
    jobs = plan_jobs(PROMPTS, settings)
    engine = FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=slots, chunk_steps=chunk))
    found = _run(engine, jobs)
    assert len(found) == 12
    reasons = set()
    for task_id, prompt in PROMPTS:
        expected = _reference(model, tokenizer, prompt, 48)
        for index in range(3):
            sample = found[(task_id, index)]
            reasons.add(sample.finish_reason)
            if sample.finish_reason is FinishReason.STOP:
                assert list(sample.token_ids) == expected[: len(sample.token_ids)]
                assert truncate_at_eof(sample.text) == truncate_at_eof(tokenizer.decode(expected, skip_special_tokens=True))
            else:
                assert list(sample.token_ids) == expected
                assert sample.text == tokenizer.decode(expected, skip_special_tokens=True)
    assert FinishReason.EOS in reasons and FinishReason.LENGTH in reasons


def test_prompts_taken_together_are_prefilled_in_one_forward(tiny, monkeypatch):
    """A refill prefills its new prompts in one right-padded batch through the decode step's layers; the
    samples equal those of one prompt a batch (fp32), and prefill_batch bounds the batch."""
    model, tokenizer = tiny
    jobs = plan_jobs(PROMPTS, GenerationSettings("tiny", n=2, max_new_tokens=24, sampling=SAMPLED))
    with_prefix = sum(len(tokenizer(prompt)["input_ids"]) > 1 for _, prompt in PROMPTS)  # the last token is decoded
    assert with_prefix >= 3
    found, batches = {}, {}
    prefill = DecodeStep.prefill
    for batch in (16, 2, 1):
        shapes: list[tuple[int, ...]] = []

        def record(step, tokens, *args, shapes=shapes):
            shapes.append(tuple(tokens.shape))
            return prefill(step, tokens, *args)

        monkeypatch.setattr(DecodeStep, "prefill", record)
        engine = FastEngine(model, tokenizer, SAMPLED, FastEngineOptions(slots=16, chunk_steps=4, prefill_batch=batch))
        found[batch] = {key: list(sample.token_ids) for key, sample in _run(engine, jobs).items()}
        batches[batch] = [shape[0] for shape in shapes]
    # All the prompts are taken in the first refill: all at once, two at a time, or one at a time.
    assert batches[16] == [with_prefix]
    assert sorted(batches[2], reverse=True) == [2] * (with_prefix // 2) + [1] * (with_prefix % 2)
    assert batches[1] == [1] * with_prefix
    assert found[16] == found[2] == found[1] and len(found[1]) == 8
    with pytest.raises(ValueError, match="prefill_batch"):
        FastEngineOptions(prefill_batch=0)


def test_steps_per_graph_must_divide_the_chunk():
    assert FastEngineOptions(chunk_steps=16, steps_per_graph=4).steps_per_graph == 4
    for wrong in (0, 3, 32):
        with pytest.raises(ValueError, match="steps_per_graph"):
            FastEngineOptions(chunk_steps=16, steps_per_graph=wrong)


@pytest.mark.parametrize("family", ["qwen3", "mistral"])
def test_fast_greedy_equals_generate_for_other_supported_families(family, tmp_path):
    model, tokenizer = load_model(str(build_tiny_model(tmp_path / family, family)), "float32", "cpu")
    assert unsupported_reason(model) is None
    jobs = plan_jobs(PROMPTS, GenerationSettings("tiny", n=2, max_new_tokens=32, sampling=GREEDY))
    found = _run(FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=3, chunk_steps=4)), jobs)
    for task_id, prompt in PROMPTS:
        expected = _reference(model, tokenizer, prompt, 32)
        for index in range(2):
            tokens = list(found[(task_id, index)].token_ids)
            assert tokens == expected[: len(tokens)]
            if found[(task_id, index)].finish_reason is not FinishReason.STOP:
                assert tokens == expected


def test_hf_engine_greedy_equals_generate(tiny, frequent_eos):
    model, tokenizer = tiny
    jobs = plan_jobs(PROMPTS, GenerationSettings("tiny", n=2, max_new_tokens=40, sampling=GREEDY))
    found = _run(HFEngine(model, tokenizer, GREEDY, batch_size=3, check_every=4), jobs)
    for task_id, prompt in PROMPTS:
        expected = _reference(model, tokenizer, prompt, 40)
        for index in range(2):
            tokens = list(found[(task_id, index)].token_ids)
            # Left padding in a mixed batch changes nothing for these fp32 models.
            assert tokens == expected[: len(tokens)]
            if found[(task_id, index)].finish_reason is not FinishReason.STOP:
                assert tokens == expected


def test_sampled_tokens_match_between_engines_and_slot_counts(tiny):
    model, tokenizer = tiny
    jobs = plan_jobs(PROMPTS, GenerationSettings("tiny", n=4, max_new_tokens=30, sampling=SAMPLED))
    few = _run(FastEngine(model, tokenizer, SAMPLED, FastEngineOptions(slots=2, chunk_steps=3)), jobs)
    many = _run(FastEngine(model, tokenizer, SAMPLED, FastEngineOptions(slots=7, chunk_steps=8)), jobs)
    reference = _run(HFEngine(model, tokenizer, SAMPLED, batch_size=4), jobs)
    assert set(few) == set(many) == set(reference) and len(few) == 16
    for key in reference:
        assert few[key].token_ids == many[key].token_ids == reference[key].token_ids
    # Different samples of one prompt really differ (their seeds do).
    assert len({few[(0, i)].token_ids for i in range(4)}) == 4


def test_per_sample_token_budgets(tiny):
    model, tokenizer = tiny
    budgets = [1, 2, 7, 33]
    jobs = [
        PromptJob(task_id, prompt, tuple(SampleSpec(i, i, b) for i, b in enumerate(budgets))) for task_id, prompt in PROMPTS[:2]
    ]
    for engine in (
        FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=3, chunk_steps=4)),
        HFEngine(model, tokenizer, GREEDY, batch_size=4),
    ):
        found = _run(engine, jobs)
        for task_id, prompt in PROMPTS[:2]:
            expected = _reference(model, tokenizer, prompt, 33)
            for index, budget in enumerate(budgets):
                sample = found[(task_id, index)]
                tokens = list(sample.token_ids)
                if sample.finish_reason is FinishReason.LENGTH:
                    assert tokens == expected[:budget]
                elif sample.finish_reason is FinishReason.EOS:
                    assert tokens == expected and len(tokens) <= budget
                else:
                    assert tokens == expected[: len(tokens)] and len(tokens) <= budget


def test_fast_engine_stops_early_at_an_end_string(tiny, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(model.generation_config, "eos_token_id", None)
    monkeypatch.setattr(model.config, "eos_token_id", None)
    expected = _reference(model, tokenizer, PROMPTS[0][1], 60)
    prefixes = [tokenizer.decode(expected[:length], skip_special_tokens=True) for length in range(len(expected) + 1)]
    marker = prefixes[-1][30:32]  # pretend this pair of characters is an EOF string
    first_end = next(length for length, text in enumerate(prefixes) if marker in text)  # in tokens
    monkeypatch.setattr(engine_module, "eof_position", lambda t: t.find(marker) if marker in t else None)
    monkeypatch.setattr(engine_module.EofScanner, "_LAST_CHARACTERS", frozenset(marker[-1]))  # what can end it
    chunk = 4
    jobs = plan_jobs(PROMPTS[:1], GenerationSettings("tiny", n=2, max_new_tokens=60, sampling=GREEDY))
    found = _run(FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=2, chunk_steps=chunk)), jobs)
    for sample in found.values():
        assert sample.finish_reason is FinishReason.STOP
        assert list(sample.token_ids) == expected[: len(sample.token_ids)]
        # Stopped within one chunk of the token that completed the string.
        assert first_end <= len(sample.token_ids) < first_end + chunk


@pytest.mark.parametrize("filtered", [False, True])
def test_tracker_finds_end_strings_across_chunk_boundaries(filtered):
    tokenizer = char_tokenizer(add_bos=False)
    text = "print(1)\nQUESTION:\nmore"
    ids = tokenizer(text)["input_ids"]
    end = text.index("\nQUESTION") + len("\nQUESTION")
    for chunk in (1, 2, 3, 5, 8):
        tracker = SampleTracker(0, SampleSpec(0, 0, 100), engine_module.np.array([tokenizer.eos_token_id]))
        scanner = EofScanner(tokenizer)
        stopped_at = None
        for start in range(0, len(ids), chunk):
            fresh = ids[start : start + chunk]
            assert tracker.extend(fresh) is None
            recent = engine_module.np.array([fresh + [0] * (chunk - len(fresh))]) if filtered else None
            if scanner.hits([tracker], recent)[0]:
                stopped_at = len(tracker.tokens)
                break
        assert stopped_at is not None and end <= stopped_at < end + chunk


def test_the_scanner_decodes_only_windows_that_can_end_a_string_and_stops_where_a_full_scan_does(monkeypatch):
    # Multi-character tokens (a byte-level BPE trained on code), many samples, EOF strings of every kind
    # at random places and split across tokens and chunks: skipping the windows with no token that
    # holds an EOF string's last character stops every sample at the same token as decoding them all.
    from harness.training.tokenizer import byte_level_tokenizer

    random = __import__("random").Random(7)
    code = "def solve(n):\n    return [i * i for i in range(n) if i % 3 == 0]\nprint(solve(int(input())))\n"
    tokenizer = byte_level_tokenizer([code * 20, "\nQUESTION\n---\nANSWER:\n<|endoftext|>" * 5], vocab_size=600)
    texts = [
        code * random.randint(1, 4) + random.choice(["\nQUESTION:", "\n---", "\nANSWER", "<|endoftext|>", ""]) + code
        for _ in range(60)
    ]
    eos = engine_module.np.array([-1])
    decoded: list[int] = []
    original = engine_module.decode_texts

    def counting(tokenizer, sequences):
        decoded.append(len(sequences))
        return original(tokenizer, sequences)

    results = {}
    for filtered in (False, True):
        scanner = EofScanner(tokenizer)
        trackers = [SampleTracker(0, SampleSpec(i, 0, 10_000), eos) for i in range(len(texts))]
        streams = [tokenizer(text)["input_ids"] for text in texts]
        stops: dict[int, int | None] = dict.fromkeys(range(len(texts)))
        monkeypatch.setattr(engine_module, "decode_texts", counting)
        decoded.clear()
        for start in range(0, max(map(len, streams)), 16):
            running = [i for i in range(len(texts)) if stops[i] is None and start < len(streams[i])]
            block = engine_module.np.zeros((len(running), 16), dtype=engine_module.np.int64)
            for row, i in enumerate(running):
                fresh = streams[i][start : start + 16]
                trackers[i].extend(fresh)
                block[row, : len(fresh)] = fresh
            for i, hit in zip(running, scanner.hits([trackers[i] for i in running], block if filtered else None)):
                if hit:
                    stops[i] = len(trackers[i].tokens)
        monkeypatch.setattr(engine_module, "decode_texts", original)
        results[filtered] = (stops, sum(decoded))
    assert results[True][0] == results[False][0]
    assert sum(stop is not None for stop in results[True][0].values()) >= 30
    assert results[True][1] < results[False][1]  # fewer windows decoded


def test_out_of_memory_halves_the_slots_and_loses_nothing(tiny, monkeypatch):
    model, tokenizer = tiny
    original = fast_module._SlotRun.__init__

    def allocate(self, engine, jobs, prompts, capacity, slots, *intake):
        if slots > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        original(self, engine, jobs, prompts, capacity, slots, *intake)

    monkeypatch.setattr(fast_module._SlotRun, "__init__", allocate)
    messages = []
    jobs = plan_jobs(PROMPTS, GenerationSettings("tiny", n=2, max_new_tokens=20, sampling=GREEDY))
    engine = FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=9, chunk_steps=4), say=messages.append)
    found = _run(engine, jobs)
    assert engine.last_run.slots == 2 and len(messages) == 2 and "batch size 2" in messages[-1]
    # The stats are the completed attempt's; GPU times exist only on CUDA.
    assert engine.last_run.wall_seconds > 0 and engine.last_run.decode_gpu_seconds is None
    for task_id, prompt in PROMPTS:
        assert list(found[(task_id, 0)].token_ids) == _reference(model, tokenizer, prompt, 20)


def test_out_of_memory_midway_keeps_finished_samples(tiny, monkeypatch):
    model, tokenizer = tiny
    calls = []
    original = model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if len(calls) == 2:  # the second batch fails once
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    jobs = plan_jobs(PROMPTS, GenerationSettings("tiny", n=2, max_new_tokens=10, sampling=GREEDY))
    emitted = []
    HFEngine(model, tokenizer, GREEDY, batch_size=4).run(jobs, lambda s: emitted.append((s.task_id, s.index)))
    assert sorted(emitted) == sorted((t, i) for t, _ in PROMPTS for i in range(2))  # each exactly once
    assert calls[:3] == [4, 4, 2]


def test_unsupported_architectures_are_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2))
    assert "gpt2" in unsupported_reason(model)
    with pytest.raises(ValueError, match="fast engine"):
        FastEngine(model, char_tokenizer(False), GREEDY)


def test_sliding_window_models_are_refused(tiny):
    model, _ = tiny
    config = model.config.__class__.from_dict({**model.config.to_dict(), "layer_types": ["sliding_attention", "full_attention"]})
    with_sliding_layers = type("Model", (), {"config": config, "_supports_attention_backend": True})()
    assert "sliding" in unsupported_reason(with_sliding_layers)


def test_end_of_run_moves_the_last_samples_into_the_small_bank(tiny, monkeypatch):
    model, tokenizer = tiny
    moved = []
    original = fast_module._SlotRun._shrink

    def shrink(self):
        moved.append([slot for slot in range(self.small.size, len(self.active)) if self.active[slot] is not None])
        original(self)

    monkeypatch.setattr(fast_module._SlotRun, "_shrink", shrink)
    monkeypatch.setattr(model.generation_config, "eos_token_id", None)  # budgets alone decide the lengths
    monkeypatch.setattr(model.config, "eos_token_id", None)
    budgets = [2, 3, 2, 3, 2, 40, 2, 30]  # task 0's longest sample sits in slot 5, above the small bank
    jobs = [
        PromptJob(task_id, prompt, tuple(SampleSpec(i, i, b) for i, b in enumerate(budgets))) for task_id, prompt in PROMPTS[:2]
    ]
    found = _run(FastEngine(model, tokenizer, GREEDY, FastEngineOptions(slots=12, chunk_steps=4)), jobs)
    assert len(moved) == 1 and moved[0], "the run should end in the small bank, after moving samples there"
    for task_id, prompt in PROMPTS[:2]:
        expected = _reference(model, tokenizer, prompt, 40)
        for index, budget in enumerate(budgets):
            tokens = list(found[(task_id, index)].token_ids)
            assert tokens == expected[: len(tokens)] and len(tokens) <= budget
            if found[(task_id, index)].finish_reason is FinishReason.LENGTH:
                assert len(tokens) == budget


@pytest.mark.parametrize("cleans_up", [False, True])
def test_decode_texts_is_batch_decode(cleans_up):
    """The texts the engines hand on are batch_decode's (special tokens skipped), whether the tokenizer's
    Rust decoder takes the batch or batch_decode does (a tokenizer that cleans up spaces)."""
    from harness.training.tokenizer import byte_level_tokenizer

    code = "def solve(n):\n    return [i * i for i in range(n)] , x . y\nprint(solve(int(input())))\n"
    tokenizer = byte_level_tokenizer([code * 20, "<|endoftext|>" * 5], vocab_size=400)
    tokenizer.clean_up_tokenization_spaces = cleans_up
    sequences = [tokenizer(code[: 10 * i] + "<|endoftext|>" + code)["input_ids"] for i in range(12)] + [[]]
    assert any(tokenizer.convert_tokens_to_ids("<|endoftext|>") in s for s in sequences)
    assert engine_module.decode_texts(tokenizer, sequences) == tokenizer.batch_decode(sequences, skip_special_tokens=True)
    assert engine_module.decode_texts(tokenizer, []) == []
