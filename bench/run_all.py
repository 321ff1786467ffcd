"""`make bench`: every benchmark in turn, then one summary table on stdout and at the top of
docs/BENCHMARKS.md.

Each benchmark writes its own section of docs/BENCHMARKS.md and its headline figures to
docs/bench/*.json; the summary is built from those files, so figures that need a GPU are shown from
the last GPU run (with its date and machine) when this machine has none, and the line says so.

    python bench/run_all.py [--markdown docs/BENCHMARKS.md] [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from bench.generation import fast_and_best_static
from bench.sections import figures_dir, write_section

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("TACO_SHARED_DATA", ROOT.parent / "shared" / "data"))
SUMMARY_HEADING = "## Summary"


def has_cuda() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
        capture_output=True,
    )
    return probe.returncode == 0


def has_ray() -> bool:
    return subprocess.run([sys.executable, "-c", "import ray"], capture_output=True).returncode == 0


def steps(markdown: Path, quick: bool, gpu: bool) -> list[tuple[str, list[str] | None, str]]:
    """(name, command or None when skipped, why skipped)."""
    md = ["--markdown", str(markdown)]
    shared = (SHARED / "taco_test_examples.jsonl").exists()
    no_shared = f"{SHARED} not found (set TACO_SHARED_DATA)"
    no_gpu = "no CUDA GPU on this machine"
    return [
        (
            "sandbox",
            [
                "bench/sandbox_overhead.py",
                *(
                    ["--small", "200", "--big", "1000", "--rounds", "2", "--tests", "400", "--official-tests", "20"]
                    if quick
                    else []
                ),
                *md,
            ],
            "",
        ),
        (
            "corpus",
            [
                "bench/evaluation_corpus.py",
                "--official-fraction",
                "0.05" if quick else "0.2",
                *(["--samples", "5"] if quick else []),
                *md,
            ]
            if shared
            else None,
            no_shared,
        ),
        (
            "generation",
            [
                "bench/generation.py",
                "--shapes",
                "llama-3.2-3b",
                "--prompts",
                "300",
                "--static-batches",
                "128",
                "--out",
                str(figures_dir() / "generation_llama-3.2-3b.json"),
                *md,
            ]
            if gpu
            else None,
            no_gpu,
        ),
        *[
            (
                f"overlap-pace-{pace}",
                [
                    "bench/end_to_end.py",
                    "--generator",
                    "scripted",
                    "--problems",
                    "50" if quick else "200",
                    "--n",
                    "5" if quick else "20",
                    "--pace",
                    pace,
                    *md,
                ]
                if shared
                else None,
                no_shared,
            )
            for pace in (("1",) if quick else ("0.5", "1", "2"))
        ],
        (
            "cluster",
            ["bench/cluster_scaling.py", *(["--quick"] if quick else []), *md] if has_ray() else None,
            "Ray is not installed (pip install '.[ray]')",
        ),
        (
            "generation-steps",
            ["bench/generation_steps.py", "--prompts", "80", "--out", str(figures_dir() / "steps_h200.json")] if gpu else None,
            no_gpu,
        ),
        (
            "overlap-gpu",
            [
                "bench/end_to_end.py",
                "--generator",
                "model",
                "--shape",
                "llama-3.2-3b",
                "--problems",
                "200",
                "--n",
                "20",
                "--substitute-programs",
                *md,
            ]
            if gpu and shared
            else None,
            no_gpu if not gpu else no_shared,
        ),
    ]


def summary_rows() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    def load(name: str):
        path = figures_dir() / name
        return json.loads(path.read_text()) if path.exists() else None

    if (f := load("sandbox_overhead.json")) is not None:
        rows.append(
            (
                "per-test overhead: pool vs a fresh `python` per test (trivial program)",
                f"{f['pool_all_ms']:.2f} ms vs {f['official_ms']:.1f} ms (**{f['ratio']:.0f}×**)",
                f"{f['cpus']} CPUs, {f['date']}",
            )
        )
        if "floor_ratio" in f:
            rows.append(
                (
                    "per-test cost at one sandbox vs a bare fork of the warm interpreter, same run (target ≤ 1.3×)",
                    f"{f['one_sandbox_ms']:.2f} ms vs {f['floor_ms']:.2f} ms (**{f['floor_ratio']:.2f}×**); "
                    f"the official way {f['official_vs_one_sandbox']:.0f}× one sandbox",
                    f"{f['cpus']} CPUs, load average {f['load_average'][0]}, {f['date']}",
                )
            )
    if (f := load("evaluation_corpus.json")) is not None:
        rows.append(
            (
                f"real corpus ({f['problems']} TACO problems, {f['samples']} samples): "
                "`harness evaluate` vs the official procedure",
                f"{f['harness_s']:.0f} s vs {f['official_s']:.0f} s "
                f"(**{f['ratio']:.0f}×**; this corpus's compute ceiling {f['ceiling_ratio']:.0f}×)",
                f"{f['cpus']} CPUs, {f['date']}",
            )
        )
        rows.append(("same corpus re-evaluated (verdict cache)", f"{f['cached_s']:.2f} s", f"{f['cpus']} CPUs, {f['date']}"))
        rows.append(
            (
                "verdicts differing from the official procedure, test by test",
                f"**{f['test_mismatches']}** (pass/fail: {f['pass_mismatches']})",
                f"{f['date']}",
            )
        )
    if (f := load("cluster_scaling.json")) is not None:
        four, dispatch = f["scaling"][-1], f["dispatch"]
        rows.append(
            (
                "Ray cluster, wall-bound load: samples/s with 4 hosts vs 1 (target ≥ 3.6×)",
                f"**{four['speedup']:.2f}×** ({100 * four['efficiency']:.0f}% of ideal)",
                f"{f['machine']}, simulated nodes, {f['date']}",
            )
        )
        rows.append(
            (
                "Ray cluster: time added per job by the dispatch, vs the local pool (target ≤ 2 ms)",
                f"**{dispatch['added_ms_per_job']:+.2f} ms** "
                f"({dispatch['ray_ms_per_job']:.2f} vs {dispatch['local_ms_per_job']:.2f} ms)",
                f"{f['machine']}, {f['date']}",
            )
        )
    for path in sorted(figures_dir().glob("generation_*.json")):
        run = json.loads(path.read_text())
        for shape, out in run["shapes"].items():
            pair = fast_and_best_static(out)
            if pair is not None:
                fast, best_static = pair
                rows.append(
                    (
                        f"generation, {shape} shape (random weights), fast engine",
                        f"{fast:,.0f} useful tok/s (**{fast / best_static:.1f}×** the best generate(static))",
                        run["machine"].split(",")[0] + f", {run['prompts_fast']} prompts × {run['n']}",
                    )
                )
    for path in sorted(figures_dir().glob("steps_h200*.json")):
        rows += generation_step_rows(json.loads(path.read_text()), path.name)
    for path in sorted(figures_dir().glob("sharding*x2*.json")):
        rows += sharding_rows(json.loads(path.read_text()), path.name)
    for run in load("end_to_end.json") or []:
        label = (
            f"scripted generator, generation alone ≈ {run.get('pace', 1.0):g} × evaluation alone"
            if run["generator"] == "scripted"
            else (
                f"{run.get('shape')} random-weight model" + (", programs substituted" if run.get("substitute_programs") else "")
            )
        )
        rows.append(
            (
                f"`harness run` overlap: run / slower stage ({label}; target ≤ 1.15)",
                f"**{run['ratio']:.2f}** ({run['run_s']:.0f} s vs generation {run['generation_alone_s']:.0f} s, "
                f"evaluation {run['evaluation_alone_s']:.0f} s)",
                f"{run['machine'].split(',')[0]}, {run['problems']} × {run['n']}, {run['date']}",
            )
        )
    return rows


def generation_step_rows(run: dict, name: str) -> list[tuple[str, str, str]]:
    """Issue 14's figures from one bench/generation_steps.py run: the engine after against before, more
    slots, and fp8 against bf16 at the same slots, per shape."""
    by_shape: dict[str, dict[str, dict]] = {}
    shape = None
    for record in run.get("records", []):
        if record["check"] == "shape":
            shape = record["shape"]
        elif record["check"] == "throughput" and shape is not None:
            by_shape.setdefault(shape, {})[record["label"].split(" ", 1)[1]] = record
    rows = []
    where = f"{run.get('machine', '?').split(',')[0]}, `{name}`"
    for shape, results in by_shape.items():
        fused, before, more = results.get("fused"), results.get("before"), results.get("more_slots")
        if fused is not None:
            value = f"**{fused['useful_tok_s']:,.0f}** useful tok/s at {fused['slots']} slots"
            if before is not None:
                value += f" ({fused['useful_tok_s'] / before['useful_tok_s']:.2f}× before, same run)"
            if more is not None:
                value += f"; {more['useful_tok_s']:,.0f} at {more['slots']} slots"
            rows.append((f"generation at the hardware's limit, {shape} shape, bf16 (issue 14)", value, where))
        elif more is not None:
            value = f"**{more['useful_tok_s']:,.0f}** useful tok/s at {more['slots']} slots"
            rows.append((f"generation at the hardware's limit, {shape} shape, bf16 (issue 14)", value, where))
        # Against the faster of the run's two bf16 measurements where it has two (fused_again: drift).
        again = results.get("fused_again")
        faster = fused
        if again is not None and (fused is None or again["useful_tok_s"] > fused["useful_tok_s"]):
            faster = again
        for mode in ("fp8", "kv_fp8", "fp8_kv", "fp8_more_slots", "fp8_kv_more_slots"):
            bf16 = more if mode.endswith("more_slots") else faster
            if (quantized := results.get(mode)) is not None and bf16 is not None:
                gpu = ""
                if quantized.get("gpu_ms_per_step") and bf16.get("gpu_ms_per_step"):
                    gpu = f"; GPU time per decode step {bf16['gpu_ms_per_step'] / quantized['gpu_ms_per_step']:.2f}×"
                rows.append(
                    (
                        f"generation, {shape} shape: `{MODE_NAMES[mode.removesuffix('_more_slots')]}` vs bf16, "
                        f"same slots ({quantized['slots']}; target ≥ 1.2×)",
                        f"**{quantized['useful_tok_s'] / bf16['useful_tok_s']:.2f}×** "
                        f"({quantized['peak_gib']} vs {bf16['peak_gib']} GiB peak{gpu})",
                        where,
                    )
                )
    return rows


def sharding_rows(run: dict, name: str) -> list[tuple[str, str, str]]:
    """Issue 14's several-GPU figure from one bench/sharding_check.py run: each several-device run's useful
    tok/s against the one-device run of the same job."""
    one = run.get("one_device") or run.get("one_process")
    if one is None:
        return []
    rows = []
    for key, several in run.items():
        if not (key.startswith("several_") and isinstance(several, dict)):
            continue
        workers = several.get("device_workers", "processes")
        rows.append(
            (
                f"generation, {run['shape']} shape: {len(several['devices'])} GPUs ({workers}) vs one, same job (target ≥ 1.9×)",
                f"**{several['useful_tok_s'] / one['useful_tok_s']:.2f}×** ({several['useful_tok_s']:,.0f} vs "
                f"{one['useful_tok_s']:,.0f} useful tok/s, model loads included"
                f"{', after a rehearsal' if 'rehearsal' in run else ''}; {run['problems']} prompts × {run['n']})",
                f"NVIDIA H200 x2, `{name}`",
            )
        )
    return rows


MODE_NAMES = {"fp8": "--quantize fp8", "kv_fp8": "--kv-cache fp8", "fp8_kv": "--quantize fp8 --kv-cache fp8"}


def render_summary(rows, skipped: list[str]) -> str:
    lines = [
        SUMMARY_HEADING,
        "",
        "Headline figures of the sections below (`make bench`; each row names the machine and date it was measured on).",
        "",
        "| figure | value | measured on |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
    ]
    if skipped:
        lines += [
            "Not re-measured in the latest `make bench`: "
            + "; ".join(skipped)
            + " (their rows are from the last run that could).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="Smaller workloads (a check that every benchmark runs).")
    parser.add_argument(
        "--only",
        nargs="+",
        help="Run only these steps (sandbox, corpus, generation, overlap-pace-0.5/1/2, cluster, generation-steps, overlap-gpu); "
        "a name of none only rewrites the summary.",
    )
    args = parser.parse_args()
    if args.quick and args.markdown == parser.get_default("markdown"):
        # A quick check must not replace the real figures: it writes beside them, in a scratch place.
        scratch = Path(tempfile.mkdtemp(prefix="taco-bench-quick-"))
        os.environ["TACO_BENCH_FIGURES"] = str(scratch)
        args.markdown = scratch / "BENCHMARKS.md"
        print(f"bench: --quick writes to {scratch}", flush=True)
    gpu = has_cuda()
    skipped = []
    failed = []
    for name, command, why in steps(args.markdown, args.quick, gpu):
        if args.only and name not in args.only:
            skipped.append(f"{name} (not asked for: --only)")
            continue
        if command is None:
            print(f"bench: {name}: skipped ({why})", flush=True)
            skipped.append(f"{name} ({why})")
            continue
        print(f"bench: {name}: {' '.join(command)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, *command], cwd=ROOT)
        print(
            f"bench: {name}: {'done' if done.returncode == 0 else f'FAILED (exit {done.returncode})'} "
            f"in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if done.returncode != 0:
            failed.append(name)
    rows = summary_rows()
    width = max((len(a) for a, _, _ in rows), default=10)
    print("\n" + "\n".join(f"{a:<{width}}  {b.replace('**', '')}  [{c}]" for a, b, c in rows))
    write_section(args.markdown, SUMMARY_HEADING, render_summary(rows, skipped), first=True)
    print(f"\nbench: wrote {args.markdown}")
    if failed:
        raise SystemExit(f"bench: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
