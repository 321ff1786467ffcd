"""Run monitoring: per-stage wall time and rates, GPU and host memory peaks, sandbox counts, and a
coarse timeline of samples generated and evaluated, saved as ``run_stats.json`` with the run's
provenance (``reporting.provenance``: what produced it, as in metrics.json).

The live view is the progress bars; this module keeps the figures for afterwards.  A sampler
thread wakes twice a second to read what cannot be counted at events (live sandboxes); everything
else is counted where it happens.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from harness.data.atomic import write_json_atomic
from harness.evaluation.session import EvaluationOutcome
from harness.sandbox.pool import PoolStats

if TYPE_CHECKING:
    from harness.evaluation.session import EvaluationSession
    from harness.generation.generate import GenerationSummary
    from harness.reporting.provenance import Provenance

RUN_STATS_FILE = "run_stats.json"
_TIMELINE_POINTS = 1000  # the timeline halves its resolution when it would grow past this


class RunMonitor:
    def __init__(self, interval_s: float = 0.5):
        self._interval = interval_s
        self._started = time.monotonic()
        self._generated = 0
        self._evaluated = 0
        self._live_peak = 0
        self._timeline: list[tuple[float, int, int]] = []
        self._stride = 1
        self._ticks = 0
        self._marks: dict[str, float] = {}
        self._stop = threading.Event()

    # -- events (from any thread; int updates under the GIL are enough for counters) ------------
    def sample_generated(self) -> None:
        self._generated += 1

    def samples_evaluated(self, count: int) -> None:
        self._evaluated += count

    def generation_started(self) -> None:
        self._marks["generation_started"] = time.monotonic()

    def generation_finished(self) -> None:
        self._marks["generation_finished"] = time.monotonic()

    def evaluation_finished(self) -> None:
        self._marks["evaluation_finished"] = time.monotonic()

    @contextmanager
    def running(self, session: EvaluationSession) -> Iterator[None]:
        """Sample the session's pool and the counters in the background while the block runs."""
        sampler = threading.Thread(target=self._sample, args=(session,), name="run-monitor", daemon=True)
        sampler.start()
        try:
            yield
        finally:
            self._stop.set()
            sampler.join(timeout=5)
            self._record_point()

    def _sample(self, session: EvaluationSession) -> None:
        while not self._stop.wait(self._interval):
            stats = session.pool_stats()
            if stats is not None:
                self._live_peak = max(self._live_peak, stats.sandboxes_live)
            self._ticks += 1
            if self._ticks % self._stride == 0:
                self._record_point()
                if len(self._timeline) >= _TIMELINE_POINTS:
                    self._timeline = self._timeline[::2]
                    self._stride *= 2

    def _record_point(self) -> None:
        self._timeline.append((round(time.monotonic() - self._started, 2), self._generated, self._evaluated))

    # -- the figures ---------------------------------------------------------------------------
    def stats(
        self,
        generation: GenerationSummary,
        evaluation: EvaluationOutcome,
        devices: Sequence[str],
        provenance: Provenance | None = None,
    ) -> dict:
        marks = self._marks
        generation_seconds = marks["generation_finished"] - marks["generation_started"]
        tail = marks["evaluation_finished"] - marks["generation_finished"]
        stats = {
            "command": "run",
            **_provenance(provenance),
            "wall_seconds": round(marks["evaluation_finished"] - self._started, 3),
            "generation": {
                "seconds": round(generation_seconds, 3),
                "tasks": generation.tasks,
                "samples": generation.samples,
                "resumed": generation.resumed,
                "generated": generation.generated,
                "new_tokens": generation.new_tokens,
                "tokens_per_s": _rate(generation.new_tokens, generation_seconds),
                "samples_per_s": _rate(generation.generated, generation_seconds),
                "finish_reasons": generation.finish_reasons,
                "devices": list(devices),
                "gpu_memory_peak_bytes": generation.gpu_memory_peak_bytes,
                # The shared prompt queue: who generated what, and what lost workers gave back.
                "samples_by_worker": dict(generation.samples_by_worker),
                # Seconds from the start of generation: each worker's model loaded, its last sample, and
                # when it had stopped; and the seconds each took to load its model and build its engine.
                "ready_seconds_by_worker": dict(generation.ready_seconds_by_worker),
                "last_sample_seconds_by_worker": dict(generation.last_sample_seconds_by_worker),
                "stopped_seconds_by_worker": dict(generation.stopped_seconds_by_worker),
                "build_seconds_by_worker": dict(generation.build_seconds_by_worker),
                "workers_lost": list(generation.workers_lost),
                "requeued": generation.requeued,
            },
            "evaluation": {
                **evaluation_figures(evaluation),
                # Evaluation still running after the last sample was generated: what overlapping
                # could not hide.
                "tail_after_generation_seconds": round(tail, 3),
            },
            "sandboxes": sandbox_figures(evaluation.pool, self._live_peak),
            "host": host_figures(),
            "timeline": {"columns": ["seconds", "generated", "evaluated"], "points": [list(p) for p in self._timeline]},
        }
        return stats


