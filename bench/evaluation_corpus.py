"""`harness evaluate` on the 495 real TACO test problems of ../shared/data against the official
procedure, measured in the same run, with the verdicts compared test by test.

Corpus: every problem of `taco_test_examples.jsonl` with N samples drawn (seeded) from its
reference solution and four wrong variants of it (`tests/variants.py`): the reference with
probability 0.4, each variant 0.15.  Duplicates among a task's samples are what sampling at
temperature 0.2 produces; the official procedure runs every sample anyway.

Official procedure: every sample serially, every test in a new `python` process (TACO HEAD's
`subprocess.run(["python", file])` per test, with its retries), no early exit, no dedup.  It runs
through the same runner in a single container with `fresh_interpreter` on, so interpreter, numpy
and verdict code are the same as the harness's and only the execution strategy differs.  Each
distinct program is run once and its time counted once per sample that has it (what the official
script would spend: it re-runs duplicates), plus the official script's fixed cost per sample (a
`multiprocessing.Manager()` and a `Process` started and joined), measured on this host.

Both judges: the default run writes the corrected judge's verdicts beside TACO's (README, "Corrected
judge"); the benchmark prints the two pass@k side by side, with TACO's over the same tasks, the
problems left to a checker, and the samples each judge accepts that the other rejects, by reason.
It fails when early exit and `--all-tests` give either judge a different pass@k.

    python bench/evaluation_corpus.py [--samples 10] [--official-fraction 1.0] [--limit N] [--markdown docs/BENCHMARKS.md]

(`--limit N`: the first N problems only, to try it; the committed figures are of the whole corpus.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from bench.corpus import build_generations
from bench.sections import figures_dir, write_figures, write_section
from harness.data.problems import load_problems
from harness.evaluation.execution import ExecutionJob
from harness.sandbox.docker.backend import DockerBackend, connect
from harness.sandbox.docker.image import ensure_image
from harness.sandbox.pool import SandboxPool

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("TACO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def run_cli(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"harness evaluate failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout.strip()


def official_procedure(problems, entries, fraction: float, seed: int):
    """Per-sample verdicts and total seconds of the official procedure (see module doc)."""
    by_id = {p.task_id: p for p in problems}
    chosen = [e for e in entries if random.Random(seed + e["task_id"]).random() < fraction]
    distinct: dict[tuple[int, str], None] = {}
    for entry in chosen:
        for code in entry["output"]:
            distinct[(entry["task_id"], code)] = None
    client = connect()
    image = ensure_image(client)
    seconds: dict[tuple[int, str], float] = {}
    warm_program_seconds = 0.0  # the same programs' own run time in warm forks: the compute floor
    verdicts: dict[tuple[int, str], list] = {}
    with SandboxPool(DockerBackend(image, client=client, capacity=1)) as pool:
        pool.run(ExecutionJob(by_id[chosen[0]["task_id"]].tests, "print(1)"))  # container started before timing
        for task_id, code in distinct:
            job = ExecutionJob(by_id[task_id].tests, code, early_exit=False, fresh_interpreter=True)
            start = time.perf_counter()
            result = pool.run(job)
            seconds[(task_id, code)] = time.perf_counter() - start
            if result.status.value != "judged":
                raise SystemExit(f"official procedure: infrastructure failure on task {task_id}: {result.detail}")
            verdicts[(task_id, code)] = result.taco()
            warm = pool.run(ExecutionJob(by_id[task_id].tests, code, early_exit=False))
            warm_program_seconds += warm.program_seconds
    total = sum(seconds[(e["task_id"], c)] for e in chosen for c in e["output"])
    per_sample = {e["task_id"]: [verdicts[(e["task_id"], c)] for c in e["output"]] for e in chosen}
    return per_sample, total, len(distinct), sum(len(e["output"]) for e in chosen), warm_program_seconds


def _noop(results) -> None:
    results.append([True])


def official_sample_overhead(repeats: int = 20) -> float:
    """Seconds TACO's check_correctness spends per sample before any test: Manager + Process."""
    import multiprocessing

    start = time.perf_counter()
    for _ in range(repeats):
        manager = multiprocessing.Manager()
        results = manager.list()
        process = multiprocessing.Process(target=_noop, args=(results,))
        process.start()
        process.join()
        manager.shutdown()
    return (time.perf_counter() - start) / repeats


PASS_KS = ("pass@1", "pass@10", "pass@100")
DISAGREEMENT_WAYS = ("taco_accepts_corrected_rejects", "corrected_accepts_taco_rejects")


