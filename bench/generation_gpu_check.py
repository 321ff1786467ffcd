"""GPU self-check of the fast engine (run before trusting bench/generation.py on a new machine):
the Triton decode attention against the torch one, greedy fast-engine tokens against
``model.generate`` (fp32 and bf16, CUDA graphs on), sampled tokens across slot counts, and the step
time of a 1.5B-shape model with each attention kernel.  Prints one JSON object per check."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

import torch

from bench.generation import (
    DEFAULT_PROMPTS,
    build_model,
    build_tokenizer,
    evenly_spaced,
    load_prompts,
)
from harness.generation.attention import torch_decode_attention
from harness.generation.fast_engine import FastEngine, FastEngineOptions
from harness.generation.plan import (
    GenerationSettings,
    PromptJob,
    SampleSpec,
    SamplingSettings,
    plan_jobs,
)


def report(name: str, **values) -> None:
    print(json.dumps({"check": name, **values}), flush=True)


def check_kernel() -> None:
    from harness.generation.triton_attention import triton_decode_attention

    torch.manual_seed(0)
    for slots, heads, kv_heads, capacity, dim in [(64, 12, 2, 3700, 128), (32, 24, 8, 1500, 128), (8, 8, 8, 700, 64)]:
        q = torch.randn(slots, 1, heads, dim, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
        k = torch.randn(slots, kv_heads, capacity, dim, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        lengths = torch.randint(1, capacity + 1, (slots,), device="cuda")
        lengths[0], lengths[1] = 1, capacity
        ref = torch_decode_attention(q.float(), k.float(), v.float(), lengths, dim**-0.5)
        got = triton_decode_attention(q, k, v, lengths, dim**-0.5).float()
        report("triton_vs_torch_fp32", shape=[slots, heads, kv_heads, capacity, dim], max_abs_diff=(ref - got).abs().max().item())


def _run(engine, jobs):
    found = {}
    engine.run(jobs, lambda s: found.setdefault((s.task_id, s.index), s))
    return found


def check_greedy(tokenizer, prompts) -> None:
    from transformers import Qwen2Config

    for dtype in (torch.float32, torch.bfloat16):
        config = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=512,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=64,
            eos_token_id=None,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        )
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" not in name:
                    p.mul_(8)
        greedy = SamplingSettings(temperature=0.0)
        jobs = plan_jobs(prompts[:6], GenerationSettings("m", n=2, max_new_tokens=64, sampling=greedy))
        found = _run(FastEngine(model, tokenizer, greedy, FastEngineOptions(slots=5, chunk_steps=8)), jobs)
        equal = prefix = total = 0
        for task_id, prompt in prompts[:6]:
            inputs = tokenizer(prompt, return_tensors="pt").to("cuda")
            with torch.inference_mode():
                ref = model.generate(**inputs, do_sample=False, max_new_tokens=64, pad_token_id=tokenizer.pad_token_id)[
                    0, inputs["input_ids"].shape[1] :
                ].tolist()
            for i in range(2):
                got = list(found[(task_id, i)].token_ids)
                total += 1
                equal += got == ref[: len(got)]
                prefix += next((j for j, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
        report("greedy_fast_vs_generate", dtype=str(dtype), samples=total, identical=equal, mean_common_prefix=prefix / total)
        sampled = SamplingSettings(0.7, 50, 0.95, seed=1)
        jobs = plan_jobs(prompts[:6], GenerationSettings("m", n=4, max_new_tokens=48, sampling=sampled))
        a = _run(FastEngine(model, tokenizer, sampled, FastEngineOptions(slots=7, chunk_steps=8)), jobs)
        b = _run(FastEngine(model, tokenizer, sampled, FastEngineOptions(slots=24, chunk_steps=16)), jobs)
        report(
            "sampled_slots_7_vs_24", dtype=str(dtype), samples=len(a), identical=sum(a[k].token_ids == b[k].token_ids for k in a)
        )
        del model
        torch.cuda.empty_cache()


def check_speed(tokenizer, prompts) -> None:
    model = build_model("qwen2.5-coder-1.5b", torch.bfloat16, "cuda", tokenizer.eos_token_id, tokenizer.pad_token_id)
    sampling = SamplingSettings(0.2, 50, 0.95)
    chosen = evenly_spaced(prompts, 26)
    for kernel in ("triton", "torch"):
        jobs = [PromptJob(t, p, tuple(SampleSpec(i, i, 160) for i in range(20))) for t, p in chosen]
        engine = FastEngine(model, tokenizer, sampling, FastEngineOptions(slots=512, chunk_steps=16, attention_kernel=kernel))
        torch.cuda.synchronize()
        started = time.perf_counter()
        found = _run(engine, jobs)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        stats = engine.last_run
        loop = seconds - stats.setup_seconds
        report(
            "speed_1.5b",
            kernel=kernel,
            slots=stats.slots,
            steps=stats.decode_steps,
            seconds=seconds,
            setup_seconds=stats.setup_seconds,
            ms_per_step=1000 * loop / stats.decode_steps,
            tokens=sum(len(s.token_ids) for s in found.values()),
            raw_tok_s=stats.row_steps / loop,
            peak_gib=torch.cuda.max_memory_allocated() / 2**30,
        )


if __name__ == "__main__":
    import importlib.util

    report(
        "environment",
        torch=torch.__version__,
        gpu=torch.cuda.get_device_name(0),
        **{
            name: importlib.util.find_spec(name) is not None
            for name in ("triton", "docker", "click", "tqdm", "datasets", "numpy", "pyarrow")
        },
    )
    all_prompts = load_prompts(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PROMPTS)
    small_tokenizer = build_tokenizer([p for _, p in all_prompts], 4096)
    check_kernel()
    check_greedy(small_tokenizer, evenly_spaced(all_prompts, 6))
    check_speed(build_tokenizer([p for _, p in all_prompts], 151936), all_prompts)
