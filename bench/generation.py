"""Generation throughput on one GPU: the official procedure, batch-4 padded ``generate``,
``generate(cache_implementation="static")`` and the fast engine, for random-weight models of real
shapes, on the real TACO test prompts, with n samples per prompt and a stated output-length mix.

Random weights never choose to stop, so every sample gets a target length drawn from the mix and
the engines stop it there (the per-sample token budget).  "Useful" tokens are the tokens of the
samples up to their end; "raw" tokens are all rows x steps the GPU computed, including rows that had
already finished (padding, idle slots).  The baselines are measured over short runs and extrapolated
per token (see ``--help`` and the written section for exactly what is run).

    python bench/generation.py --out results.json              # measure (GPU machine)
    python bench/generation.py --render results*.json --markdown docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_PROMPTS = REPO.parent / "shared" / "data" / "taco_test_official_prompts_no_tests.jsonl"
HEADING = "## Generation throughput (issue: harness generate)"

SHAPES = {
    # name: (family, hidden, layers, heads, kv_heads, head_dim, mlp, vocab)
    "qwen2.5-coder-1.5b": ("qwen2", 1536, 28, 12, 2, 128, 8960, 151936),
    "llama-3.2-3b": ("llama", 3072, 28, 24, 8, 128, 8192, 128256),
    "tiny": ("qwen2", 128, 2, 4, 2, 32, 256, 4096),  # for checking this script on a CPU
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="qwen2.5-coder-1.5b,llama-3.2-3b")
    parser.add_argument("--prompts-file", type=Path, default=DEFAULT_PROMPTS)
    parser.add_argument("--prompts", type=int, default=1000, help="Prompts for the fast engine (evenly spaced over the 1,000).")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--long-fraction", type=float, default=0.15, help="Share of samples that run to the maximum.")
    parser.add_argument("--short-range", default="100,600", help="Uniform range of the other samples' lengths.")
    parser.add_argument("--methods", default="official,batch4,static,fast")
    parser.add_argument("--static-batches", default="256,512", help="generate(static) batch sizes (per shape: name=256:512;...)")
    parser.add_argument("--baseline-steps", type=int, default=64, help="Decode steps measured for the baselines.")
    parser.add_argument("--slots", type=int, default=None, help="Fast engine slots (default: auto).")
    parser.add_argument("--chunk-steps", type=int, default=16)
    parser.add_argument("--attention-kernel", default="auto")
    parser.add_argument("--out", type=Path, help="Write the measurements as JSON here.")
    parser.add_argument("--render", type=Path, nargs="+", help="Render JSON files written by --out instead of measuring.")
    parser.add_argument("--markdown", type=Path, help="Write/replace the section in this markdown file.")
    args = parser.parse_args()

    if args.render:
        runs = [json.loads(path.read_text()) for path in args.render]
    else:
        runs = [measure(args)]
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(runs[0], indent=2))
    section = render(runs)
    print(section)
    if args.markdown:
        from bench.sections import write_section

        write_section(args.markdown, HEADING, section)


# --- workload ------------------------------------------------------------------------------------


def load_prompts(path: Path) -> list[tuple[int, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["task_id"], row["prompt"]) for row in rows]


def evenly_spaced(items: list, count: int) -> list:
    if count >= len(items):
        return list(items)
    return [items[round(i * len(items) / count)] for i in range(count)]


def target_lengths(count: int, max_new: int, long_fraction: float, short: tuple[int, int], seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [max_new if rng.random() < long_fraction else rng.randint(*short) for _ in range(count)]


def batch_shares(
    batch: int, max_new: int, long_fraction: float, short: tuple[int, int], trials: int = 2000
) -> tuple[float, float]:
    """(mean sample length, mean longest length in a batch): a static batch runs as many steps as its
    longest row, so mean length / mean longest is the share of its row-steps that are useful."""
    rng = random.Random(1)
    lengths, longest = [], []
    for _ in range(trials):
        batch_lengths = [max_new if rng.random() < long_fraction else rng.randint(*short) for _ in range(batch)]
        lengths.extend(batch_lengths)
        longest.append(max(batch_lengths))
    return statistics.mean(lengths), statistics.mean(longest)


def build_tokenizer(prompts: list[str], vocab_size: int):
    """Byte-level BPE trained in-process on the prompts (it stops near 20k tokens), padded with filler
    tokens up to the model's vocabulary so that every id the model samples decodes to text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 32000),
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(prompts, trainer)
    spec = json.loads(backend.to_str())
    vocab = spec["model"]["vocab"]
    for token_id in range(len(vocab), vocab_size):
        vocab[f"ĠĠ{token_id:x}"] = token_id
    backend = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", padding_side="left")