def judges_tables(metrics: dict) -> tuple[str, str]:
    """Official and corrected pass@k side by side, and the disagreement counts by reason, as Markdown
    tables (from one run's metrics.json)."""
    corrected = metrics["corrected"]
    ks = [k for k in PASS_KS if k in metrics or k in corrected]

    def cells(source: dict) -> str:
        return " | ".join(f"{100 * source[k]:.2f}%" if k in source else "—" for k in ks)

    checker = corrected["needs_checker"]
    rows = [
        f"| TACO's judge (official), all tasks | {metrics['counts']['tasks']} | {cells(metrics)} |",
        f"| TACO's judge, the corrected judge's tasks | {corrected['tasks']} | {cells(corrected['taco_on_same_tasks'])} |",
        f"| corrected judge | {corrected['tasks']} | {cells(corrected)} |",
    ]
    passk = "\n".join([f"| judge | tasks | {' | '.join(ks)} |", "|---|---:|" + "---:|" * len(ks), *rows])
    passk += (
        f"\n\nNeeds a checker (several valid outputs, left out of the corrected pass@k): {checker['tasks']} tasks, "
        f"{checker['samples']} samples."
    )
    block = metrics["disagreements"]
    reasons = sorted({r for way in DISAGREEMENT_WAYS for r in block[way]["by_reason"]})
    lines = [
        "| reason (first differing test) | TACO accepts, corrected rejects | corrected accepts, TACO rejects |",
        "|---|---:|---:|",
        *[f"| {r} | {block[DISAGREEMENT_WAYS[0]]['by_reason'].get(r, 0)} | {block[DISAGREEMENT_WAYS[1]]['by_reason'].get(r, 0)} |"
          for r in reasons],
        f"| total (of {block['samples_compared']} samples both judged) | {block[DISAGREEMENT_WAYS[0]]['total']} | "
        f"{block[DISAGREEMENT_WAYS[1]]['total']} |",
    ]  # fmt: skip
    return passk, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20, help="samples per problem")
    parser.add_argument("--official-fraction", type=float, default=1.0, help="share of problems run the official way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--limit", type=int, help="the first N problems only (a quick try; not for the committed figures)")
    args = parser.parse_args()
    dataset = SHARED / "taco_test_examples.jsonl"
    if not dataset.exists():
        print(f"evaluation corpus benchmark skipped: {dataset} not found (set TACO_SHARED_DATA)")
        return
    problems = load_problems(dataset)
    if args.limit is not None:
        problems = problems[: args.limit]
    entries = build_generations(problems, args.samples, args.seed)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generations = tmp / "generations.json"
        generations.write_text(json.dumps(entries))
        env = {**os.environ, "TACO_HARNESS_CACHE_DIR": str(tmp / "cache")}
        base = ["evaluate", "--dataset", str(dataset), "--generations", str(generations)]
        if args.limit is not None:
            base += ["--limit", str(args.limit)]
        first, first_line = run_cli([*base, "--output", str(tmp / "run1")], env)
        cached, cached_line = run_cli([*base, "--output", str(tmp / "run2")], env)
        full, _ = run_cli([*base, "--output", str(tmp / "full"), "--all-tests", "--no-cache"], env)
        results = json.loads((tmp / "run1" / "results.json").read_text())
        full_results = json.loads((tmp / "full" / "results.json").read_text())
        metrics = json.loads((tmp / "run1" / "metrics.json").read_text())
        full_metrics = json.loads((tmp / "full" / "metrics.json").read_text())
        official, official_s, distinct, official_samples, floor_s = official_procedure(
            problems, entries, args.official_fraction, args.seed
        )

    def passed(verdicts) -> bool:
        return all(v is True for v in verdicts)

    test_mismatch = sum(a != b for task, lists in official.items() for a, b in zip(lists, full_results[str(task)]))
    pass_mismatch = sum(passed(a) != passed(b) for task, lists in official.items() for a, b in zip(lists, results[str(task)]))
    tests_official = sum(len(v) for lists in official.values() for v in lists)
    scale = sum(len(e["output"]) for e in entries) / official_samples
    sample_startup = official_sample_overhead()
    official_total = (official_s + sample_startup * official_samples) * scale
    total_samples = sum(len(e["output"]) for e in entries)
    corpus_distinct = len({(e["task_id"], c) for e in entries for c in e["output"]})
    floor = floor_s * corpus_distinct / distinct / cpus
    rows = [
        (
            "official procedure (serial, fresh `python` per test)",
            official_total,
            f"measured on {official_samples} samples ({distinct} distinct programs), "
            f"+{sample_startup * 1000:.0f} ms Manager/Process start-up per sample"
            + ("" if scale == 1 else f", scaled ×{scale:.2f} to the corpus"),
        ),
        (f"`harness evaluate`, {cpus} containers, defaults (early exit, dedup)", first, first_line.split("  ", 1)[0]),
        ("`harness evaluate --all-tests --no-cache`", full, "every test of every distinct program"),
        ("`harness evaluate` again, new output dir (verdict cache)", cached, cached_line.split(" in ")[0].split("samples, ")[-1]),
        (
            "floor: the distinct programs' own run time (warm, all tests) / CPUs",
            floor,
            "no evaluator of every test can beat this on this machine",
        ),
    ]
    lines = [
        "| run | wall s | speed-up vs official | note |",
        "|---|---|---|---|",
        *[f"| {name} | {secs:.2f} | {official_total / secs:.0f}× | {note} |" for name, secs, note in rows],
    ]
    identity = (
        f"Verdicts: {test_mismatch} of {official_samples} samples differ test by test between the official procedure "
        f"and `--all-tests` ({tests_official} test verdicts compared); {pass_mismatch} differ in pass/fail "
        f"from the default run. pass@1 = {metrics.get('pass@1', float('nan')):.4f}.\n\n"
        f"Where the time goes: these problems have {sum(len(p.tests) for p in problems) / len(problems):.1f} tests "
        f"each on average, so early exit has little to cut, and a few programs compute for seconds per run "
        f"(also in the official procedure). Their own run time sets a ceiling of {official_total / floor:.0f}× "
        f"for any evaluator that runs each distinct program's tests; the rest of the official procedure's cost "
        f"is interpreter start-up (see the per-test overhead section) and duplicate samples "
        f"({total_samples} samples, {corpus_distinct} distinct programs)."
    )
    table = "\n".join(lines)
    judges_passk, judges_disagreements = judges_tables(metrics)
    # Early exit waits until both judges have decided: each judge's pass@k must be that of --all-tests.
    early_exit_mismatch = [
        name
        for name, early, every in (
            ("TACO", metrics, full_metrics),
            ("corrected", metrics["corrected"], full_metrics["corrected"]),
        )
        if any(early.get(k) != every.get(k) for k in PASS_KS)
    ]
    print(table)
    print(identity)
    print(judges_passk)
    print(judges_disagreements)
    if early_exit_mismatch:
        print(f"early exit changed the pass@k of: {', '.join(early_exit_mismatch)}")
    write_figures(
        figures_dir() / "evaluation_corpus.json",
        {
            "problems": len(problems),
            "samples": total_samples,
            "distinct_programs": corpus_distinct,
            "cpus": cpus,
            "official_s": round(official_total, 2),
            "harness_s": round(first, 2),
            "all_tests_s": round(full, 2),
            "cached_s": round(cached, 2),
            "floor_s": round(floor, 2),
            "ratio": round(official_total / first, 1),
            "ceiling_ratio": round(official_total / floor, 1),
            "test_mismatches": test_mismatch,
            "pass_mismatches": pass_mismatch,
            "taco_pass_at_k": {k: metrics[k] for k in PASS_KS if k in metrics},
            "corrected_pass_at_k": {k: metrics["corrected"][k] for k in PASS_KS if k in metrics["corrected"]},
            "taco_pass_at_k_same_tasks": metrics["corrected"]["taco_on_same_tasks"],
            "needs_checker_tasks": metrics["corrected"]["needs_checker"]["tasks"],
            "disagreements": {way: metrics["disagreements"][way] for way in DISAGREEMENT_WAYS},
            "early_exit_mismatches": early_exit_mismatch,
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.platform(),
        },
    )
    if args.markdown:
        command = "python bench/evaluation_corpus.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        section = (
            "## Real corpus: 495 TACO test problems, harness vs official procedure (issue: evaluate)\n\n"
            f"{len(problems)} problems of `taco_test_examples.jsonl` (their statements' example tests), "
            f"{args.samples} samples each ({total_samples} samples) drawn with seed {args.seed} from the reference "
            "solution (p = 0.4) and four wrong variants (p = 0.15 each: wrong on some inputs, exit 1 after "
            "correct output, exit 1 before any output, syntax error). The official procedure runs every "
            "sample serially with a new `python` per stdin test (inside the same image, through the runner's "
            "`fresh_interpreter` mode), no early exit, no dedup, plus its per-sample Manager/Process "
            "start-up measured on this host. Wall times of the `harness evaluate` command "
            "include its start-up and the containers' start.\n\n"
            f"Machine: {cpus} CPUs, {platform.platform()}, {time.strftime('%Y-%m-%d')}. "
            f"Command: `make bench` (runs `{command}`)\n\n{table}\n\n{identity}\n\n"
            "### Both judges, from the same run\n\n"
            'TACO\'s judge (the official semantics, the default) and the corrected judge (README, "Corrected judge") '
            "judge the same runs of the default command; the samples are the reference and its wrong variants, so "
            "most disagreements come from the variants' outputs and the problems' Special-Judge flags.\n\n"
            f"{judges_passk}\n\n{judges_disagreements}\n"
        )
        write_section(args.markdown, "## Real corpus: 495 TACO test problems", section)
    if test_mismatch or pass_mismatch:
        raise SystemExit("verdicts differ from the official procedure")
    if early_exit_mismatch:
        raise SystemExit("early exit changed a judge's pass@k")


if __name__ == "__main__":
    main()
