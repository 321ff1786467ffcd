"""pass@k and TACO's rule for which k are reported."""

from __future__ import annotations

import math

import pytest

from harness.scoring.passk import pass_at_k, pass_at_k_table, reported_ks


def test_pass_at_k_matches_the_definition():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - math.comb(4, 2) / math.comb(5, 2))
    assert reported_ks([20, 20, 5]) == [1] and reported_ks([100, 200]) == [1, 10, 100]
    table = pass_at_k_table({0: (2, 1), 1: (2, 2)})
    assert table["pass@1"] == pytest.approx(0.75) and table["detail"]["pass@1"] == {0: 0.5, 1: 1.0}
