"""Evaluation on a Ray cluster: how throughput scales with sandbox hosts, what Ray adds per job, and
what a node dying mid-run costs.

A local ``ray.cluster_utils.Cluster`` (a head with no CPUs, sandbox nodes added one by one) stands in
for machines: every node's sandboxes run on this machine's Docker daemon.  Two cores cannot show CPU
scaling, so the scaling load is wall-bound: each program sleeps before answering (``--sleep`` per
test), and a share of them (``--timeout-share``) sleep past the test's limit, as slow wrong programs
do.  What is measured:

* scaling: samples/s with 1, 2 and 4 hosts of ``--sandboxes`` each, and the efficiency against
  ideal (n hosts x the 1-host rate);
* dispatch: trivial programs (answer at once), wall time per job through the Ray service with one
  host against the local ``SandboxPool`` with the same sandboxes on the same daemon, both as
  throughput (many jobs queued) and as latency (one job at a time);
* a fault run: 4 hosts, one node removed when ``--kill-at`` of the jobs are done; samples finished
  per second over time, with the removal marked, and every job's result checked.

    python bench/cluster_scaling.py [--markdown docs/BENCHMARKS.md] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

import ray
from ray.cluster_utils import Cluster

from bench.sections import figures_dir, write_figures, write_section
from harness.cluster.choice import HOST_RESOURCE
from harness.cluster.service import RayExecutionService
from harness.data.testcases import Mode, TestCase, TestSuite
from harness.evaluation.execution import ExecutionJob, RunLimits
from harness.judging.verdicts import SampleResult, SampleStatus, Verdict
from harness.sandbox.choice import SandboxChoice
from harness.sandbox.docker.backend import DockerBackend, connect
from harness.sandbox.docker.image import ensure_image
from harness.sandbox.pool import SandboxPool

HEADING = "## Evaluation on a Ray cluster"
OBJECT_STORE_BYTES = 80 * 2**20
TEST_TIMEOUT_S = 2.0


def suite(tests: int) -> TestSuite:
    return TestSuite(Mode.STDIN, None, tuple(TestCase(f"{i}\n", f"{i + 1}\n") for i in range(tests)))


def wall_bound_jobs(count: int, tests: int, sleep_s: float, timeout_share: float) -> list[ExecutionJob]:
    """Programs that sleep *sleep_s* per test and answer right; every (1/timeout_share)-th sleeps past
    the limit instead (a timeout, the sample's first test ends it)."""
    problem = suite(tests)
    every = round(1 / timeout_share) if timeout_share > 0 else 0
    jobs = []
    for i in range(count):
        pause = TEST_TIMEOUT_S * 3 if every and i % every == every - 1 else sleep_s
        code = f"import time\ntime.sleep({pause})\nprint(int(input()) + 1)\n# {i}\n"
        jobs.append(ExecutionJob(problem, code, RunLimits(timeout_s=TEST_TIMEOUT_S), early_exit=True))
    return jobs


def trivial_jobs(count: int) -> list[ExecutionJob]:
    problem = suite(1)
    return [ExecutionJob(problem, f"print(int(input()) + 1)\n# {i}\n", RunLimits(timeout_s=TEST_TIMEOUT_S)) for i in range(count)]


def run_all(service, jobs: list[ExecutionJob], on_result: Callable[[float], None] = lambda at: None) -> tuple[float, list]:
    """Submit every job at once; (seconds until the last result, results in job order)."""
    results: list = [None] * len(jobs)
    done: queue.Queue[int] = queue.Queue()
    started = time.monotonic()

    def deliver(index: int) -> Callable[[SampleResult], None]:
        def put(result: SampleResult) -> None:
            results[index] = result
            on_result(time.monotonic() - started)
            done.put(index)

        return put

    for index, job in enumerate(jobs):
        service.submit_with_callback(job, deliver(index), 0.0)
    for _ in jobs:
        done.get()
    return time.monotonic() - started, results


def run_one_at_a_time(service, jobs: list[ExecutionJob]) -> float:
    started = time.monotonic()
    for job in jobs:
        reply: queue.Queue[SampleResult] = queue.Queue()
        service.submit_with_callback(job, reply.put, 0.0)
        reply.get()
    return time.monotonic() - started


def warm(service, sandboxes: int) -> None:
    """Start every sandbox and run one trivial job per sandbox, so no measurement pays for starts."""
    service.warm_up()
    run_all(service, trivial_jobs(sandboxes * 2))


def check(results: list, jobs: list[ExecutionJob]) -> None:
    bad = [r for r in results if r is None or r.status is not SampleStatus.JUDGED]
    if bad:
        raise SystemExit(f"bench: {len(bad)} job(s) not scored: {bad[0]}")
    wrong = [
        r for r, j in zip(results, jobs) if (r.verdicts[0] is Verdict.PASSED) != (f"sleep({TEST_TIMEOUT_S * 3})" not in j.code)
    ]
    if wrong:
        raise SystemExit(f"bench: {len(wrong)} unexpected verdict(s): {wrong[0]}")


def add_host(cluster: Cluster, sandboxes: int):
    node = cluster.add_node(num_cpus=sandboxes, resources={HOST_RESOURCE: 1}, object_store_memory=OBJECT_STORE_BYTES)
    cluster.wait_for_nodes()
    return node


def scaling(cluster: Cluster, choice: SandboxChoice, args) -> tuple[list[dict], list]:
    rows = []
    nodes = [add_host(cluster, args.sandboxes)]
    for hosts in (1, 2, 4):
        while len(nodes) < hosts:
            nodes.append(add_host(cluster, args.sandboxes))
        jobs = wall_bound_jobs(args.jobs_per_host * hosts, args.tests, args.sleep, args.timeout_share)
        with RayExecutionService(None, choice) as service:
            warm(service, service.size)
            seconds, results = run_all(service, jobs)
        check(results, jobs)
        rows.append({"hosts": hosts, "sandboxes": hosts * args.sandboxes, "jobs": len(jobs), "seconds": round(seconds, 2)})
        rate = len(jobs) / seconds
        rows[-1]["samples_per_s"] = round(rate, 2)
        rows[-1]["speedup"] = round(rate / rows[0]["samples_per_s"], 2)
        rows[-1]["efficiency"] = round(rows[-1]["speedup"] / hosts, 3)
        print(f"bench: cluster scaling: {rows[-1]}", flush=True)
    return rows, nodes


def dispatch(cluster: Cluster, nodes: list, choice: SandboxChoice, image: str, args) -> dict:
    """One host (the others removed) against the local pool, same sandboxes, same daemon, both open at
    once and measured in turns (``--rounds``; the fastest of each is kept: the machine is shared)."""
    for node in nodes[1:]:
        cluster.remove_node(node)
    jobs = trivial_jobs(args.trivial_jobs)
    sequential = trivial_jobs(args.trivial_jobs // 4)
    queued: dict[str, list[float]] = {"local": [], "ray": []}
    one_at_a_time: dict[str, list[float]] = {"local": [], "ray": []}
    with (
        SandboxPool[SampleResult](DockerBackend(image, client=connect(), capacity=args.sandboxes)) as pool,
        RayExecutionService(None, choice) as service,
    ):
        warm(pool, args.sandboxes)
        warm(service, service.size)
        for _ in range(args.rounds):
            for name, runner in (("local", pool), ("ray", service)):
                seconds, results = run_all(runner, jobs)
                if any(r.status is not SampleStatus.JUDGED or not r.passed for r in results):
                    raise SystemExit(f"bench: a trivial job was not judged as passed ({name})")
                queued[name].append(seconds)
                one_at_a_time[name].append(run_one_at_a_time(runner, sequential))
    local_s, ray_s = min(queued["local"]), min(queued["ray"])
    local_seq_s, ray_seq_s = min(one_at_a_time["local"]), min(one_at_a_time["ray"])
    figures = {
        "jobs": len(jobs),
        "rounds": args.rounds,
        "sandboxes": args.sandboxes,
        "local_ms_per_job": round(1000 * local_s / len(jobs), 3),
        "ray_ms_per_job": round(1000 * ray_s / len(jobs), 3),
        "added_ms_per_job": round(1000 * (ray_s - local_s) / len(jobs), 3),
        "sequential_jobs": len(sequential),
        "local_latency_ms": round(1000 * local_seq_s / len(sequential), 2),
        "ray_latency_ms": round(1000 * ray_seq_s / len(sequential), 2),
    }
    figures["added_latency_ms"] = round(figures["ray_latency_ms"] - figures["local_latency_ms"], 2)
    print(f"bench: cluster dispatch: {figures}", flush=True)
    return figures


class _Echo:
    """A Ray actor that does nothing: what one call through Ray costs, without a sandbox."""

    def run(self, job: int, references: list) -> int:
        return job

    def cpu_seconds(self) -> float:
        return time.process_time()


def ray_call_cost(cluster: Cluster, calls: int) -> dict:
    """CPU per call (driver and actor) of a no-op actor call made as the service makes its calls
    (``.remote`` with a completion callback, 8 in flight)."""
    actor = ray.remote(_Echo).options(num_cpus=0, resources={HOST_RESOURCE: 1}, max_concurrency=10).remote()
    ray.get(actor.run.remote(0, []))
    finished = threading.Semaphore(0)
    room = threading.Semaphore(8)
    started, driver_cpu, actor_cpu = time.monotonic(), time.process_time(), ray.get(actor.cpu_seconds.remote())

    def done(_future: object) -> None:
        room.release()
        finished.release()

    for i in range(calls):
        room.acquire()
        actor.run.remote(i, []).future().add_done_callback(done)
    for _ in range(calls):
        finished.acquire()
    wall = time.monotonic() - started
    figures = {
        "calls": calls,
        "wall_ms_per_call": round(1000 * wall / calls, 3),
        "driver_cpu_ms_per_call": round(1000 * (time.process_time() - driver_cpu) / calls, 3),
        "actor_cpu_ms_per_call": round(1000 * (ray.get(actor.cpu_seconds.remote()) - actor_cpu) / calls, 3),
    }
    ray.kill(actor)
    print(f"bench: a no-op Ray call: {figures}", flush=True)
    return figures


def fault_run(cluster: Cluster, choice: SandboxChoice, args) -> dict:
    nodes = [add_host(cluster, args.sandboxes) for _ in range(3)]  # with the one left: 4 hosts
    jobs = wall_bound_jobs(args.jobs_per_host * 4, args.tests, args.sleep, args.timeout_share)
    finished: list[float] = []
    kill_after = int(len(jobs) * args.kill_at)
    killed: list[float] = []

    def on_result(at: float) -> None:
        finished.append(at)
        if len(finished) == kill_after:
            threading.Thread(target=lambda: (killed.append(time.monotonic()), cluster.remove_node(nodes[-1]))).start()

    with RayExecutionService(None, choice) as service:
        warm(service, service.size)
        started = time.monotonic()
        seconds, results = run_all(service, jobs, on_result)
        stats = service.stats()
    check(results, jobs)
    assert stats.hosts is not None
    kill_s = killed[0] - started
    timeline = []
    for second in range(int(seconds) + 1):
        timeline.append([second, sum(second <= t < second + 1 for t in finished)])
    figures = {
        "jobs": len(jobs),
        "hosts": 4,
        "seconds": round(seconds, 2),
        "kill_at_s": round(kill_s, 2),
        "hosts_lost": stats.hosts.lost,
        "requeued": stats.hosts.requeued,
        "infra_errors": sum(r.status is not SampleStatus.JUDGED for r in results),
        "timeline": timeline,
    }
    print(f"bench: cluster fault run: { {k: v for k, v in figures.items() if k != 'timeline'} }", flush=True)
    return figures


def render(args, rows: list[dict], cost: dict, fault: dict, machine: str) -> str:
    four = rows[-1]
    bucket = max(1, round(args.sleep * args.tests))
    per_second = dict(fault["timeline"])
    windows = [
        (start, sum(per_second.get(second, 0) for second in range(start, start + bucket)) / bucket)
        for start in range(0, len(per_second), bucket)
    ]
    lines = [
        HEADING,
        "",
        f"`python bench/cluster_scaling.py{' --quick' if args.quick else ''}` on {machine}, {datetime.date.today()}. "
        "A local `ray.cluster_utils.Cluster` (head with no CPUs) stands in for the machines; every node's "
        "sandboxes run on this machine's Docker daemon, so the load is wall-bound: each program sleeps "
        f"{args.sleep:g} s per test ({args.tests} tests) before answering, and one in "
        f"{round(1 / args.timeout_share)} sleeps past the {TEST_TIMEOUT_S:g} s limit (a timeout).",
        "",
        f"**Scaling** ({args.sandboxes} sandboxes per host, {args.jobs_per_host} samples per host): "
        f"4 hosts run **{four['speedup']:.2f}×** the samples/s of one (target ≥ 3.6×), "
        f"efficiency {100 * four['efficiency']:.0f}% of ideal.",
        "",
        "| hosts | sandboxes | samples | seconds | samples/s | speedup | efficiency |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['hosts']} | {r['sandboxes']} | {r['jobs']} | {r['seconds']:.1f} | {r['samples_per_s']:.2f} | "
            f"{r['speedup']:.2f}× | {100 * r['efficiency']:.0f}% |"
            for r in rows
        ],
        "",
        f"**Dispatch cost** (trivial programs, one host of {cost['sandboxes']} sandboxes against the local pool "
        f"with the same sandboxes on the same daemon, the fastest of {cost['rounds']} turns each): "
        f"{cost['jobs']} jobs queued at once take "
        f"{cost['local_ms_per_job']:.2f} ms per job locally and {cost['ray_ms_per_job']:.2f} ms through Ray: "
        f"**{cost['added_ms_per_job']:+.2f} ms added per job** (target ≤ 2 ms).  One job at a time "
        f"({cost['sequential_jobs']} jobs), the round trip: {cost['local_latency_ms']:.1f} ms locally, "
        f"{cost['ray_latency_ms']:.1f} ms through Ray ({cost['added_latency_ms']:+.1f} ms): the latency Ray "
        "adds, which the jobs a host holds beyond its sandboxes hide when work is queued.  For scale, a no-op "
        f"actor call made the same way costs {cost['noop_call']['driver_cpu_ms_per_call']:.2f} ms of the driver's CPU and "
        f"{cost['noop_call']['actor_cpu_ms_per_call']:.2f} ms of the actor's ({cost['noop_call']['calls']} calls, "
        f"{cost['noop_call']['wall_ms_per_call']:.2f} ms apart).  On this 2-core machine Ray's processes share the "
        "cores with the sandboxes and with other work on the machine, so the difference moves by about a "
        "millisecond from run to run.",
        "",
        f"**Fault run**: {fault['jobs']} samples on 4 hosts; one node removed at {fault['kill_at_s']:.1f} s "
        f"(after {round(100 * args.kill_at)}% of the samples).  {fault['hosts_lost']} host lost, "
        f"{fault['requeued']} job(s) re-queued, {fault['infra_errors']} infrastructure errors, every verdict as "
        f"expected; {fault['seconds']:.1f} s in all.  Samples finished per second, over {bucket} s windows "
        "(a job lasts about that long, so the samples finish in waves; ▼: the window of the removal):",
        "",
        "```",
        *[
            f"{start:4d} s {'▼' if start <= fault['kill_at_s'] < start + bucket else ' '} {'█' * round(rate)} {rate:.1f}"
            for start, rate in windows
        ],
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sandboxes", type=int, default=4, help="Sandboxes per host.")
    parser.add_argument("--jobs-per-host", type=int, default=None)
    parser.add_argument("--tests", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=1.0, help="Seconds each program sleeps per test.")
    parser.add_argument("--timeout-share", type=float, default=0.1)
    parser.add_argument("--trivial-jobs", type=int, default=None)
    parser.add_argument("--kill-at", type=float, default=0.4)
    parser.add_argument("--rounds", type=int, default=None, help="Turns of the dispatch measurement (the fastest is kept).")
    args = parser.parse_args()
    args.jobs_per_host = args.jobs_per_host or (16 if args.quick else 48)
    args.trivial_jobs = args.trivial_jobs or (100 if args.quick else 400)
    args.rounds = args.rounds or (1 if args.quick else 5)
    image = ensure_image(connect())
    choice = SandboxChoice(workers=args.sandboxes)
    machine = f"{os.cpu_count()} CPUs, {platform.machine()}"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE_BYTES})
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        rows, nodes = scaling(cluster, choice, args)
        cost = dispatch(cluster, nodes, choice, image, args)
        cost["noop_call"] = ray_call_cost(cluster, 400 if args.quick else 2000)
        fault = fault_run(cluster, choice, args)
    finally:
        ray.shutdown()
        cluster.shutdown()
    figures = {"date": str(datetime.date.today()), "machine": machine, "scaling": rows, "dispatch": cost, "fault": fault}
    write_figures(figures_dir() / "cluster_scaling.json", figures)
    write_section(args.markdown, HEADING, render(args, rows, cost, fault, machine))
    print(f"bench: wrote {args.markdown}")


if __name__ == "__main__":
    main()
