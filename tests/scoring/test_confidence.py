"""Bootstrap intervals over tasks and the paired sign-flip test (harness.scoring.confidence), on
synthetic data whose truth is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.scoring.confidence import bootstrap_interval, paired_comparison, sign_flip_p_value


def _pass_at_1(rng: np.random.Generator, rates: np.ndarray, n: int = 5) -> np.ndarray:
    """Per-task pass@1 estimated from n samples of tasks whose true pass rates are *rates*."""
    return rng.binomial(n, rates) / n


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    true_mean = 1 / 3  # tasks' pass rates ~ Beta(1, 2); each task's pass@1 estimate is unbiased
    trials, covered = 200, 0
    for trial in range(trials):
        values = _pass_at_1(rng, rng.beta(1, 2, size=120))
        interval = bootstrap_interval(values, resamples=1000, seed=trial)
        covered += interval.low <= true_mean <= interval.high
    assert 0.90 <= covered / trials <= 0.99


def test_interval_is_seeded_and_sane():
    values = np.random.default_rng(5).random(50)
    first, again = bootstrap_interval(values), bootstrap_interval(values)
    assert first == again  # the same figures every time (a report, a comparison)
    assert first.low < first.estimate < first.high
    assert first.estimate == pytest.approx(values.mean())
    assert (
        bootstrap_interval(values, confidence=0.5).high - bootstrap_interval(values, confidence=0.5).low < first.high - first.low
    )
    assert bootstrap_interval([0.25]).low == bootstrap_interval([0.25]).high == 0.25  # one task: no spread to draw from
    assert bootstrap_interval([1.0, 1.0, 1.0]).low == 1.0
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_paired_test_detects_a_real_difference():
    rng = np.random.default_rng(7)
    detected = 0
    for trial in range(40):
        rates = rng.beta(1, 2, size=200)
        a = _pass_at_1(rng, rates)
        b = _pass_at_1(rng, np.clip(rates + 0.08, 0, 1))  # B is better by 8 points on every task
        comparison = paired_comparison(a, b, resamples=2000, seed=trial)
        detected += comparison.p_value < 0.05 and comparison.difference.low > 0
    assert detected >= 36  # power well above 90%


def test_paired_test_does_not_find_a_difference_that_is_not_there():
    rng = np.random.default_rng(11)
    false_alarms, covered = 0, 0
    trials = 80
    for trial in range(trials):
        rates = rng.beta(1, 2, size=200)
        a, b = _pass_at_1(rng, rates), _pass_at_1(rng, rates)  # the same model, sampled twice
        comparison = paired_comparison(a, b, resamples=2000, seed=trial)
        false_alarms += comparison.p_value < 0.05
        covered += comparison.difference.low <= 0 <= comparison.difference.high
    assert false_alarms <= 0.12 * trials  # about 5% expected
    assert covered >= 0.85 * trials


def test_exact_sign_flip_matches_enumeration_and_monte_carlo():
    d = np.array([0.2, -0.1, 0.4, 0.0, 0.3, 0.0, -0.2, 0.5])
    p, exact = sign_flip_p_value(d)
    assert exact
    nonzero = d[d != 0]
    sums = [abs(sum(s * x for s, x in zip(signs, nonzero))) for signs in itertools.product((1, -1), repeat=len(nonzero))]
    assert p == pytest.approx(np.mean([s >= abs(nonzero.sum()) - 1e-12 for s in sums]))
    # Many differing tasks: random assignments, close to the truth.
    rng = np.random.default_rng(3)
    many = rng.normal(0.02, 0.3, size=400)
    p_mc, exact_mc = sign_flip_p_value(many, resamples=20_000)
    assert not exact_mc and 0 < p_mc <= 1
    assert sign_flip_p_value([0.0, 0.0]) == (1.0, True)


def test_paired_comparison_counts_and_refuses_unpaired_values():
    comparison = paired_comparison([0.0, 0.5, 1.0, 0.2], [0.5, 0.5, 0.0, 0.4])
    assert (comparison.b_better, comparison.b_worse, comparison.same) == (2, 1, 1)
    assert comparison.mean_b - comparison.mean_a == pytest.approx(comparison.difference.estimate)
    assert comparison.record()["test"].startswith("paired sign-flip permutation test")
    with pytest.raises(ValueError):
        paired_comparison([0.1, 0.2], [0.1])
