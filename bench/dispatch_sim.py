"""Simulated engines on the real shared queue: how the work of a generation splits between device
workers and when each one ends, without a GPU.

Each simulated worker behaves as the fast engine does towards the queue (harness/generation/
work_queue.py's Dispatcher, the real one; its decisions do not depend on time): it starts with a whole prompt, tops its
slots up as they free (asking for what it lacks, again until the queue answers nothing), runs 16-step
chunks whose time grows with its busy slots (a + b * busy milliseconds a step; the default is the
Llama-3.2-3B shape's on an H200, from session 11's generation-steps run: 256 slots 5.98 ms, 512 slots
9.49 ms), and returns each sample when its tokens are done.  Samples run to the token limit, except a
share `--eos` of them that stop earlier at a random length.

It reproduces what the two-GPU check measured (docs/BENCHMARKS.md, session 11): on the issue's job
(200 prompts x 20, 512 tokens, 256 slots a GPU, every random-weight sample at the limit) the first GPU
takes 2,060 samples and the second 1,940 in every run, and the first ends about a second after the
other, because slots free in rounds and the first to ask near the end takes a whole round.  A design for
sharing the end of a run can be tried here, against the greedy queue, before the GPUs.

    python bench/dispatch_sim.py                      # the issue's job on two GPUs, and on one
    python bench/dispatch_sim.py --eos 0.5            # half the samples stop early
    python bench/dispatch_sim.py --workers 4 --ready 0,0.1,0.2,0.3 --speeds 1,1,1,1.3
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `python bench/...`

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

    def take(self, jobs: tuple[PromptJob, ...]) -> None:
        self.pending += [(job.task_id, spec.index) for job in jobs for spec in job.samples]


@dataclass(frozen=True)
class Job:
    prompts: int = 200
    n: int = 20
    max_new_tokens: int = 512
    eos: float = 0.0  # share of samples that stop before the limit, at a random length
    seed: int = 0


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
    dispatcher = Dispatcher(WorkQueue(jobs), lambda entry: None)  # its decisions do not read the clock
    engines = [_Engine(workers.ready[w], workers.speeds[w]) for w in range(workers.count)]
    for w in range(workers.count):
        dispatcher.add_worker(f"w{w}")
    a, b = workers.step_ms
    while live := [w for w, e in enumerate(engines) if e.state not in ("waiting", "stopped")]:
        w = min(live, key=lambda w: engines[w].now)
        engine = engines[w]
        if engine.state == "loading":
            dispatcher.handle(w, Ready("simulated"))
            engine.state = "idle"
        if engine.state == "idle":  # a run starts with a whole prompt, once there is one
            replies = dispatcher.handle(w, Want(1, wait=True))
            if not replies:
                engine.state = "waiting"
            elif not replies[0][1]:
                engine.state = "stopped"
            else:
                engine.take(replies[0][1])
                engine.state, engine.exhausted = "running", False
            continue
        free = workers.slots - len(engine.busy)
        while len(engine.pending) < free and not engine.exhausted:  # as SampleFeed.top_up
            [(_, arrived)] = dispatcher.handle(w, Want(free - len(engine.pending)))
            engine.exhausted = not arrived
            engine.take(arrived)
        while free and engine.pending:
            key = engine.pending.pop(0)
            engine.busy.append([key, steps[key]])
            free -= 1
        if not engine.busy:
            engine.state = "idle"
            continue
        engine.now += engine.speed * CHUNK_STEPS * (a + b * len(engine.busy)) / 1000
        running = []
        for item in engine.busy:
            item[1] -= CHUNK_STEPS
            if item[1] > 0:
                running.append(item)
                continue
            (task_id, index), _ = item
            entry = JournalEntry(task_id, index, 0, "", 1, "length", "")
            for to, answer in dispatcher.handle(w, Finished(entry)):  # a waiting worker's answer
                other = engines[to]
                other.state = "running" if answer else "stopped"
                other.take(answer)
                other.exhausted, other.now = False, engine.now
            engine.finished += 1
            engine.last_sample = engine.now
        engine.busy = running
    if not dispatcher.queue.all_finished:
        raise SystemExit("dispatch_sim: the simulated workers stopped with samples unfinished")
    return [{"samples": e.finished, "last_sample_s": round(e.last_sample, 3)} for e in engines]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


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
    args = parser.parse_args()
    ready, speeds, step = _floats(args.ready), _floats(args.speeds), _floats(args.step_ms)
    if not len(ready) == len(speeds) == args.workers or len(step) != 2:
        raise SystemExit("dispatch_sim: --ready and --speeds need a value per worker, --step-ms two")
    job = Job(args.prompts, args.n, args.max_new_tokens, args.eos, args.seed)
    several = simulate(job, Workers(args.workers, args.slots, ready, speeds, (step[0], step[1])))
    one = simulate(job, Workers(1, args.slots, ready[:1], speeds[:1], (step[0], step[1])))
    ends = [worker["last_sample_s"] for worker in several]
    print(
        json.dumps(
            {
                "job": vars(args),
                "one_worker": one[0],
                "workers": several,
                "end_spread_s": round(max(ends) - min(ends), 3),
                "scaling_of_the_last_sample": round(one[0]["last_sample_s"] / max(ends), 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
