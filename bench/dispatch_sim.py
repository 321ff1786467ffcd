"""Simulated engines on the real shared queue: how the work of a generation splits between device
workers and when each one ends, without a GPU.

Each simulated worker behaves as the fast engine does towards the queue (harness/generation/
work_queue.py's Dispatcher, the real one, on the simulated clock): it starts with a whole prompt, tops
its slots up as they free (asking for what it lacks, again until the queue answers nothing, and saying
what its slots are doing), runs 16-step chunks whose time grows with its busy slots (a + b * busy
milliseconds a step; the default is the Llama-3.2-3B shape's on an H200, from session 11's
generation-steps run: 256 slots 5.98 ms, 512 slots 9.49 ms), and returns each sample when its tokens
are done.  Samples run to the token limit, except a share `--eos` of them that stop earlier at a
random length.

Without sharing the end of the run (harness/generation/end_sharing.py; `"greedy"` in the output) it
reproduces what the two-GPU check measured in session 11 (docs/BENCHMARKS.md): on the issue's job (200
prompts x 20, 512 tokens, 256 slots a GPU, every random-weight sample at the limit) the first GPU
takes 2,060 samples and the second 1,940, and the first ends about a second after the other, because
slots free in rounds and the first to ask near the end takes a whole round.  With it (`"shared"`) the
split is 2,020 / 1,980 and the last sample comes 6% sooner (on the H200s, session 12: 2,040-2,048 /
1,952-1,960, the GPUs' last samples 0.01-0.27 s apart).  The end is shared only while most samples
run to the token limit (work_queue.AT_LIMIT_SHARE); with samples of many lengths the greedy queue
already ends the workers together.  `--random N` runs N random configurations (workers, slots,
speeds, load times, step-time models, lengths) both ways: where the shared end is later than the
greedy one, and by how much (seeds 1-3, 2,000 each: one of 6,000 later by 2.4%, none other by more
than 0.5%; 307 sooner by more than 1%, the best by 33%).

    python bench/dispatch_sim.py                      # the issue's job on two GPUs, and on one
    python bench/dispatch_sim.py --eos 0.5            # half the samples stop early
    python bench/dispatch_sim.py --workers 4 --ready 0,0.1,0.2,0.3 --speeds 1,1,1,1.3
    python bench/dispatch_sim.py --random 800         # sharing the end against the greedy queue
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

from harness.generation.end_sharing import SlotState
from harness.generation.journal import JournalEntry
from harness.generation.plan import GenerationSettings, PromptJob, plan_jobs
from harness.generation.work_queue import Dispatcher, Finished, Ready, Want, WorkQueue

CHUNK_STEPS = 16


@dataclass
class _Engine:
    """One simulated worker's engine: its clock, slots and what it holds."""

    now: float
    speed: float  # its step time is this times the model's
    busy: list[list] = field(default_factory=list)  # [(task_id, index), steps left]
    pending: list[tuple[int, int]] = field(default_factory=list)  # taken, waiting for a slot
    exhausted: bool = False  # the queue answered nothing: run what it holds, then ask with wait
    state: str = "loading"  # loading, idle (between runs), running, waiting (for the queue), stopped
    finished: int = 0
    last_sample: float = 0.0
    step_seconds: float = 0.0  # its last chunk's seconds a step ...
    step_running: int = 0  # ... with this many samples running

    def take(self, jobs: tuple[PromptJob, ...]) -> None:
        self.pending += [(job.task_id, spec.index) for job in jobs for spec in job.samples]


@dataclass(frozen=True)
class Job:
    prompts: int = 200
    n: int = 20
    max_new_tokens: int = 512
    eos: float = 0.0  # share of samples that stop before the limit, at a random length
    seed: int = 0
    share_end: bool = True  # engines say what their slots do (end_sharing); False: the greedy queue


@dataclass(frozen=True)
class Workers:
    count: int = 2
    slots: int = 256
    ready: tuple[float, ...] = (0.0, 0.1)  # seconds until each one's model is loaded
    speeds: tuple[float, ...] = (1.0, 1.0)  # step time relative to the model's
    step_ms: tuple[float, float] = (2.47, 0.0137)  # a + b * busy slots, milliseconds a step


