"""`harness run` overlap: generation alone, evaluation alone, and the two overlapped, on one workload.

The target is wall(run) <= 1.15 x max(wall(generation alone), wall(evaluation alone)): the slower
stage sets the pace and the other hides behind it.  Three walls are measured in one process, each
from a fresh output directory with no verdict cache:

* generation alone: ``generate`` writing generations.json (model set-up included);
* evaluation alone: ``evaluate`` of that file (pool start-up included);
* run: ``run_pipeline`` (both, overlapped, as ``harness run`` does).

Generators:

* ``--generator scripted`` (any machine): a paced stand-in for a GPU that emits corpus programs
  (`bench/corpus.py`: real TACO problems, the reference and wrong variants) one every
  ``delay`` seconds, sleeping in between as a GPU-bound host waits on the device.  The delay is
  set so that generation alone takes as long as evaluation alone: the case where overlapping
  matters most and is hardest.
* ``--generator model --shape llama-3.2-3b`` (CUDA): a random-weight model of that shape in the
  fast engine, on the official prompts of the chosen problems, with `bench/generation.py`'s
  output-length mix imposed (random weights never stop).  Its text is gibberish, which every
  sandbox rejects at once; ``--substitute-programs`` keeps the real GPU work and replaces each
  sample's text with a corpus program, so that evaluation carries a realistic load too.

    python bench/end_to_end.py --generator scripted --problems 200 --n 20 --markdown docs/BENCHMARKS.md
    python bench/end_to_end.py --generator model --shape llama-3.2-3b --problems 200 --sandbox namespace --out e2e.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from bench.corpus import build_generations
from bench.generation import evenly_spaced
from bench.sections import figures_dir, write_figures, write_section
from harness.data.generations import join_by_task_id, load_generations
from harness.data.problems import load_problems
from harness.data.prompts import build_prompt
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from harness.generation.engine import FinishedSample, FinishReason, MappedJobs, each_job
from harness.generation.generate import generate
from harness.generation.plan import GenerationSettings, PromptJob, SamplingSettings
from harness.pipeline import run_pipeline
from harness.sandbox.choice import SandboxChoice, SandboxKind

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("TACO_SHARED_DATA", ROOT.parent / "shared" / "data"))
HEADING = "## End to end: `harness run` overlap (issue: harness run)"


# --- generators ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PacedCorpusEngine:
    programs: tuple[tuple[int, tuple[str, ...]], ...]
    delay_s: float

    def run(self, jobs, on_sample) -> None:
        programs = dict(self.programs)
        next_at = time.monotonic()
        for job in each_job(jobs):  # a list, or the shared queue
            for spec in job.samples:
                # Paced on a clock rather than slept per sample, so callback time is not added.
                next_at += self.delay_s
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                text = programs[job.task_id][spec.index]
                on_sample(
                    FinishedSample(job.task_id, spec.index, spec.seed, (0,) * max(1, len(text) // 4), text, FinishReason.EOS)
                )


@dataclass(frozen=True)
class PacedCorpusFactory:
    programs: tuple[tuple[int, tuple[str, ...]], ...]
    delay_s: float

    def __call__(self, device, say):
        return PacedCorpusEngine(self.programs, self.delay_s)


def target_length(task_id: int, index: int, max_new: int, long_fraction: float, short: tuple[int, int]) -> int:
    """bench/generation.py's mix, drawn from a hash of the sample, so every run gives each sample
    the same length."""
    digest = int.from_bytes(hashlib.sha256(f"{task_id}:{index}".encode()).digest()[:8], "big")
    if (digest % 10_000) / 10_000 < long_fraction:
        return max_new
    return short[0] + (digest >> 20) % (short[1] - short[0] + 1)


@dataclass(frozen=True)
class RandomModelFactory:
    shape: str
    tokenizer_texts: tuple[str, ...]
    max_new_tokens: int
    long_fraction: float
    short: tuple[int, int]
    substitute: tuple[tuple[int, tuple[str, ...]], ...] | None = None

    def __call__(self, device, say):
        import torch

        from bench.generation import SHAPES, build_model, build_tokenizer
        from harness.generation.fast_engine import FastEngine, FastEngineOptions

        tokenizer = build_tokenizer(list(self.tokenizer_texts), SHAPES[self.shape][-1])
        model = build_model(self.shape, torch.bfloat16, device, tokenizer.eos_token_id, tokenizer.pad_token_id)
        sampling = SamplingSettings(temperature=0.2, top_k=50, top_p=0.95, seed=0)
        engine = FastEngine(model, tokenizer, sampling, FastEngineOptions(), say=say)
        return LengthMixEngine(engine, self)


@dataclass(frozen=True)
class LengthMixEngine:
    inner: object
    factory: RandomModelFactory

    def run(self, jobs, on_sample) -> None:
        f = self.factory

        def mixed_lengths(job: PromptJob) -> PromptJob:
            return PromptJob(
                job.task_id,
                job.prompt,
                tuple(
                    replace(s, max_new_tokens=target_length(job.task_id, s.index, f.max_new_tokens, f.long_fraction, f.short))
                    for s in job.samples
                ),
            )

        mixed = MappedJobs(jobs, mixed_lengths)  # jobs arrive as the engine takes them (a list, or the shared queue)
        programs = dict(f.substitute) if f.substitute else None

        def sink(sample: FinishedSample) -> None:
            if programs is not None:
                sample = replace(sample, text=programs[sample.task_id][sample.index])
            on_sample(sample)

        self.inner.run(mixed, sink)


# --- measurement ---------------------------------------------------------------------------------


def measure(args) -> dict:
    dataset = SHARED / "taco_test_examples.jsonl"
    if not dataset.exists():
        raise SystemExit(f"end-to-end benchmark skipped: {dataset} not found (set TACO_SHARED_DATA)")
    problems = evenly_spaced(load_problems(dataset), args.problems)
    corpus = build_generations(problems, args.n, args.seed)
    programs = tuple((e["task_id"], tuple(e["output"])) for e in corpus)
    choice = SandboxChoice(SandboxKind(args.sandbox), args.workers)
    evaluation_settings = EvaluationSettings(sandbox_id=choice.identity())
    opener = choice.opener(lambda m: print(m, file=sys.stderr))
    devices = ("cuda:0",) if args.generator == "model" and _cuda() else ("cpu",)
    prompts = [(p.task_id, build_prompt(p.row)) for p in problems]
    samples = len(problems) * args.n
    figures: dict = {
        "problems": len(problems),
        "n": args.n,
        "samples": samples,
        "generator": args.generator,
        "sandbox": args.sandbox,
        "workers": choice.capacity,
        "cpus": os.cpu_count(),
    }

    def evaluate_alone(generations: Path) -> tuple[float, dict]:
        tasks = join_by_task_id(problems, load_generations(generations), False, {p.task_id for p in problems})
        started = time.perf_counter()
        outcome = evaluate(tasks, opener, evaluation_settings)
        return time.perf_counter() - started, outcome.results

    with tempfile.TemporaryDirectory(prefix="taco-e2e-") as tmp:
        tmp = Path(tmp)

        def timed_run():
            started = time.perf_counter()
            outcome = run_pipeline(problems, settings, evaluation_settings, tmp / "run", factory, opener, devices)
            run_s = time.perf_counter() - started
            _note(f"run {run_s:.1f} s")
            return run_s, outcome

        ran = None
        if args.generator == "scripted":
            settings = GenerationSettings("scripted-corpus", n=args.n, max_new_tokens=args.max_new_tokens)
            corpus_file = tmp / "corpus.json"
            corpus_file.write_text(json.dumps(corpus))
            evaluation_s, alone_results = evaluate_alone(corpus_file)
            _note(f"evaluation alone {evaluation_s:.1f} s")
            delay = evaluation_s / samples * args.pace
            factory = PacedCorpusFactory(programs, delay)
            figures["delay_ms"] = round(delay * 1000, 3)
            figures["pace"] = args.pace
            generation_s, summary = _generate_alone(prompts, settings, tmp / "gen" / "generations.json", factory, devices)
        else:
            settings = GenerationSettings(f"random:{args.shape}", n=args.n, max_new_tokens=args.max_new_tokens)
            factory = RandomModelFactory(
                args.shape,
                tuple(text for _, text in prompts),
                args.max_new_tokens,
                args.long_fraction,
                tuple(int(x) for x in args.short_range.split(",")),
                programs if args.substitute_programs else None,
            )
            # Warm-up, not timed: CUDA initialisation and kernel compilation would otherwise be
            # charged to whichever of the two timed generations runs first.
            warm = GenerationSettings(f"random:{args.shape}", n=2, max_new_tokens=32)
            _note("warm-up")
            generate(prompts[:2], warm, tmp / "warm" / "generations.json", replace(factory, max_new_tokens=32), devices)
            _note("warm-up done")
            if args.run_first:  # the other order, to see whether the order biases the comparison
                ran = timed_run()
            generation_s, summary = _generate_alone(prompts, settings, tmp / "gen" / "generations.json", factory, devices)
            evaluation_s, alone_results = evaluate_alone(tmp / "gen" / "generations.json")
        _note(f"generation alone {generation_s:.1f} s ({summary.new_tokens} tokens), evaluation alone {evaluation_s:.1f} s")
        figures["generation_alone_s"] = round(generation_s, 2)
        figures["generation_tokens"] = summary.new_tokens
        figures["evaluation_alone_s"] = round(evaluation_s, 2)
        run_s, outcome = ran or timed_run()
        figures["order"] = "run, generation alone, evaluation alone" if ran else "generation alone, evaluation alone, run"
        same_generations = (tmp / "run" / "generations.json").read_bytes() == (tmp / "gen" / "generations.json").read_bytes()
        figures["run_s"] = round(run_s, 2)
        figures["ratio"] = round(run_s / max(generation_s, evaluation_s), 3)
        figures["identical_generations"] = same_generations
        figures["identical_results"] = outcome.evaluation.results == alone_results if same_generations else None
        stats = outcome.stats
        figures["run_stats"] = {key: stats[key] for key in ("wall_seconds", "generation", "evaluation", "sandboxes", "host")}
        figures["pass@1"] = outcome.evaluation.metrics.get("pass@1")
    figures["machine"] = (
        f"{_gpu_name()}, " if devices[0].startswith("cuda") else ""
    ) + f"{os.cpu_count()} CPUs, {platform.platform()}"
    figures["date"] = time.strftime("%Y-%m-%d")
    figures["command"] = "python bench/end_to_end.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return figures


def _note(text: str) -> None:
    print(f"end_to_end: {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _generate_alone(prompts, settings, output: Path, factory, devices):
    started = time.perf_counter()
    summary = generate(prompts, settings, output, factory, devices)
    return time.perf_counter() - started, summary


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _gpu_name() -> str:
    import torch

    return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"


# --- rendering -----------------------------------------------------------------------------------


def render(runs: list[dict]) -> str:
    lines = [
        HEADING,
        "",
        "Walls of the same workload measured three ways in one process, each from a fresh directory with no verdict "
        "cache: generation alone (`generate`, model set-up included), evaluation alone (`evaluate` of the file it "
        "wrote, pool start-up included), and `harness run`'s pipeline (both overlapped). **Target: run ≤ 1.15 × the "
        "slower stage.** The scripted generator is a paced stand-in for a GPU that emits corpus programs "
        "(reference solutions and wrong variants of real TACO problems, `bench/corpus.py`), paced so that "
        "generation alone takes as long as evaluation alone, the hardest case for overlapping. The model generator "
        "is a random-weight model in the fast engine on the problems' official prompts, with "
        "`bench/generation.py`'s output-length mix imposed; its gibberish fails to compile at once, so with "
        "`--substitute-programs` each sample's text is replaced by a corpus program after the GPU generated it, to "
        "give evaluation a real load.",
        "",
        "| generator | problems × n | sandboxes | generation alone s | evaluation alone s | run s | run / slower stage "
        "| evaluation tail after generation s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        tail = r["run_stats"]["evaluation"]["tail_after_generation_seconds"]
        lines.append(
            f"| {_generator_label(r)} | {r['problems']} × {r['n']} | {r['workers']} {r['sandbox']} "
            f"| {r['generation_alone_s']:.1f} | "
            f"{r['evaluation_alone_s']:.1f} | {r['run_s']:.1f} | **{r['ratio']:.2f}** | {tail:.1f} |"
        )
    lines.append("")
    lines += [
        "Reading the figures. When one stage is clearly the slower, the other hides behind it (paces 0.5 and 2, and the "
        "GPU rows, where generation runs on the GPU and evaluation on the CPUs). The balanced pace is the worst case and "
        "misses the target: evaluation alone orders every job longest first and keeps all sandboxes busy to the end, "
        "while a stream cannot borrow work from samples not generated yet, so sandboxes idle while cheap samples arrive "
        "and a cluster of expensive ones leaves a backlog at the end (the tail column); on this 2-core machine the "
        "generator's bookkeeping also shares the cores with the sandboxes. The model rows time generation twice in one "
        "process after a short warm-up: the first timed generation still pays some first-use costs (kernels compiled "
        "for large batch shapes), so a run timed second can come out below 1; `--run-first` times the run first. With "
        "random weights the two passes' samples differ (the fast engine sizes its slots from free memory, which "
        "differs slightly between passes, and bf16 rounding follows the batch); with substituted programs both passes "
        "evaluate the same programs and their results are compared exactly.",
        "",
    ]
    for r in runs:
        stats = r["run_stats"]
        g, e, s, h = stats["generation"], stats["evaluation"], stats["sandboxes"], stats["host"]
        gpu = ", ".join(f"{dev} {b / 2**30:.1f} GiB" for dev, b in g["gpu_memory_peak_bytes"].items()) or "none"
        lines += [
            f"**{_generator_label(r)}** ({r['machine']}, {r['date']}). Command: `{r['command']}`. "
            f"Per stage inside the run (`run_stats.json`): generation {g['seconds']:.1f} s, {g['tokens_per_s']:,.0f} tok/s, "
            f"{g['samples_per_s']:.1f} samples/s; evaluation active {e['seconds']:.1f} s, {e['executed']} distinct programs, "
            f"{e['tests_per_s']:.0f} tests/s; sandboxes {s['slots']} (peak live {s['live_peak']}, failures {s['failures']}); "
            f"GPU memory peak {gpu}; host RSS peak {h['rss_peak_bytes'] / 2**20:.0f} MiB. "
            f"Generations identical to generation alone: {_yes(r['identical_generations'])}; results identical to evaluation "
            f"alone: {_yes(r['identical_results'])}.",
            "",
        ]
    return "\n".join(lines)


def _generator_label(r: dict) -> str:
    if r["generator"] == "scripted":
        return f"scripted, paced to {r.get('pace', 1.0):g} × evaluation alone ({r['delay_ms']:.1f} ms/sample)"
    return f"model {r.get('shape', '')}" + (" + substituted programs" if r.get("substitute_programs") else "")


def _run_key(r: dict) -> tuple:
    """Which earlier figures a new run replaces: same generator, shape, programs and pace."""
    return (r["generator"], r.get("shape") or "", bool(r.get("substitute_programs")), r.get("pace") or 0.0, r["problems"], r["n"])


def _yes(value) -> str:
    return {True: "yes", False: "no", None: "n/a (generations differ)"}[value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=["scripted", "model"], default="scripted")
    parser.add_argument("--shape", default="llama-3.2-3b")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--long-fraction", type=float, default=0.15)
    parser.add_argument("--short-range", default="100,600")
    parser.add_argument("--substitute-programs", action="store_true")
    parser.add_argument("--pace", type=float, default=1.0, help="scripted: generation alone / evaluation alone")
    parser.add_argument("--run-first", action="store_true", help="model: time the run before the stages alone")
    parser.add_argument("--sandbox", choices=[k.value for k in SandboxKind], default="docker")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, help="Append this run's figures (JSON list) here.")
    parser.add_argument("--render", type=Path, nargs="+", help="Render JSON files written by --out instead of measuring.")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--figures", type=Path, default=figures_dir() / "end_to_end.json")
    args = parser.parse_args()
    if args.render:
        runs = [run for path in args.render for run in json.loads(path.read_text())]
    else:
        figures = measure(args)
        figures.update(shape=args.shape if args.generator == "model" else None, substitute_programs=args.substitute_programs)
        print(json.dumps({k: v for k, v in figures.items() if k != "run_stats"}), file=sys.stderr)
        runs = [figures]
        if args.out:
            previous = json.loads(args.out.read_text()) if args.out.exists() else []
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(previous + runs, indent=2))
        # Keep the other generator's figures: a CPU machine refreshes the scripted run only.
        kept = json.loads(args.figures.read_text()) if args.figures.exists() else []
        runs = [r for r in kept if _run_key(r) != _run_key(figures)] + runs
        runs.sort(key=_run_key)
        write_figures(args.figures, runs)
    section = render(runs)
    print(section)
    if args.markdown:
        write_section(args.markdown, HEADING, section)


if __name__ == "__main__":
    main()
