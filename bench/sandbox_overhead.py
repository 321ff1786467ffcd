"""Per-test cost of a sandbox on a trivial stdin program, against the bare-fork floor and the official
procedure (a fresh `python` per test, serially, with TACO's header), all measured in the same run.

* **One sandbox, per test** (the slope): one sample with `--small` tests and one with `--big` tests
  through a pool of one Docker sandbox (`--workers 1`), host judging included; the difference of
  their wall times over the difference of their test counts, so that what a job costs once (its
  compile step, the container) cancels out.
* **The floor**: in a container of the same image with the same limits, a warm interpreter in the
  runner's state (its modules and TACO's header imported, the heap frozen as the runner freezes it)
  forks a child per test that runs the same program, compiled once, over pipes; the parent feeds
  stdin, reads stdout and stderr to their ends and waits for the child.  Nothing else: no privilege
  drop, no limits, no clean-up, no host.  Same slope method.
* Rounds alternate floor and sandbox, so that both see the same load (the medians are reported).

    python bench/sandbox_overhead.py [--small 1000] [--big 5000] [--rounds 5] [--official-tests 200]
                                     [--markdown docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
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

PROGRAM = "print(2 * int(input()))\n"
TARGET_RATIO = 1.3

# Runs inside the sandbox image (`python3 -c`, in /opt/taco-runner): argv = small, big, rounds, the program.
# Prints one JSON list: per round, [seconds for `small` tests, seconds for `big` tests].
FLOOR_SCRIPT = r"""
import gc, io, json, os, sys, time
import taco_runner.serve  # every module the runner imports: the same heap to fork
from taco_runner import interpreter, isolation
isolation.set_dumpable(False)
interpreter.warm_up()
gc.collect()
gc.freeze()
small, big, rounds = map(int, sys.argv[1:4])
code = compile(sys.argv[4], "/tmp/solution.py", "exec")

def one(i):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0); os.dup2(out_w, 1); os.dup2(err_w, 2)
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "rb", closefd=False)))
            sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "wb", closefd=False)))
            exec(code, {"__name__": "__main__"})
            sys.stdout.flush()
        finally:
            os._exit(0)
    os.close(in_r); os.close(out_w); os.close(err_w)
    os.write(in_w, b"%d\n" % i)
    os.close(in_w)
    out = b""
    while True:
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        out += chunk
    while os.read(err_r, 65536):
        pass
    os.close(out_r); os.close(err_r)
    os.waitpid(pid, 0)
    if out != b"%d\n" % (2 * i):
        raise SystemExit("floor program gave %r" % out)

def timed(n):
    start = time.perf_counter()
    for i in range(n):
        one(i)
    return time.perf_counter() - start

timed(200)
print(json.dumps([[timed(small), timed(big)] for _ in range(rounds)]))
"""


def suite(n: int):
    return parse_input_output({"inputs": [f"{i}\n" for i in range(n)], "outputs": [f"{2 * i}\n" for i in range(n)]})


def floor_seconds(backend: DockerBackend, small: int, big: int, rounds: int) -> list[tuple[float, float]]:
    """(seconds for *small* tests, for *big* tests) per round, forked bare in one container of the
    sandbox image with the sandboxes' limits."""
    api = backend.client.api
    host_config = backend.host_config()
    host_config["AutoRemove"] = False  # its output is read after it exits
    program = stdin_programs(PROGRAM).exec_program
    created = api.create_container(
        backend.image,
        command=["python3", "-c", FLOOR_SCRIPT, str(small), str(big), str(rounds), program],
        user="0:0",
        network_disabled=True,
        host_config=host_config,
    )
    try:
        api.start(created["Id"])
        status = api.wait(created["Id"], timeout=3600)
        out = api.logs(created["Id"], stdout=True, stderr=False).decode()
        if status.get("StatusCode") != 0:
            raise RuntimeError(f"floor container failed: {api.logs(created['Id']).decode()[-2000:]}")
    finally:
        api.remove_container(created["Id"], force=True)
    return [(a, b) for a, b in json.loads(out.strip().splitlines()[-1])]


def sandbox_seconds(pool: SandboxPool, small: int, big: int) -> tuple[float, float]:
    """Wall seconds of one sample of *small* tests and one of *big* tests through *pool*."""
    times = []
    for n in (small, big):
        job = ExecutionJob(suite(n), PROGRAM)
        start = time.perf_counter()
        result = pool.run(job)
        times.append(time.perf_counter() - start)
        assert result.passed, f"benchmark program must pass: {result.detail}"
    return times[0], times[1]


def slope_ms(seconds: tuple[float, float], small: int, big: int) -> float:
    return (seconds[1] - seconds[0]) * 1000 / (big - small)


