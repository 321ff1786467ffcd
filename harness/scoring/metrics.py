"""pass@k tables from per-sample results: overall, per difficulty and per skill (pure).

The layout extends the official ``taco_metrics.json``: its keys (``pass@k`` for each k that every
task has enough samples for, and ``detail``) are kept as they are, with the tables added beside
and ``not_reported`` saying why each k that is not reported is not.
Samples whose evaluation failed for infrastructure reasons are not scored: they are left out of
n for their task and counted separately.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from harness.data.problems import DIFFICULTIES, Problem
from harness.judging.verdicts import SampleResult, SampleStatus
from harness.scoring.passk import DEFAULT_KS, pass_at_k_table


def sample_outcome(result: SampleResult) -> str:
    """One word per sample: ``passed``, the first failing verdict's name, or ``infra_error``."""
    if result.status is SampleStatus.INFRA_ERROR:
        return "infra_error"
    if result.passed:
        return "passed"
    return next(v.value for v in result.verdicts if not v.passed)


def unreported_ks(sample_counts: Sequence[int], ks: Sequence[int] = DEFAULT_KS) -> dict[str, str]:
    """Why TACO's rule (``passk.reported_ks``: a k only when every task has at least k scored
    samples) leaves out each k of *ks* that it leaves out: ``{"pass@10": "3 tasks have ..."}``."""
    reasons: dict[str, str] = {}
    for k in ks:
        short = [n for n in sample_counts if n < k]
        if not sample_counts:
            reasons[f"pass@{k}"] = "no task was scored"
        elif short:
            tasks = "1 task has" if len(short) == 1 else f"{len(short)} tasks have"
            reasons[f"pass@{k}"] = f"{tasks} fewer than {k} scored samples (smallest: {min(short)})"
    return reasons


def compute_metrics(
    problems: Sequence[Problem],
    results: Mapping[int, Sequence[SampleResult]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict:
    judged = {task: [r for r in samples if r.status is SampleStatus.JUDGED] for task, samples in results.items()}
    counts = {task: (len(rs), sum(r.passed for r in rs)) for task, rs in judged.items()}
    metrics = pass_at_k_table(counts, ks)
    metrics["not_reported"] = unreported_ks([n for n, _ in counts.values()], ks)
    detail = metrics["detail"]
    by_id = {p.task_id: p for p in problems if p.task_id in results}

    def table(groups: dict[str, list[int]]) -> dict:
        return {
            name: {"tasks": len(tasks), **{k: sum(detail[k][t] for t in tasks) / len(tasks) for k in detail}}
            for name, tasks in groups.items()
        }

    levels: dict[str, list[int]] = {}
    skills: dict[str, list[int]] = {}
    for task, problem in sorted(by_id.items()):
        levels.setdefault(str(problem.difficulty), []).append(task)
        for skill in problem.skills:
            skills.setdefault(skill, []).append(task)
    order = {level: i for i, level in enumerate(DIFFICULTIES)}
    metrics["by_difficulty"] = table(dict(sorted(levels.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))))
    metrics["by_skill"] = table(dict(sorted(skills.items())))
    outcomes = Counter(sample_outcome(r) for samples in results.values() for r in samples)
    infra = {
        str(task): [i for i, r in enumerate(samples) if r.status is SampleStatus.INFRA_ERROR]
        for task, samples in sorted(results.items())
    }
    metrics["counts"] = {
        "tasks": len(results),
        "samples": sum(len(rs) for rs in results.values()),
        "passed_samples": outcomes.get("passed", 0),
        "infra_errors": outcomes.get("infra_error", 0),
        "outcomes": dict(sorted(outcomes.items())),
        # Timeouts that came from waiting for a CPU (never verdicts): runs done again for each sample,
        # and samples contended on every attempt (not scored; among infra_errors).
        "contended_timeouts": {
            "reruns": sum(r.contended_reruns for rs in results.values() for r in rs),
            "unresolved": sum(r.contended and r.status is SampleStatus.INFRA_ERROR for rs in results.values() for r in rs),
        },
    }
    metrics["infra_error_samples"] = {task: ids for task, ids in infra.items() if ids}
    return metrics
