"""The demo model's recipe scaled for one GPU (``harness.training.recipe.GPU_RECIPE``, about 27M
parameters): trained on the official prompts and reference solutions of a TACO file's problems
(``taco_test_examples.jsonl``: 495 problems), then used to generate for the same problems with the
fast engine in bf16, greedy and sampled.  It gives the GPU benchmarks a model with a real length
distribution and real stops, and the quantization work an accuracy check.

Writes into ``--out``: ``generations_greedy.json`` and ``generations_sampled.json`` (evaluate them
with ``harness evaluate --dataset FILE --generations ...``), ``train_code_model.json`` (the training
manifest, the generation figures, the machine) and, with ``--keep-model``, the model directory.
"""

from __future__ import annotations

import os

# Deterministic cuBLAS (torch.use_deterministic_algorithms needs it set before CUDA starts).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from harness.data.problems import load_problems
from harness.data.prompts import build_prompt
from harness.generation.factory import ModelEngineFactory
from harness.generation.generate import generate
from harness.generation.journal import discard_journal
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.training.corpus import training_examples
from harness.training.recipe import DEMO_RECIPE, GPU_RECIPE
from harness.training.train import MANIFEST, train_model

RECIPES = {"gpu": GPU_RECIPE, "demo": DEMO_RECIPE}
DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "taco_test_examples.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--out", type=Path, required=True, help="Directory for the generations and the figures.")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/taco-code-model"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="gpu", help="demo: a quick check of this script on the CPU.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N problems.")
    parser.add_argument("--steps", type=int, default=None, help="Instead of the recipe's.")
    parser.add_argument("--train-seconds", type=float, default=None, help="Stop training there, short of --steps.")
    parser.add_argument("--max-new-tokens", type=int, default=1536)
    parser.add_argument("--n", type=int, default=10, help="Sampled outputs per problem (besides the greedy one).")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--keep-model", action="store_true", help="Copy the model directory into --out.")
    parser.add_argument(
        "--modes",
        default="",
        help="Greedy generation again with these weight/K-V-cache modes (e.g. fp8/model,none/fp8,fp8/fp8,int8/model), "
        "each to generations_greedy_<weights>_<cache>.json, and their next-token agreement with bf16.",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    problems = load_problems(args.dataset, require_tests=False)[: args.limit]
    examples = training_examples(problems)
    recipe = RECIPES[args.recipe]
    recipe = replace(recipe, steps=args.steps or recipe.steps)
    deadline = time.monotonic() + args.train_seconds if args.train_seconds else None
    print(f"training on {len(examples)} examples of {len(problems)} problems: {recipe}", flush=True)
    trained = train_model(
        examples, recipe, args.model_dir, device=args.device, say=lambda m: print(m, flush=True), deadline=deadline
    )
    figures: dict = {
        "training": json.loads((args.model_dir / MANIFEST).read_text()),
        "machine": {
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "generation": {},
    }
    print(f"trained: {trained.steps} steps in {trained.seconds:.0f}s, final loss {trained.final_loss:.4f}", flush=True)

    prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    device = "cuda:0" if args.device == "cuda" else args.device
    runs = [("greedy", 1, SamplingSettings(temperature=0.0), "none", "model")]
    if args.n:
        runs.append(("sampled", args.n, SamplingSettings(temperature=args.temperature, seed=0), "none", "model"))
    for mode in filter(None, args.modes.split(",")):
        weights, cache = mode.split("/")
        runs.append((f"greedy_{weights}_{cache}", 1, SamplingSettings(temperature=0.0), weights, cache))
    for name, n, sampling, weights, cache in runs:
        settings = GenerationSettings(
            str(args.model_dir), n, args.max_new_tokens, sampling, dtype=args.dtype, quantize=weights, kv_cache=cache
        )
        output = args.out / f"generations_{name}.json"
        summary = generate(
            prompts,
            settings,
            output,
            ModelEngineFactory(settings, engine="fast"),
            devices=(device,),
            say=lambda m: print(m, flush=True),
        )
        discard_journal(output)  # every sample is in the file; the journal's many files need not travel back
        figures["generation"][name] = {"settings": settings.fingerprint() | {"n": n}, **asdict(summary)}
        print(f"{name}: {summary}", flush=True)
        (args.out / "train_code_model.json").write_text(json.dumps(figures, indent=2))
    weight_modes = sorted({m.split("/")[0] for m in filter(None, args.modes.split(","))} - {"none"})
    if weight_modes:
        figures["next_token_agreement"] = next_token_agreement(args.model_dir, args.out / "generations_greedy.json", prompts,
                                                               weight_modes, args.dtype, device)  # fmt: skip
        print(f"next-token agreement with {args.dtype}: {figures['next_token_agreement']}", flush=True)
        (args.out / "train_code_model.json").write_text(json.dumps(figures, indent=2))
    if args.keep_model:
        shutil.copytree(args.model_dir, args.out / "model", dirs_exist_ok=True)


def next_token_agreement(model_dir: Path, greedy_file: Path, prompts: list, modes: list[str], dtype: str, device: str) -> dict:
    """Teacher-forced: on each problem's prompt followed by the unquantized greedy output, the share of
    output positions where each quantized model's most likely next token is the unquantized model's.
    (Weights only: the forward here is the model's own, which never reads the engine's K/V cache.)"""
    import torch

    from harness.generation.engine import load_model
    from harness.generation.quantization import Quantization, fused_layers

    outputs = {entry["task_id"]: entry["output"][0] for entry in json.loads(greedy_file.read_text())}
    choices: dict[str, list] = {}
    for mode in ["none", *modes]:
        model, tokenizer = load_model(str(model_dir), dtype, device)
        if mode != "none":
            fused_layers(model, Quantization(mode))
        picked = []
        with torch.inference_mode():
            for task_id, prompt in prompts:
                prompt_ids = tokenizer(prompt)["input_ids"]
                output_ids = tokenizer(outputs.get(task_id, ""), add_special_tokens=False)["input_ids"][:1024]
                if not output_ids:
                    continue
                ids = torch.tensor([prompt_ids + output_ids], device=device)
                logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
                picked.append(logits.argmax(-1).cpu())
        choices[mode] = picked
        del model
        torch.cuda.empty_cache()
    base = torch.cat(choices["none"])
    return {
        mode: {"positions": len(base), "agreement": round(float((torch.cat(choices[mode]) == base).float().mean()), 5)}
        for mode in modes
    }


if __name__ == "__main__":
    main()
