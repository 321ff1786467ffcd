"""How long loading a model onto a GPU takes, part by part and by way of loading: the fixed cost that
every `harness generate` run pays before its first step (on two H200s it was 1.3-1.6 s of a 32 s job,
most of it the copy of the weights to the device: docs/BENCHMARKS.md, session 11).

A random-weight model of the shape is saved once (safetensors, as `save_pretrained` writes it); then
each way of loading it runs `--repeats` times, the file in the page cache as in a run right after
another, and the median is reported with the copy's rate:

  to       transformers reads it on the CPU, then `model.to(device)` (what `engine.load_model` does)
  threads  read on the CPU, then the parameters copied by `--threads` threads at once
  pinned   read on the CPU, then each parameter copied through page-locked memory, without waiting
  pinned_threads  the same, the copies into page-locked memory made by `--threads` threads at once
  harness  what `engine.load_model` does now (`engine.copy_to_device`: page-locked, as `pinned`)

(Reading straight onto the device, `from_pretrained(device_map=...)`, needs the accelerate package,
which the harness does not depend on.)

Each way's weights are checked equal to the first way's.

    python bench/load_time.py --shape llama-3.2-3b --device cuda:0 --out load_time.json
    python bench/load_time.py --shape tiny --device cpu      # checks the script on a CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

WAYS = ("to", "threads", "pinned", "pinned_threads", "harness")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _read(path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa")


def _copy_each(model: Any, copy: Callable[[Any], Any], threads: int) -> None:
    """Every parameter's data replaced by ``copy(data)``, ``threads`` at a time (tied weights once)."""
    parameters = list({id(p): p for p in model.parameters()}.values())

    def move(parameter: Any) -> None:
        parameter.data = copy(parameter.data)

    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(move, parameters))
    else:
        for parameter in parameters:
            move(parameter)


def load(way: str, path: Path, device: str, threads: int) -> tuple[Any, dict[str, float]]:
    """The model on ``device`` by ``way``, and the seconds of its parts."""
    started = time.perf_counter()
    model = _read(path)
    read = time.perf_counter()
    if way == "to":
        model.to(device)
    elif way == "threads":
        _copy_each(model, lambda data: data.to(device), threads)
    elif way == "harness":
        from harness.generation.engine import copy_to_device

        copy_to_device(model, device)
    elif way in ("pinned", "pinned_threads"):
        pin = device.startswith("cuda")
        _copy_each(
            model,
            lambda data: (data.pin_memory() if pin else data).to(device, non_blocking=pin),
            threads if way == "pinned_threads" else 1,
        )
    else:
        raise SystemExit(f"load_time: unknown way {way!r} (use {', '.join(WAYS)})")
    model.to(device)  # what is left: buffers (rotary frequencies); the parameters are there already
    _sync(device)
    done = time.perf_counter()
    return model, {"read": read - started, "copy": done - read, "total": done - started}


def main() -> None:
    import torch

    from bench.generation import SHAPES, build_model, build_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="llama-3.2-3b", choices=sorted(SHAPES))
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ways = args.ways.split(",")
    figures: dict[str, Any] = {
        "command": "python bench/load_time.py " + " ".join(sys.argv[1:]),
        "machine": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "shape": args.shape,
        "ways": {},
    }
    with tempfile.TemporaryDirectory(prefix="taco-load-") as tmp:
        path = Path(tmp) / "model"
        tokenizer = build_tokenizer(["def main():\n    print(input())\n"] * 4, SHAPES[args.shape][-1])
        built = build_model(args.shape, torch.bfloat16, args.device, tokenizer.eos_token_id, tokenizer.pad_token_id)
        built.save_pretrained(path)
        del built
        weight_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        figures["weight_gib"] = round(weight_bytes / 2**30, 2)
        reference: dict[str, Any] | None = None
        for way in ways:
            _read(path)  # the file into the page cache, as for a run right after another
            runs = []
            for _ in range(args.repeats):
                model, seconds = load(way, path, args.device, args.threads)
                runs.append(seconds)
                state = {name: tensor.float().sum().item() for name, tensor in list(model.state_dict().items())[:8]}
                if reference is None:
                    reference = state
                elif state != reference:
                    raise SystemExit(f"load_time: {way} loaded other weights than {ways[0]}")
                del model
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            median = {part: round(statistics.median(run[part] for run in runs), 3) for part in runs[0]}
            moved = median["copy"]
            figures["ways"][way] = {**median, "copy_gb_per_s": round(weight_bytes / 1e9 / moved, 1) if moved else None}
            print(f"load_time: {way}: {figures['ways'][way]}", file=sys.stderr, flush=True)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
