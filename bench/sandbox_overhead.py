"""Per-test overhead of the sandbox pool on a trivial stdin program, against the official procedure
(a fresh `python` per test, serially, with TACO's header), measured in the same run.

    python bench/sandbox_overhead.py [--tests 2000] [--official-tests 200] [--markdown docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from bench.sections import figures_dir, write_figures, write_section
from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob
from harness.judging.programs import stdin_programs
from harness.sandbox.docker.backend import DockerBackend, connect
from harness.sandbox.docker.image import ensure_image
from harness.sandbox.pool import SandboxPool

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


def suite(n: int):
    return parse_input_output({"inputs": [f"{i} {i + 1}\n" for i in range(n)], "outputs": [f"{2 * i + 1}\n" for i in range(n)]})


def pool_per_test_ms(image, client, workers: int, tests: int, per_job: int = 200) -> float:
    jobs = [ExecutionJob(suite(per_job), PROGRAM) for _ in range(tests // per_job)]
    with SandboxPool(DockerBackend(image, client=client, capacity=workers)) as pool:
        pool.map(jobs[:workers])  # start every container before timing
        start = time.perf_counter()
        results = pool.map(jobs)
        elapsed = time.perf_counter() - start
    assert all(r.passed for r in results), "benchmark program must pass"
    return elapsed * 1000 / (len(jobs) * per_job)


def official_per_test_ms(tests: int) -> float:
    """TACO HEAD's way: subprocess.run(['python', file]) per test, text mode, 4 s timeout."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(stdin_programs(PROGRAM).exec_program)
    start = time.perf_counter()
    for i in range(tests):
        done = subprocess.run([sys.executable, f.name], input=f"{i} {i + 1}\n", text=True, capture_output=True, timeout=4)
        assert done.returncode == 0 and done.stdout.strip() == str(2 * i + 1)
    elapsed = time.perf_counter() - start
    os.unlink(f.name)
    return elapsed * 1000 / tests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=4000)
    parser.add_argument("--official-tests", type=int, default=200)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    client = connect()
    image = ensure_image(client)
    cpus = os.cpu_count() or 1
    one = pool_per_test_ms(image, client, 1, args.tests)
    many = pool_per_test_ms(image, client, cpus, args.tests)
    official = official_per_test_ms(args.official_tests)
    rows = [
        ("pool, 1 container (latency per test)", one),
        (f"pool, {cpus} containers (wall time / tests)", many),
        ("official: fresh `python` per test, serial", official),
    ]
    command = "python bench/sandbox_overhead.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "| setting | ms per test |",
        "|---|---|",
        *[f"| {name} | {ms:.2f} |" for name, ms in rows],
        f"| **speed-up, pool ({cpus} containers) vs official** | **{official / many:.0f}×** |",
    ]
    table = "\n".join(lines)
    print(table)
    write_figures(
        figures_dir() / "sandbox_overhead.json",
        {
            "cpus": cpus,
            "pool_1_ms": round(one, 3),
            "pool_all_ms": round(many, 3),
            "official_ms": round(official, 3),
            "ratio": round(official / many, 1),
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.platform(),
        },
    )
    if args.markdown:
        section = (
            "## Sandbox per-test overhead (issue: sandbox core)\n\n"
            f"Trivial stdin program (`a+b`), {args.tests} tests through the pool per setting, "
            f"{args.official_tests} tests the official way, same run. Machine: {cpus} CPUs, "
            f"{platform.platform()}, {time.strftime('%Y-%m-%d')}.\n\n"
            f"Command: `make bench` (runs `{command}`)\n\n{table}\n"
        )
        write_section(args.markdown, "## Sandbox per-test overhead", section)


if __name__ == "__main__":
    main()
