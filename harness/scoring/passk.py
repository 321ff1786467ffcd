"""pass@k with the unbiased (Codex) estimator, and TACO's rules for when a k is reported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) passes."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def reported_ks(sample_counts: Sequence[int], ks: Sequence[int] = DEFAULT_KS) -> list[int]:
    """TACO reports a k only when every task has at least k samples."""
    if not sample_counts:
        return []
    smallest = min(sample_counts)
    return [k for k in ks if smallest >= k]


def pass_at_k_table(counts: Mapping[int, tuple[int, int]], ks: Sequence[int] = DEFAULT_KS) -> dict:
    """``counts``: task_id -> (n samples, c passing).  Returns TACO's metrics layout."""
    table: dict = {}
    detail: dict = {}
    for k in reported_ks([n for n, _ in counts.values()], ks):
        per_task = {task: pass_at_k(n, c, k) for task, (n, c) in counts.items()}
        table[f"pass@{k}"] = float(np.mean(list(per_task.values())))
        detail[f"pass@{k}"] = per_task
    table["detail"] = detail
    return table
