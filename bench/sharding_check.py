"""`harness generate` on one device against several (a worker each, all fed from one shared queue of
prompts, harness/generation/work_queue.py), same job and seeds: the useful tokens/s of each, their
ratio (the scaling), how many samples each worker took, when each worker's model was ready and when it
returned its last sample (seconds from the start of the run), and whether the merged generations.json
is byte-identical to the one-device run.

On a multi-GPU machine this is the scaling run (`--devices cuda:0,cuda:1`; issue 14's target: two
H200s >= 1.9x one).  The several devices run as worker threads in this process (`--device-workers
threads`, harness generate's default); `--device-workers threads,processes` also runs them as spawned
processes, for comparison (each process imports torch and the model code before it loads its model).
The wall time of each run includes loading the model (each worker loads its own; a worker whose model
is ready starts while the others still load).  A short rehearsal on the several devices comes first,
unrecorded (`--no-rehearsal` leaves it out): without it the first measured run, the one-device run, would
also pay what a process pays once (CUDA libraries' start-up, Triton compiling its kernels or reading them
from its disk cache), which made its figure swing by 13% between runs on the same machine.  On one GPU,
`--devices cuda:0,cuda:0` exercises the several-worker paths without measuring scaling.  The slot count
is fixed (`--slots`).  Identity: on the CPU in fp32 the outputs must be identical (the run fails otherwise, as in
tests/generation/test_device_threads.py); on a GPU, samples decoded in other slot batches may round
differently (measured earlier: in bf16, 180 of 200 samples identical, the rest diverging late, none at
the first character), so there it is reported, not required.

    python bench/sharding_check.py --shape llama-3.2-3b --problems 200 --n 20 --devices cuda:0,cuda:1 --out sharding.json
    python bench/sharding_check.py --quick      # the same on two CPU workers, tiny model (checks the script)
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from harness.data.problems import load_problems
from harness.data.prompts import build_prompt
from harness.generation.end_sharing import WorkerView, is_late
from harness.generation.factory import ModelEngineFactory
from harness.generation.generate import generate
from harness.generation.plan import GenerationSettings, SamplingSettings
from harness.generation.work_queue import Dispatcher
from harness.generation.workers import DeviceWorkers

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("TACO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def save_random_model(shape: str, texts: list[str], directory: Path) -> None:
    import torch

    from bench.generation import SHAPES, build_model, build_tokenizer

    started = time.perf_counter()
    tokenizer = build_tokenizer(texts, SHAPES[shape][-1])
    # Initialised on a GPU where there is one: random init of 3B parameters on the CPU takes minutes.
    where = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(shape, torch.bfloat16, where, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    if where == "cuda":
        torch.cuda.empty_cache()
    print(
        f"sharding_check: random {shape} model built on {where} and saved in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )


def record_end_decisions() -> list[list]:
    """The dispatchers' decisions near the end of a run (the queue holding at most 800 samples), as
    they are made, with what they saw of each worker (the dispatcher's method wrapped, and its state
    read: this script's instrument, not the harness's)."""
    decisions: list[list] = []
    decide = Dispatcher._share

    def recorded(self: Dispatcher, worker: int, wanted: int) -> int | None:
        share = decide(self, worker, wanted)
        if self.queue.unassigned <= 800:
            now = self.clock()
            seen = []
            for state in self._workers:
                slots = state.slots
                if slots is None:
                    seen.append(None)
                    continue
                view = WorkerView(slots, now - state.slots_at)
                seen.append(
                    {
                        "age": round(view.age, 3),
                        "running": len(slots.steps_left),
                        "min_left": min(slots.steps_left, default=None),
                        "waiting": slots.waiting,
                        "step_ms": round(slots.step_seconds * 1000, 3),
                        "idle_ms": round(slots.idle_step_seconds * 1000, 3),
                        "late": is_late(view, self.queue.steps_per_sample) if slots.measured else None,
                        "asks": state.waiting is not None,
                        "closed": state.closed,
                    }
                )
            finished = sum(w.finished for w in self._workers)
            decisions.append([time.perf_counter(), worker, wanted, self.queue.unassigned, share, self._at_limit, finished, seen])
        return share

    Dispatcher._share = recorded  # type: ignore[method-assign]
    return decisions


class PhaseTimeline:
    """When each worker thread spent its time in the phases of a run that are not decoding (loading,
    building, capturing graphs, tearing down), as [thread, phase, start, end] in seconds from the run's
    start: the harness's functions wrapped (this script's instrument, not the harness's).  A phase
    named "... wait" is the time spent waiting for a lock."""

    def __init__(self) -> None:
        self.rows: list[list] = []
        self.summed: dict[tuple[str, str], list] = {}
        self.origin = time.perf_counter()

    def restart(self) -> None:
        self.rows, self.summed, self.origin = [], {}, time.perf_counter()

    def _add(self, phase: str, begun: float, summed: bool = False) -> None:
        now = time.perf_counter()
        thread = threading.current_thread().name
        if summed:  # one row for all calls of a thread: [thread, phase, first start, last end, seconds in all, calls]
            row = self.summed.get((thread, phase))
            if row is None:
                row = self.summed[(thread, phase)] = [thread, phase, round(begun - self.origin, 3), 0.0, 0.0, 0]
                self.rows.append(row)
            row[3], row[4], row[5] = round(now - self.origin, 3), round(row[4] + now - begun, 4), row[5] + 1
            return
        self.rows.append([thread, phase, round(begun - self.origin, 3), round(now - self.origin, 3)])

    def wrap(self, owner: object, name: str, phase: str, summed: bool = False) -> None:
        original = getattr(owner, name)
        timeline = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            begun = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timeline._add(phase, begun, summed)

        setattr(owner, name, timed)

    def lock(self, owner: object, name: str, phase: str) -> None:
        """Replace the lock ``owner.name`` with one that records the wait for it and the time held."""
        inner = getattr(owner, name)
        timeline = self

        class TimedLock:
            def __enter__(self):
                begun = time.perf_counter()
                inner.acquire()
                timeline._add(f"{phase} wait", begun)
                self.held = time.perf_counter()

            def __exit__(self, *exc):
                inner.release()
                timeline._add(f"{phase} held", self.held)

        setattr(owner, name, TimedLock())


def record_phases() -> PhaseTimeline:
    import gc

    import torch
    import transformers

    from harness.generation import decode_step, engine, fast_engine, workers
    from harness.generation import generate as generate_module

    timeline = PhaseTimeline()
    timeline.wrap(transformers.AutoTokenizer, "from_pretrained", "tokenizer")
    timeline.wrap(transformers.AutoModelForCausalLM, "from_pretrained", "from_pretrained")
    timeline.lock(engine, "FROM_PRETRAINED_LOCK", "from_pretrained lock")
    timeline.lock(fast_engine, "CUDA_CACHE_LOCK", "cuda cache lock")
    timeline.wrap(engine, "copy_to_device", "copy_to_device")
    timeline.wrap(engine, "load_model", "load_model")
    timeline.wrap(torch.Tensor, "pin_memory", "pin_memory", summed=True)
    timeline.wrap(torch.Tensor, "to", "Tensor.to", summed=True)
    timeline.wrap(torch.cuda, "synchronize", "synchronize", summed=True)
    memory = getattr(getattr(torch, "accelerator", None), "memory", None)
    if getattr(memory, "empty_host_cache", None) is not None:
        timeline.wrap(memory, "empty_host_cache", "empty_host_cache")
    timeline.wrap(decode_step.DecodeStep, "__init__", "DecodeStep")
    timeline.wrap(fast_engine.FastEngine, "__init__", "FastEngine")
    timeline.wrap(fast_engine, "prompt_token_ids", "tokenize prompts")
    timeline.wrap(fast_engine._SlotRun, "__init__", "slot run alloc")
    timeline.wrap(fast_engine._SlotRun, "_capture", "capture")
    timeline.wrap(fast_engine._SlotRun, "_time_idle_step", "idle steps")
    timeline.wrap(fast_engine._SlotRun, "run", "slot run")
    timeline.wrap(fast_engine.FastEngine, "run", "engine run")
    timeline.wrap(workers, "serve", "serve")
    timeline.wrap(gc, "collect", "gc.collect")
    timeline.wrap(torch.cuda, "empty_cache", "empty_cache")
    timeline.wrap(generate_module, "write_json_atomic", "write generations.json")
    timeline.wrap(generate_module, "_warn_about_fences", "fence check")
    return timeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="llama-3.2-3b")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--devices", default="cuda:0,cuda:1", help="The several-device run; the one-device run uses the first.")
    parser.add_argument(
        "--device-workers",
        default=DeviceWorkers.THREADS.value,
        help="How the several-device run's workers run: 'threads', 'processes', or both ('threads,processes'), a run each.",
    )
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument(
        "--rehearsal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="First run a slot-full of prompts per device on the several devices, unrecorded.",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--quick", action="store_true", help="Tiny model, 6 problems x 2, 16 tokens, 4 slots, two CPU workers, float32."
    )
    args = parser.parse_args()
    if args.quick:
        args.shape, args.problems, args.n, args.max_new_tokens, args.slots = "tiny", 6, 2, 16, 4
        args.devices, args.dtype = "cpu,cpu", "float32"
    problems = load_problems(SHARED / "taco_test_examples.jsonl")[: args.problems]
    prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    several = tuple(args.devices.split(","))
    try:
        modes = [DeviceWorkers(mode) for mode in args.device_workers.split(",")]
    except ValueError as exc:
        raise SystemExit(f"sharding_check: --device-workers: {exc}") from None
    sampling = SamplingSettings(temperature=0.2, top_k=50, top_p=0.95, seed=0)
    decisions = record_end_decisions()
    timeline = record_phases()
    figures = {
        "shape": args.shape,
        "problems": len(prompts),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "slots": args.slots,
        "devices": list(several),
        "dtype": args.dtype,
    }
    with tempfile.TemporaryDirectory(prefix="taco-sharding-") as tmp:
        tmp = Path(tmp)
        save_random_model(args.shape, [text for _, text in prompts], tmp / "model")
        settings = GenerationSettings(str(tmp / "model"), args.n, args.max_new_tokens, sampling, args.dtype)
        # The model is saved to disk so that `harness generate`'s own factory loads it in each worker.
        factory = ModelEngineFactory(settings, "fast", args.slots)
        runs = [("one_device", several[:1], DeviceWorkers.THREADS)]
        runs += [(f"several_{mode.value}", several, mode) for mode in modes]
        if args.rehearsal:
            # A slot-full of samples and a few more per device: every kernel the measured runs use is
            # compiled, for full banks and for the small ones at a run's end.
            rehearsed = prompts[: min(len(prompts), math.ceil(1.1 * args.slots * len(several) / args.n))]
            started = time.perf_counter()
            generate(rehearsed, settings, tmp / "rehearsal" / "generations.json", factory, several, device_workers=modes[0])
            figures["rehearsal"] = {"problems": len(rehearsed), "seconds": round(time.perf_counter() - started, 2)}
            print(f"sharding_check: rehearsal: {figures['rehearsal']}", file=sys.stderr, flush=True)
        for label, devices, mode in runs:
            decisions.clear()
            timeline.restart()
            started = time.perf_counter()
            summary = generate(prompts, settings, tmp / label / "generations.json", factory, devices, device_workers=mode)
            seconds = time.perf_counter() - started
            figures[label] = {
                "devices": list(devices),
                "device_workers": mode.value if len(devices) > 1 else "in process",
                "seconds": round(seconds, 2),
                "tokens": summary.new_tokens,
                "useful_tok_s": round(summary.new_tokens / seconds, 1),
                # Until the first model had loaded (worker processes started, weights read): what the
                # wall time adds to the generation itself.
                "first_model_loaded_s": round(summary.load_seconds, 2),
                "useful_tok_s_after_first_load": round(summary.new_tokens / max(1e-9, seconds - summary.load_seconds), 1),
                "samples_by_worker": summary.samples_by_worker,
                # Seconds from the start of the run: each worker's model ready, and its last sample
                # returned (when it ran out of work; the spread is the time devices idled at the end).
                "ready_seconds_by_worker": summary.ready_seconds_by_worker,
                "last_sample_seconds_by_worker": summary.last_sample_seconds_by_worker,
                "workers_ended_seconds": summary.workers_ended_seconds,
                "build_seconds_by_worker": summary.build_seconds_by_worker,
                "stopped_seconds_by_worker": summary.stopped_seconds_by_worker,
                "gpu_memory_peak_bytes": summary.gpu_memory_peak_bytes,
                # The dispatcher's decisions at the end of the run (end_sharing): when (seconds from
                # the start), which worker, what it would have taken, what was left, what it took (None:
                # as it asked), samples finished at the token limit and in all, and each worker's state.
                "end_decisions": [[round(at - started, 3), *rest] for at, *rest in decisions],
                # Each thread's phases other than decoding: [thread, phase, start s, end s] (record_phases).
                "phases": list(timeline.rows),
            }
            print(f"sharding_check: {label}: {figures[label]}", file=sys.stderr, flush=True)
        one_bytes = (tmp / "one_device" / "generations.json").read_bytes()
        for label, _, _ in runs[1:]:
            many = (tmp / label / "generations.json").read_bytes()
            run = figures[label]
            run["identical"] = one_bytes == many
            # Where they differ: a sample that differs from its first character points at the plan
            # (seeds, prompts); a late divergence at rounding.
            pairs = [(a, b) for x, y in zip(json.loads(one_bytes), json.loads(many)) for a, b in zip(x["output"], y["output"])]
            prefixes = [next((i for i, (c, d) in enumerate(zip(a, b)) if c != d), min(len(a), len(b))) for a, b in pairs]
            run["samples_identical"] = sum(a == b for a, b in pairs)
            run["samples"] = len(pairs)
            run["differing_from_first_character"] = sum(p == 0 and a != b for p, (a, b) in zip(prefixes, pairs))
            run["mean_common_prefix_chars"] = round(sum(prefixes) / max(1, len(prefixes)), 1)
            run["mean_length_chars"] = round(sum(len(a) for a, _ in pairs) / max(1, len(pairs)), 1)
            one = figures["one_device"]
            run["scaling"] = round(run["useful_tok_s"] / one["useful_tok_s"], 3)
            run["scaling_after_first_load"] = round(
                run["useful_tok_s_after_first_load"] / one["useful_tok_s_after_first_load"], 3
            )
        figures["scaling"] = figures[runs[1][0]]["scaling"]  # the first several-device run's (threads by default)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    exact = args.dtype == "float32" and all(device.startswith("cpu") for device in several)
    differing = [label for label, _, _ in runs[1:] if not figures[label]["identical"]]
    if exact and differing:
        raise SystemExit(
            f"sharding_check: the output of {', '.join(differing)} differs from the one-device output (CPU, float32)"
        )


if __name__ == "__main__":
    main()