def pool_per_test_ms(image, client, workers: int, tests: int, per_job: int = 200) -> float:
    """Wall time per test of many 200-test samples over *workers* sandboxes."""
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
        done = subprocess.run([sys.executable, f.name], input=f"{i}\n", text=True, capture_output=True, timeout=4)
        assert done.returncode == 0 and done.stdout.strip() == str(2 * i)
    elapsed = time.perf_counter() - start
    os.unlink(f.name)
    return elapsed * 1000 / tests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1000, help="tests of the smaller sample (slope method)")
    parser.add_argument("--big", type=int, default=5000, help="tests of the larger sample (slope method)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of floor and sandbox (medians)")
    parser.add_argument("--tests", type=int, default=4000, help="tests through the pool of all CPUs")
    parser.add_argument("--official-tests", type=int, default=200)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--image", help="measure this sandbox image (e.g. an earlier runner's) instead of this checkout's")
    args = parser.parse_args()
    client = connect()
    image = args.image or ensure_image(client)
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    backend = DockerBackend(image, client=client, capacity=1)
    floor_slopes, sandbox_slopes = [], []
    with SandboxPool(backend) as pool:
        pool.run(ExecutionJob(suite(50), PROGRAM))  # start the sandbox before timing
        for _ in range(args.rounds):
            (floor,) = floor_seconds(backend, args.small, args.big, 1)
            floor_slopes.append(slope_ms(floor, args.small, args.big))
            sandbox_slopes.append(slope_ms(sandbox_seconds(pool, args.small, args.big), args.small, args.big))
            print(f"round: floor {floor_slopes[-1]:.3f} ms, one sandbox {sandbox_slopes[-1]:.3f} ms per test", flush=True)
    one = statistics.median(sandbox_slopes)
    floor_ms = statistics.median(floor_slopes)
    many = pool_per_test_ms(image, client, cpus, args.tests)
    official = official_per_test_ms(args.official_tests)
    load_after = os.getloadavg()
    ratio = one / floor_ms
    rows = [
        (f"one sandbox: per-test cost (slope {args.small}→{args.big} tests of one sample, host judging included)", f"{one:.2f}"),
        ("bare fork of the runner's warm interpreter, same image and limits: the floor", f"{floor_ms:.2f}"),
        (f"**one sandbox / floor** (target ≤ {TARGET_RATIO}×)", f"**{ratio:.2f}×**"),
        (f"pool, {cpus} containers, samples of 200 tests (wall time / tests)", f"{many:.2f}"),
        ("official: fresh `python` per test (TACO's header: numpy), serial", f"{official:.1f}"),
        ("official / one sandbox", f"{official / one:.0f}×"),
        (f"**speed-up, pool ({cpus} containers) vs official**", f"**{official / many:.0f}×**"),
    ]
    command = "python bench/sandbox_overhead.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = ["| setting | ms per test |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]]
    table = "\n".join(lines)
    rounds = ", ".join(f"{f:.2f}/{s:.2f}" for f, s in zip(floor_slopes, sandbox_slopes))
    print(table)
    print(f"rounds (floor/sandbox ms): {rounds}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    write_figures(
        figures_dir() / "sandbox_overhead.json",
        {
            "cpus": cpus,
            "one_sandbox_ms": round(one, 3),
            "floor_ms": round(floor_ms, 3),
            "floor_ratio": round(ratio, 2),
            "rounds_floor_ms": [round(x, 3) for x in floor_slopes],
            "rounds_one_sandbox_ms": [round(x, 3) for x in sandbox_slopes],
            "official_vs_one_sandbox": round(official / one, 1),
            "pool_all_ms": round(many, 3),
            "official_ms": round(official, 3),
            "ratio": round(official / many, 1),
            "load_average": [round(load_before[0], 1), round(load_after[0], 1)],
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.platform(),
        },
    )
    if args.markdown:
        section = (
            "## Sandbox per-test overhead (issue: sandbox core; issue 16: the fork floor)\n\n"
            f"Trivial stdin program (`{PROGRAM.strip()}`), all in one run. One sandbox: the slope between a sample of "
            f"{args.small} tests and one of {args.big} through a pool of one Docker sandbox (`--workers 1`), host "
            "judging included. The floor: in a container of the same image with the same limits, the runner's warm "
            "interpreter (its modules and TACO's header imported, heap frozen) forks a child per test that runs the "
            "same program compiled once, over pipes, and waits for it: no privilege drop, limits, clean-up or host. "
            f"Same slope method; {args.rounds} rounds alternating floor and sandbox, medians (per round, floor/sandbox "
            f"ms: {rounds}). The official way: {args.official_tests} tests, a fresh `python` each. Machine: {cpus} CPUs, "
            f"{platform.platform()}, {time.strftime('%Y-%m-%d')}; load average {load_before[0]:.1f} at the start, "
            f"{load_after[0]:.1f} at the end (a shared machine).\n\n"
            f"Command: `make bench` (runs `{command}`)\n\n{table}\n"
        )
        write_section(args.markdown, "## Sandbox per-test overhead", section)


if __name__ == "__main__":
    main()
