"""How sure a pass@k is, and whether two runs differ (pure: numpy only, seeded, so a report or a
comparison gives the same figures every time).

* ``bootstrap_interval``: a percentile bootstrap over tasks.  The tasks are drawn with replacement
  (each with its pass@k as estimated from its samples) and the mean recomputed, ``resamples``
  times; the interval is the middle ``confidence`` share of those means.  It says how much pass@k
  would move with another draw of problems like these (and, through each task's estimate, of
  samples); it assumes the tasks are independent, and it is too narrow when there are few tasks.
* ``paired_comparison``: two runs on the same tasks.  The difference of their pass@k (B - A) with a
  *paired* bootstrap interval (the same tasks drawn for both), and a two-sided *paired permutation
  (sign-flip) test* of "no difference": under that null each task's difference is as likely to
  have either sign, so the p-value is the share of sign assignments whose mean difference is at
  least as far from 0 as the one observed (every assignment when at most ``EXACT_UP_TO`` tasks
  differ, else ``resamples`` random ones).  Why this test: it tests the mean difference itself,
  which is what pass@k compares (a sign test counts tasks and ignores by how much each moved);
  it needs no assumption of symmetric, continuous differences (the Wilcoxon signed-rank test
  does, and pass@1 differences are a few discrete values with many ties and zeros); tasks where
  the two runs agree add nothing to either side; and it is exact for small numbers of tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0
EXACT_UP_TO = 16  # tasks that differ: at most this many, every sign assignment is enumerated (2**16)
_CELLS = 2_000_000  # random draws held in memory at once


@dataclass(frozen=True)
class Interval:
    estimate: float  # the mean over the tasks
    low: float
    high: float
    confidence: float = CONFIDENCE

    def record(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence}


@dataclass(frozen=True)
class PairedComparison:
    tasks: int  # tasks both runs scored
    mean_a: float
    mean_b: float
    difference: Interval  # mean of B - A, with its paired bootstrap interval
    p_value: float  # two-sided, paired sign-flip permutation test of no difference
    exact: bool  # the p-value enumerated every sign assignment (else: RESAMPLES random ones)
    b_better: int  # tasks where B's value is higher
    b_worse: int
    same: int

    def record(self) -> dict:
        return {
            "tasks": self.tasks,
            "a": self.mean_a,
            "b": self.mean_b,
            "difference": self.difference.record(),
            "p_value": self.p_value,
            "test": "paired sign-flip permutation test (two-sided)" + (", exact" if self.exact else f", {RESAMPLES} draws"),
            "b_better": self.b_better,
            "b_worse": self.b_worse,
            "same": self.same,
        }


def _values(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what}: a non-empty list of numbers is needed")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: not finite")
    return array


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """*resamples* means of *values* drawn with replacement, in chunks that fit in memory."""
    n = values.size
    chunk = max(1, _CELLS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _interval(estimate: float, means: np.ndarray, confidence: float) -> Interval:
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    # The estimate lies in its interval even where rounding of equal means says otherwise.
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate), confidence)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval:
    """The mean of *values* (one per task: a pass@k) with its percentile bootstrap interval over tasks."""
    array = _values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    estimate = float(array.mean())
    if array.size == 1 or np.all(array == array[0]):
        return Interval(estimate, estimate, estimate, confidence)
    return _interval(estimate, _bootstrap_means(array, resamples, np.random.default_rng(seed)), confidence)


def sign_flip_p_value(
    differences: Sequence[float] | np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, bool]:
    """Two-sided p-value of the paired sign-flip permutation test that the differences' mean is 0,
    and whether it is exact (every assignment enumerated)."""
    d = _values(differences, "differences")
    nonzero = d[np.abs(d) > 1e-12]
    m = nonzero.size
    if m == 0:
        return 1.0, True
    observed = abs(float(nonzero.sum()))
    tolerance = 1e-9 * max(1.0, observed)
    if m <= EXACT_UP_TO:
        signs = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        sums = np.abs(signs @ nonzero)
        return float(np.mean(sums >= observed - tolerance)), True
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // m)
    extreme = 0
    for start in range(0, resamples, chunk):
        size = min(resamples, start + chunk) - start
        signs = rng.integers(0, 2, size=(size, m)) * 2 - 1
        extreme += int(np.sum(np.abs(signs @ nonzero) >= observed - tolerance))
    return (1 + extreme) / (1 + resamples), False  # the observed assignment counts as one of the draws


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedComparison:
    """Runs A and B on the same tasks (``a[i]`` and ``b[i]`` of one task): B - A with its paired
    bootstrap interval, and the sign-flip test's p-value."""
    first, second = _values(a, "a"), _values(b, "b")
    if first.size != second.size:
        raise ValueError(f"paired values: {first.size} for A and {second.size} for B")
    d = second - first
    p_value, exact = sign_flip_p_value(d, resamples=resamples, seed=seed)
    return PairedComparison(
        tasks=int(d.size),
        mean_a=float(first.mean()),
        mean_b=float(second.mean()),
        difference=bootstrap_interval(d, confidence=confidence, resamples=resamples, seed=seed),
        p_value=p_value,
        exact=exact,
        b_better=int(np.sum(d > 1e-12)),
        b_worse=int(np.sum(d < -1e-12)),
        same=int(np.sum(np.abs(d) <= 1e-12)),
    )