def simulate(job: Job, workers: Workers) -> list[dict]:
    """Per worker: the samples it generated and when it returned its last one (seconds)."""
    rng = random.Random(job.seed)
    prompts = [(task, "x" * rng.randint(200, 3000)) for task in range(job.prompts)]
    jobs = plan_jobs(prompts, GenerationSettings("simulated", n=job.n, max_new_tokens=job.max_new_tokens))
    steps = {
        (j.task_id, s.index): job.max_new_tokens if rng.random() >= job.eos else rng.randint(16, job.max_new_tokens)
        for j in jobs
        for s in j.samples
    }
    engines = [_Engine(workers.ready[w], workers.speeds[w]) for w in range(workers.count)]
    clock = [0.0]  # the simulated time of the event being handled, the dispatcher's clock
    dispatcher = Dispatcher(WorkQueue(jobs), lambda entry: None, clock=lambda: clock[0])
    for w in range(workers.count):
        dispatcher.add_worker(f"w{w}")
    a, b = workers.step_ms
    while live := [w for w, e in enumerate(engines) if e.state not in ("waiting", "stopped")]:
        w = min(live, key=lambda w: engines[w].now)
        engine = engines[w]
        clock[0] = engine.now
        if engine.state == "loading":
            dispatcher.handle(w, Ready("simulated"))
            engine.state = "idle"
        if engine.state == "idle":  # a run starts with a whole prompt, once there is one
            engine.state = "waiting"  # until an answer wakes it, now or later
            for to, answer in dispatcher.handle(w, Want(1, wait=True)):
                _wake(engines[to], answer, engine.now)
            continue
        free = workers.slots - len(engine.busy)
        while len(engine.pending) < free and not engine.exhausted:  # as SampleFeed.top_up
            slots = None
            if job.share_end and engine.step_seconds:
                left = tuple(item[1] for item in engine.busy)
                idle = engine.speed * a / 1000
                slots = SlotState(workers.slots, left, len(engine.pending), engine.step_seconds, engine.step_running, idle)
            replies = dispatcher.handle(w, Want(free - len(engine.pending), slots=slots))
            arrived = next(jobs for to, jobs in replies if to == w)
            for to, answer in replies:  # a waiting worker's share
                if to != w:
                    _wake(engines[to], answer, engine.now)
            engine.exhausted = not arrived
            engine.take(arrived)
        while free and engine.pending:
            key = engine.pending.pop(0)
            engine.busy.append([key, steps[key]])
            free -= 1
        if not engine.busy:
            engine.state = "idle"
            continue
        step = engine.speed * (a + b * len(engine.busy)) / 1000
        engine.now += CHUNK_STEPS * step
        engine.step_seconds, engine.step_running = step, len(engine.busy)
        running = []
        for item in engine.busy:
            item[1] -= CHUNK_STEPS
            if item[1] > 0:
                running.append(item)
                continue
            (task_id, index), _ = item
            reason = "length" if steps[(task_id, index)] >= job.max_new_tokens else "eos"
            entry = JournalEntry(task_id, index, 0, "", steps[(task_id, index)], reason, "")
            for to, answer in dispatcher.handle(w, Finished(entry)):  # a waiting worker's answer
                _wake(engines[to], answer, engine.now)
            engine.finished += 1
            engine.last_sample = engine.now
        engine.busy = running
    if not dispatcher.queue.all_finished:
        raise SystemExit("dispatch_sim: the simulated workers stopped with samples unfinished")
    return [{"samples": e.finished, "last_sample_s": round(e.last_sample, 3)} for e in engines]


def _wake(engine: _Engine, answer: tuple[PromptJob, ...], now: float) -> None:
    """A waiting engine answered: it runs what it got (from ``now``), or stops."""
    engine.state = "running" if answer else "stopped"
    engine.take(answer)
    engine.exhausted, engine.now = False, max(engine.now, now)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def last_sample(job: Job, workers: Workers) -> float:
    """When the run's last sample came (seconds)."""
    return max(worker["last_sample_s"] for worker in simulate(job, workers))


