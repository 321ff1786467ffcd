"""The live progress bars on stderr: ``evaluate`` (samples, tests/s over the tests actually run,
sandboxes up, on a cluster its hosts up and lost and the jobs re-queued, host memory) and ``generate``
(samples/s, tokens/s, GPU memory peak).  ``harness run`` shows both, one above the other.

On a terminal they are tqdm bars.  Written to anything else (a log file, a pipe, CI) they are plain
lines, one every ``PLAIN_INTERVAL_S`` seconds and one at the end, with no carriage returns or cursor
codes.  After Ctrl-C they stop counting: the samples that the teardown ends are not progress.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from harness.cli.console import INTERRUPTED
from harness.evaluation.session import Progress as EvaluationProgress
from harness.evaluation.session import ResultSource
from harness.reporting.monitor import gpu_memory_peak_gib, host_rss_mib
from harness.sandbox.pool import HostStats

PLAIN_INTERVAL_S = 30.0


def open_bar(total: int, desc: str, position: int = 0, **options: Any) -> Any:
    """A tqdm bar on a terminal, else a ``PlainProgress`` with the same methods."""
    stream = sys.stderr
    if not _is_terminal(stream):
        return PlainProgress(total, desc, stream)
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", desc=desc, file=stream, dynamic_ncols=True, position=position, **options)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class PlainProgress:
    """Progress as plain lines (``evaluate: 120/400 samples (30%), 41s, 35 tests/s``): at most one per
    ``interval_s`` while it runs, and one when it closes if there was progress since the last."""

    def __init__(self, total: int, desc: str, stream: IO[str], interval_s: float = PLAIN_INTERVAL_S):
        self.total, self.desc, self.stream, self.interval_s = total, desc, stream, interval_s
        self.n = 0
        self.postfix = ""
        self.started = time.monotonic()
        self._last_line = self.started
        self._shown = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last_line >= self.interval_s:
            self._line()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.n != self._shown:
            self._line()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> None:
        now = time.monotonic()
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} samples{share}, {now - self.started:.0f}s{tail}", file=self.stream, flush=True)
        self._last_line, self._shown = now, self.n


@contextmanager
def evaluation_bar(total: int, position: int = 0) -> Iterator[Callable[[EvaluationProgress], None]]:
    """A bar of *total* samples evaluated; yields the evaluation's progress callback."""
    meter = TestsMeter()
    with open_bar(total, "evaluate", position) as bar:

        def on_progress(progress: EvaluationProgress) -> None:
            if INTERRUPTED.is_set():
                return
            bar.update(progress.samples)
            meter.add(progress)
            bar.set_postfix_str(meter.text(), refresh=False)

        yield on_progress


class TestsMeter:
    """The evaluation bar's postfix: tests/s over the tests actually executed (journal and cache
    hits are not work), sandboxes up, and the host process's resident memory."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.tests = 0
        self.sandboxes = 0
        self.hosts: HostStats | None = None

    def add(self, progress: EvaluationProgress) -> None:
        self.sandboxes = progress.sandboxes
        self.hosts = progress.hosts
        if progress.source is not ResultSource.RUN:
            return
        if self.started is None:
            self.started = time.monotonic()
        self.tests += progress.tests

    def text(self) -> str:
        if self.started is None:
            return ""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        hosts = self.hosts
        cluster = f" on {hosts.up} hosts ({hosts.lost} lost, {hosts.requeued} jobs re-queued)" if hosts is not None else ""
        return f"{self.tests / elapsed:.0f} tests/s, {self.sandboxes} sandboxes{cluster}, host {host_rss_mib():.0f} MiB"


class GenerationBar:
    """The generator's Progress as a bar: samples/s from tqdm itself, tokens/s in the postfix."""

    def __init__(self, position: int = 0) -> None:
        self.bar: Any = None  # a bar once there are samples to generate
        self.tokens = 0
        self.started = 0.0
        self.position = position

    def begin(self, samples: int) -> None:
        self.started = time.monotonic()
        if samples:
            self.bar = open_bar(samples, "generate", self.position, smoothing=0.05)

    def sample(self, n_tokens: int) -> None:
        if INTERRUPTED.is_set():
            return
        self.tokens += n_tokens
        self.bar.update(1)
        text = f"{self.tokens / max(1e-9, time.monotonic() - self.started):,.0f} tok/s"
        gpu = gpu_memory_peak_gib()
        if gpu:
            text += f", GPU peak {gpu:.1f} GiB"
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