def build_model(shape: str, dtype, device: str, eos_id: int, pad_id: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    family, hidden, layers, heads, kv_heads, head_dim, mlp, vocab = SHAPES[shape]
    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=mlp,
        max_position_embeddings=32768,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    config = Qwen2Config(**common) if family == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


# --- measurements --------------------------------------------------------------------------------


def measure(args) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    short = tuple(int(x) for x in args.short_range.split(","))
    all_prompts = load_prompts(args.prompts_file)
    chosen = evenly_spaced(all_prompts, args.prompts)
    methods = args.methods.split(",")
    results = {
        "command": "python bench/generation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": _machine(device),
        "prompts_file": args.prompts_file.name,
        "prompts_total": len(all_prompts),
        "prompts_fast": len(chosen),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "mix": {"long_fraction": args.long_fraction, "short": list(short)},
        "baseline_steps": args.baseline_steps,
        "shapes": {},
    }
    static_batches = _per_shape(args.static_batches)
    for shape in args.shapes.split(","):
        print(f"== {shape}", file=sys.stderr)
        vocab = SHAPES[shape][7]
        tokenizer = build_tokenizer([p for _, p in all_prompts], vocab)
        prompt_tokens = [len(tokenizer(p)["input_ids"]) for _, p in chosen]
        out: dict = {
            "prompt_tokens_mean": statistics.mean(prompt_tokens),
            "prompt_tokens_max": max(prompt_tokens),
        }
        results["shapes"][shape] = out
        if "official" in methods:  # cheap, and first: a run cut short still has it
            model = build_model(shape, torch.float32, device, tokenizer.eos_token_id, tokenizer.pad_token_id)
            out["official"] = measure_official(model, tokenizer, chosen, args)
            del model
            _free_memory()
            _flush(results, args)
        model = build_model(shape, torch.bfloat16, device, tokenizer.eos_token_id, tokenizer.pad_token_id)
        out["parameters"] = sum(p.numel() for p in model.parameters())
        if "batch4" in methods:
            out["batch4"] = measure_padded(model, tokenizer, chosen, 4, args, short)
            _flush(results, args)
        if "fast" in methods:
            out["fast"] = measure_fast(model, tokenizer, chosen, args, short)
            _flush(results, args)
            _free_memory()
        if "static" in methods:
            out["static"] = []
            for batch in static_batches.get(shape, static_batches.get("*", [256])):
                try:
                    out["static"].append(measure_static(model, tokenizer, chosen, batch, args, short))
                except Exception as exc:  # an OOM at one batch size must not lose the others
                    out["static"].append({"batch": batch, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                _flush(results, args)
                torch._dynamo.reset()
                _free_memory()
        del model
        _free_memory()
    return results


def _per_shape(text: str) -> dict[str, list[int]]:
    if "=" not in text:
        return {"*": [int(x) for x in text.split(",")]}
    table = {}
    for part in text.split(";"):
        name, sizes = part.split("=")
        table[name] = [int(x) for x in sizes.split(":")]
    return table


def _flush(results: dict, args) -> None:
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure_fast(model, tokenizer, chosen, args, short) -> dict:
    from harness.generation.fast_engine import FastEngine, FastEngineOptions
    from harness.generation.plan import (
        PromptJob,
        SampleSpec,
        SamplingSettings,
        sample_seed,
    )

    sampling = SamplingSettings(temperature=0.2, top_k=50, top_p=0.95, seed=0)
    lengths = iter(target_lengths(len(chosen) * args.n, args.max_new_tokens, args.long_fraction, short))
    jobs = [
        PromptJob(task_id, prompt, tuple(SampleSpec(i, sample_seed(0, task_id, i), next(lengths)) for i in range(args.n)))
        for task_id, prompt in chosen
    ]
    planned = sum(s.max_new_tokens for job in jobs for s in job.samples)
    options = FastEngineOptions(slots=args.slots, chunk_steps=args.chunk_steps, attention_kernel=args.attention_kernel)
    engine = FastEngine(model, tokenizer, sampling, options, say=lambda m: print(m, file=sys.stderr))
    tokens, reasons = 0, {}

    def sink(sample):
        nonlocal tokens
        tokens += len(sample.token_ids)
        reasons[sample.finish_reason.value] = reasons.get(sample.finish_reason.value, 0) + 1

    _sync()
    started = time.perf_counter()
    engine.run(jobs, sink)
    _sync()
    seconds = time.perf_counter() - started
    stats = engine.last_run
    result = {
        "samples": sum(len(j.samples) for j in jobs),
        "planned_tokens": planned,
        "tokens": tokens,
        "finish_reasons": reasons,
        "seconds": seconds,
        "slots": stats.slots,
        "decode_steps": stats.decode_steps,
        "row_steps": stats.row_steps,
        "setup_seconds": stats.setup_seconds,
        "useful_tok_s": tokens / seconds,
        "raw_tok_s": stats.row_steps / seconds,
    }
    print(f"fast: {result}", file=sys.stderr)
    return result


def _left_padded(tokenizer, prompts: list[str], device):
    import torch

    ids = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, prompt in enumerate(ids):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return input_ids.to(device), mask.to(device)


class _StopAfter:
    """A stopping criterion ending every row after ``steps`` new tokens (to time short runs of a long setup)."""

    def __init__(self, width: int, steps: int):
        self.width, self.steps = width, steps

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = input_ids.shape[1] - self.width >= self.steps
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def _timed_generate(model, input_ids, mask, steps: int, **kwargs) -> tuple[float, int]:
    from transformers import StoppingCriteriaList

    _sync()
    started = time.perf_counter()
    out = model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        do_sample=True,
        temperature=0.2,
        top_p=0.95,
        stopping_criteria=StoppingCriteriaList([_StopAfter(input_ids.shape[1], steps)]),
        **kwargs,
    )
    _sync()
    return time.perf_counter() - started, out.shape[1] - input_ids.shape[1]


def measure_static(model, tokenizer, chosen, batch: int, args, short) -> dict:
    """generate(cache_implementation="static") on ``batch`` rows = batch/n prompts x n samples, with the
    cache sized for the full max_new_tokens (so each step costs what it costs in a full run), timed
    over a short run after a compile run; a full batch then takes prefill + max_new_tokens steps,
    since its longest row (almost surely a long sample) keeps it going."""
    per = max(1, batch // args.n)
    start = len(chosen) // 2
    prompts = [p for _, p in chosen[start : start + per] for _ in range(batch // per)]
    input_ids, mask = _left_padded(tokenizer, prompts, model.device)
    common = dict(max_new_tokens=args.max_new_tokens, cache_implementation="static", pad_token_id=tokenizer.pad_token_id)
    compile_seconds, _ = _timed_generate(model, input_ids, mask, 4, **common)
    short_seconds, short_steps = _timed_generate(model, input_ids, mask, 4, **common)
    long_seconds, long_steps = _timed_generate(model, input_ids, mask, 4 + args.baseline_steps, **common)
    step = (long_seconds - short_seconds) / (long_steps - short_steps)
    prefill = max(0.0, short_seconds - short_steps * step)
    mean_length, mean_longest = batch_shares(batch, args.max_new_tokens, args.long_fraction, short, trials=200)
    result = {
        "batch": batch,
        "prompt_width": input_ids.shape[1],
        "compile_seconds": compile_seconds,
        "step_ms": step * 1000,
        "prefill_seconds": prefill,
        "utilisation": mean_length / mean_longest,
        "raw_tok_s": batch / step,
        "useful_tok_s": batch * mean_length / (prefill + mean_longest * step),
    }
    print(f"static: {result}", file=sys.stderr)
    return result


def measure_padded(model, tokenizer, chosen, batch: int, args, short) -> dict:
    """The seed plan's fix: eager generate on left-padded batches of ``batch`` prompts."""
    start = len(chosen) // 3
    prompts = [p for _, p in chosen[start : start + batch]]
    input_ids, mask = _left_padded(tokenizer, prompts, model.device)
    _timed_generate(model, input_ids, mask, 4, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    short_seconds, short_steps = _timed_generate(
        model, input_ids, mask, 4, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id
    )
    long_seconds, long_steps = _timed_generate(
        model, input_ids, mask, 4 + args.baseline_steps, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id
    )
    step = (long_seconds - short_seconds) / (long_steps - short_steps)
    mean_length, mean_longest = batch_shares(batch, args.max_new_tokens, args.long_fraction, short)
    utilisation = mean_length / mean_longest
    result = {
        "batch": batch,
        "step_ms": step * 1000,
        "utilisation": utilisation,
        "raw_tok_s": batch / step,
        "useful_tok_s": batch / step * utilisation,
    }
    print(f"batch{batch}: {result}", file=sys.stderr)
    return result


def measure_official(model, tokenizer, chosen, args) -> dict:
    """TACO's generation.py: fp32, one generate call per sample (batch 1), seeded per sample."""
    import torch

    prompts = [p for _, p in chosen[:3]]
    seconds = tokens = 0.0
    for i, prompt in enumerate(prompts):
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        torch.manual_seed(i)
        _sync()
        started = time.perf_counter()
        out = model.generate(
            **inputs,
            do_sample=True,
            temperature=0.2,
            top_p=0.95,
            max_new_tokens=args.baseline_steps,
            min_new_tokens=args.baseline_steps,
            pad_token_id=tokenizer.pad_token_id,
        )
        _sync()
        if i:  # the first call warms up kernels and is not counted
            seconds += time.perf_counter() - started
            tokens += out.shape[1] - inputs["input_ids"].shape[1]
    result = {
        "calls": len(prompts) - 1,
        "tokens": tokens,
        "seconds": seconds,
        "raw_tok_s": tokens / seconds,
        "useful_tok_s": tokens / seconds,
    }
    print(f"official: {result}", file=sys.stderr)
    return result


def _machine(device: str) -> str:
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU"
    return f"{gpu}, torch {torch.__version__}, transformers {transformers.__version__}, {platform.platform()}"


# --- report --------------------------------------------------------------------------------------


def render(runs: list[dict]) -> str:
    """The markdown section for one or more runs (one per shape, or several shapes in one run)."""
    first = runs[0]
    mix, max_new = first["mix"], first["max_new_tokens"]
    lines = [
        HEADING,
        "",
        f"Machine: {first['machine']}. Random-weight models of the stated shapes, bf16 (the official procedure: fp32).",
        "",
        f"Workload: the official TACO test prompts (`{first['prompts_file']}`, {first['prompts_total']} prompts; "
        "the prompt count "
        f"of each run is below), n = {first['n']} samples per prompt, max_new_tokens = {max_new}, temperature 0.2, top-p 0.95, "
        f"top-k 50. **Output-length mix** (imposed, since random weights never stop): {mix['long_fraction']:.0%} of the samples "
        f"run to {max_new} tokens, the others are uniform in {mix['short'][0]}–{mix['short'][1]} tokens (mean about "
        f"{_mean_length(mix, max_new):.0f}). Prompts are tokenized with a byte-level BPE trained in-process on the 1,000 prompts "
        "and padded with filler tokens to the model's vocabulary size."
        + (
            " (`--prompts-file .gpudata/…` below is a copy of the default `../shared/data` file, carried to the GPU machine.)"
            if any("--prompts-file .gpudata/" in run["command"] for run in runs)
            else ""
        ),
        "",
        *_summary(runs),
        "Raw tok/s counts every row-step the GPU computed (rows that had finished, idle slots and padding included); useful "
        "tok/s counts the tokens of the samples. The fast engine is measured end to end over all the samples of the run "
        "(prefills, CUDA-graph capture, refills and the final drain included). The baselines are timed over "
        f"{first['baseline_steps']} decode steps after a warm-up and extrapolated per token: the official procedure (one "
        "sample per call, batch 1) wastes no rows and is assumed to stop where the mix says, which favours it; padded "
        "batches of 4 and generate(static) compute every row until the batch's longest sample ends, so their useful share "
        "is the mean length over the mean batch maximum (from the mix); a generate(static) batch costs its prefill plus "
        "that many steps, each at the measured step time (the static cache is sized for the full max_new_tokens, so "
        "every step costs what it costs in a full run). generate(static) batches are batch/n prompts × n samples, "
        "left-padded to the widest prompt of the batch.",
        "",
    ]
    for run in runs:
        for shape, out in run["shapes"].items():
            lines += [
                f"### {shape} shape ({out.get('parameters', 0) / 1e9:.2f}B parameters)",
                "",
                f"Command: `{run['command']}`",
                "",
                f"Prompts: {run['prompts_fast']} of {run['prompts_total']}"
                + (" (all)" if run["prompts_fast"] == run["prompts_total"] else ", evenly spaced (device-time budget)")
                + f", {out['prompt_tokens_mean']:.0f} tokens on average, {out['prompt_tokens_max']} at most.",
                "",
                "| method | raw tok/s | useful tok/s | useful vs best generate(static) |",
                "|---|---|---|---|",
            ]
            statics = [s for s in out.get("static", []) if "error" not in s]
            best = max(statics, key=lambda s: s["useful_tok_s"]) if statics else None
            rows = []
            if "official" in out:
                o = out["official"]
                rows.append(("official procedure: fp32, one generate call per sample", o["raw_tok_s"], o["useful_tok_s"]))
            if "batch4" in out:
                b = out["batch4"]
                rows.append(
                    (
                        f"generate on padded batches of 4 (eager; {b['step_ms']:.0f} ms/step, "
                        f"{b['utilisation']:.0%} of row-steps useful)",
                        b["raw_tok_s"],
                        b["useful_tok_s"],
                    )
                )
            for s in out.get("static", []):
                if "error" in s:
                    rows.append((f"generate(static), batch {s['batch']}: {s['error'].split('.')[0]}", None, None))
                else:
                    rows.append(
                        (
                            f'generate(cache_implementation="static"), batch {s["batch"]} ({s["step_ms"]:.0f} ms/step, '
                            f"cache {s['prompt_width'] + max_new} tokens, "
                            f"{s['utilisation']:.0%} of row-steps useful)",
                            s["raw_tok_s"],
                            s["useful_tok_s"],
                        )
                    )
            if "fast" in out:
                f = out["fast"]
                rows.append(
                    (
                        f"**fast engine** ({f['slots']} slots; {f['samples']:,} samples, "
                        f"{f['tokens']:,} tokens in {f['seconds']:.0f} s, "
                        f"of which setup {f['setup_seconds']:.1f} s)",
                        f["raw_tok_s"],
                        f["useful_tok_s"],
                    )
                )
            for label, raw, useful in rows:
                ratio = _ratio(useful / best["useful_tok_s"]) if best and useful else ""
                if label.startswith("**fast"):
                    ratio = f"**{ratio}**"
                lines.append(f"| {label} | {_fmt(raw)} | {_fmt(useful)} | {ratio} |")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _ratio(value: float) -> str:
    return f"{value:.1f}×" if value >= 1 else f"{value:.2g}×"


def fast_and_best_static(out: dict) -> tuple[float, float] | None:
    """(fast engine's useful tok/s, best generate(static)'s) of one shape's results, when both ran."""
    statics = [s["useful_tok_s"] for s in out.get("static", []) if "error" not in s]
    if "fast" not in out or not statics:
        return None
    return out["fast"]["useful_tok_s"], max(statics)


def _summary(runs: list[dict]) -> list[str]:
    parts = []
    for run in runs:
        for shape, out in run["shapes"].items():
            pair = fast_and_best_static(out)
            if pair is not None:
                fast, best_static = pair
                official = f", {fast / out['official']['useful_tok_s']:,.0f}× the official procedure" if "official" in out else ""
                parts.append(
                    f"{shape}: {fast:,.0f} useful tok/s, {_ratio(fast / best_static)} the best generate(static){official}"
                )
    return ["Result: " + "; ".join(parts) + ".", ""] if parts else []


def _mean_length(mix: dict, max_new: int) -> float:
    low, high = mix["short"]
    return mix["long_fraction"] * max_new + (1 - mix["long_fraction"]) * (low + high) / 2


def _fmt(value) -> str:
    return "" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
