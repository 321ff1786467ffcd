"""The benchmark corpus of samples: per problem, programs drawn (seeded) from its reference solution
and four wrong variants of it (`tests/variants.py`) -- the reference with probability 0.4, each variant
0.15.  Duplicates among a task's samples are what sampling at a low temperature produces."""

from __future__ import annotations

import json
import random


def reference_solution(problem) -> str:
    solutions = problem.row["solutions"]
    return (json.loads(solutions) if isinstance(solutions, str) else solutions)[0]


def build_generations(problems, samples: int, seed: int) -> list[dict]:
    from bench.variants import wrong_variants

    rng = random.Random(seed)
    entries = []
    for problem in problems:
        reference = reference_solution(problem)
        pool = [reference, *wrong_variants(reference, problem.tests)]
        weights = [0.4] + [0.6 / (len(pool) - 1)] * (len(pool) - 1)
        entries.append({"task_id": problem.task_id, "output": rng.choices(pool, weights, k=samples)})
    return entries