def evaluation_figures(outcome: EvaluationOutcome) -> dict:
    """The evaluation stage: its active window is from the first job queued to the last verdict."""
    times = outcome.times
    active = (
        times.last_finished - times.first_submitted
        if times.first_submitted is not None and times.last_finished is not None
        else 0.0
    )
    counts = outcome.metrics["counts"]
    executed_samples = counts["samples"]  # every sample, however it was answered
    return {
        "seconds": round(active, 3),
        "total_seconds": round(outcome.seconds, 3),
        "samples": executed_samples,
        "jobs": outcome.jobs,
        "executed": outcome.executed,
        "from_cache": outcome.from_cache,
        "from_journal": outcome.from_journal,
        "tests_executed": times.tests_executed,
        "tests_per_s": _rate(times.tests_executed, active),
        "jobs_per_s": _rate(outcome.executed, active),
        "infra_errors": counts["infra_errors"],
        # Jobs run again because a timeout came from waiting for a CPU; jobs contended on every attempt.
        "contended_reruns": outcome.contended_reruns,
        "contended_unresolved": outcome.contended_unresolved,
    }


def sandbox_figures(pool: PoolStats | None, live_peak: int | None = None) -> dict:
    """The sandboxes' figures; on a cluster, with ``hosts``: up at the end, lost during the run,
    refused (a different sandbox identity), and the jobs re-queued from lost or failing hosts."""
    if pool is None:
        return {"slots": 0, "started": 0, "live_peak": 0, "failures": 0, "retired": 0}
    figures: dict = {
        "slots": pool.slots,
        "started": pool.sandboxes_started,
        "live_peak": max(live_peak or 0, pool.sandboxes_live),
        "failures": pool.sandbox_failures,
        "retired": pool.sandboxes_retired,
        "out_of_rotation": pool.backends_out_of_rotation,
    }
    if pool.hosts is not None:
        hosts = pool.hosts
        figures["hosts"] = {"up": hosts.up, "lost": hosts.lost, "refused": hosts.refused, "requeued": hosts.requeued}
    return figures


def host_figures() -> dict:
    # ru_maxrss is in KiB on Linux; the children are the finished generation worker processes.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"rss_peak_bytes": own, "worker_processes_rss_peak_bytes": children}


def evaluation_run_stats(outcome: EvaluationOutcome, provenance: Provenance | None = None) -> dict:
    """``run_stats.json`` of ``harness evaluate``: the evaluation stage alone."""
    return {
        "command": "evaluate",
        **_provenance(provenance),
        "wall_seconds": round(outcome.seconds, 3),
        "evaluation": evaluation_figures(outcome),
        "sandboxes": sandbox_figures(outcome.pool),
        "host": host_figures(),
    }


def _provenance(provenance: Provenance | None) -> dict:
    """What produced the run (as in metrics.json), when the flow said."""
    return {} if provenance is None else {"provenance": provenance.record()}


def write_run_stats(directory: Path, stats: dict) -> Path:
    path = directory / RUN_STATS_FILE
    write_json_atomic(path, stats)
    return path


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else 0.0


# -- live memory probes (for the progress bars; the saved figures are peaks from the OS) -------------
def host_rss_mib() -> float:
    """This process's resident memory now, in MiB (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def gpu_memory_peak_gib() -> float:
    """Peak GPU memory of this process's CUDA devices, in GiB: 0 when torch is not loaded or CUDA not
    initialised here (as when the samples are generated in worker processes)."""
    torch = sys.modules.get("torch")  # never imported for this: a probe must not load torch
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0.0
    return float(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**30)