def random_configurations(count: int, seed: int) -> dict:
    """``count`` random configurations, each with the end shared and greedy: the ratio of their last
    samples (shared / greedy; above 1, sharing lost)."""
    rng = random.Random(seed)
    ratios = []
    later = 0.0  # the most seconds a shared end came after the greedy one
    worst: dict = {}
    for _ in range(count):
        size = rng.choice([2, 2, 2, 3, 4])
        job = Job(
            prompts=rng.randint(1, 120),
            n=rng.choice([1, 2, 5, 10, 20]),
            max_new_tokens=rng.choice([16, 64, 256, 512]),
            eos=rng.choice([0, 0, 0.3, 0.7, 1.0]),
            seed=rng.randint(0, 999),
        )
        workers = Workers(
            size,
            rng.choice([4, 16, 64, 128, 256, 512]),
            tuple(sorted(rng.uniform(0, 3) if rng.random() < 0.5 else rng.uniform(0, 0.2) for _ in range(size))),
            tuple(rng.choice([1, 1, 1, 1.1, 1.3, 1.6]) for _ in range(size)),
            # Step-time models from batch-bound (the 3B shape on an H200) to weight-bound and to linear.
            rng.choice([(2.47, 0.0137), (2.0, 0.005), (0.5, 0.05), (5.0, 0.001)]),
        )
        greedy = last_sample(replace(job, share_end=False), workers)
        shared = last_sample(job, workers)
        ratios.append(shared / greedy)
        later = max(later, shared - greedy)
        if ratios[-1] >= max(ratios):
            worst = {
                "ratio": round(ratios[-1], 4),
                "seconds": [round(shared, 3), round(greedy, 3)],
                "job": vars(job),
                "workers": vars(workers),
            }
    ratios.sort()
    return {
        "configurations": count,
        "seed": seed,
        "shared_over_greedy": {
            "best": round(ratios[0], 3),
            "median": round(ratios[count // 2], 3),
            "worst": round(ratios[-1], 4),
        },
        "later_by_over_0.5%": sum(r > 1.005 for r in ratios),
        "most_seconds_later": round(later, 3),
        "sooner_by_over_1%": sum(r < 0.99 for r in ratios),
        "worst": worst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--eos", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--ready", default="0,0.1", help="seconds until each worker's model is loaded")
    parser.add_argument("--speeds", default="1,1", help="each worker's step time relative to the model's")
    parser.add_argument("--step-ms", default="2.47,0.0137", help="a,b: a step takes a + b * busy slots ms")
    parser.add_argument(
        "--random",
        type=int,
        default=0,
        help="Compare the shared end with the greedy one on this many random configurations (--seed seeds them).",
    )
    args = parser.parse_args()
    if args.random:
        print(json.dumps(random_configurations(args.random, args.seed), indent=2))
        return
    ready, speeds, step = _floats(args.ready), _floats(args.speeds), _floats(args.step_ms)
    if not len(ready) == len(speeds) == args.workers or len(step) != 2:
        raise SystemExit("dispatch_sim: --ready and --speeds need a value per worker, --step-ms two")
    job = Job(args.prompts, args.n, args.max_new_tokens, args.eos, args.seed)
    several = Workers(args.workers, args.slots, ready, speeds, (step[0], step[1]))
    one = simulate(job, Workers(1, args.slots, ready[:1], speeds[:1], (step[0], step[1])))[0]
    figures: dict = {"job": vars(args), "one_worker": one}
    for label, way in (("shared", job), ("greedy", replace(job, share_end=False))):
        workers = simulate(way, several)
        ends = [worker["last_sample_s"] for worker in workers]
        figures[label] = {
            "workers": workers,
            "end_spread_s": round(max(ends) - min(ends), 3),
            "scaling_of_the_last_sample": round(one["last_sample_s"] / max(ends), 3),
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
