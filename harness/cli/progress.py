"""The live progress bars on stderr: ``evaluate`` (samples, tests/s over the tests actually run,
sandboxes up, host memory) and ``generate`` (samples/s, tokens/s, GPU memory peak).  ``harness run``
shows both, one above the other."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness.evaluation.session import Progress as EvaluationProgress
from harness.evaluation.session import ResultSource
from harness.reporting.monitor import gpu_memory_peak_gib, host_rss_mib


@contextmanager
def evaluation_bar(total: int, position: int = 0) -> Iterator[Callable[[EvaluationProgress], None]]:
    """A bar of *total* samples evaluated; yields the evaluation's progress callback."""
    from tqdm import tqdm

    meter = TestsMeter()
    with tqdm(total=total, unit="sample", desc="evaluate", file=sys.stderr, dynamic_ncols=True, position=position) as bar:

        def on_progress(progress: EvaluationProgress) -> None:
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

    def add(self, progress: EvaluationProgress) -> None:
        self.sandboxes = progress.sandboxes
        if progress.source is not ResultSource.RUN:
            return
        if self.started is None:
            self.started = time.monotonic()
        self.tests += progress.tests

    def text(self) -> str:
        if self.started is None:
            return ""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{self.tests / elapsed:.0f} tests/s, {self.sandboxes} sandboxes, host {host_rss_mib():.0f} MiB"


class GenerationBar:
    """The generator's Progress as a bar: samples/s from tqdm itself, tokens/s in the postfix."""

    def __init__(self, position: int = 0) -> None:
        self.bar: Any = None  # a tqdm bar once there are samples to generate
        self.tokens = 0
        self.started = 0.0
        self.position = position

    def begin(self, samples: int) -> None:
        from tqdm import tqdm

        self.started = time.monotonic()
        if samples:
            self.bar = tqdm(
                total=samples,
                unit="sample",
                desc="generate",
                file=sys.stderr,
                smoothing=0.05,
                position=self.position,
                dynamic_ncols=True,
            )

    def sample(self, n_tokens: int) -> None:
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
