"""pass@k tables from per-sample results: overall, per difficulty and per skill (pure).

The layout extends the official ``taco_metrics.json``: its keys (``pass@k`` for each k that every
task has enough samples for, and ``detail``) are kept as they are, with the tables added beside
and ``not_reported`` saying why each k that is not reported is not.
Samples whose evaluation failed for infrastructure reasons are not scored: they are left out of
n for their task and counted separately.

When the results carry the corrected judge's verdicts (``SampleResult.corrected``), two blocks are
added: ``corrected`` (the same tables by the corrected judge, over the tasks it can judge, with the
tasks that need a checker listed) and ``disagreements`` (samples one judge accepts and the other
rejects, by reason, with a few examples).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from harness.data.problems import DIFFICULTIES, Problem
from harness.judging.corrected import Reason
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


# Examples of each reason of disagreement kept in ``disagreements.examples``.
EXAMPLES_PER_REASON = 3


def _tables(
    problems: Sequence[Problem],
    results: Mapping[int, Sequence[SampleResult]],
    passed: Callable[[SampleResult], bool],
    ks: Sequence[int],
) -> dict:
    """pass@k (TACO's layout), ``not_reported``, ``by_difficulty`` and ``by_skill`` of *results*, a
    sample passing when *passed* says so."""
    judged = {task: [r for r in samples if r.status is SampleStatus.JUDGED] for task, samples in results.items()}
    counts = {task: (len(rs), sum(passed(r) for r in rs)) for task, rs in judged.items()}
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
    return metrics


def compute_metrics(
    problems: Sequence[Problem],
    results: Mapping[int, Sequence[SampleResult]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict:
    metrics = _tables(problems, results, lambda r: r.passed, ks)
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
    if any(r.corrected is not None for rs in results.values() for r in rs):
        metrics["corrected"] = corrected_metrics(problems, results, ks)
        metrics["disagreements"] = disagreements(results)
    return metrics


def _needs_checker(samples: Sequence[SampleResult]) -> bool:
    return any(r.corrected is not None and r.corrected.needs_checker for r in samples)


def corrected_metrics(
    problems: Sequence[Problem], results: Mapping[int, Sequence[SampleResult]], ks: Sequence[int] = DEFAULT_KS
) -> dict:
    """The corrected judge's tables over the tasks it judges (those with several valid outputs need a
    checker: listed, left out), and TACO's pass@k over the same tasks, to compare like with like."""
    checker = sorted(task for task, samples in results.items() if _needs_checker(samples))
    # (a sample the corrected judge gave no verdicts, as one not scored, counts in no n)
    judged = {t: [r for r in rs if r.corrected is not None] for t, rs in results.items() if t not in set(checker)}
    block = _tables(problems, judged, lambda r: r.corrected is not None and r.corrected.passed, ks)
    official = pass_at_k_table({t: (len(rs), sum(r.passed for r in rs)) for t, rs in _scored(judged).items()}, ks)
    block["taco_on_same_tasks"] = {k: v for k, v in official.items() if k != "detail"}
    block["tasks"] = len(judged)
    block["passed_samples"] = sum(r.corrected is not None and r.corrected.passed for rs in judged.values() for r in rs)
    block["needs_checker"] = {
        "tasks": len(checker),
        "samples": sum(r.status is SampleStatus.JUDGED for t in checker for r in results[t]),
        "task_ids": checker,
    }
    return block


def _scored(results: Mapping[int, Sequence[SampleResult]]) -> dict[int, list[SampleResult]]:
    return {task: [r for r in samples if r.status is SampleStatus.JUDGED] for task, samples in results.items()}


def disagreements(results: Mapping[int, Sequence[SampleResult]], examples_per_reason: int = EXAMPLES_PER_REASON) -> dict:
    """Samples that one judge accepts and the other rejects, each way and by reason (the first test
    where they differ), with a few examples; and what TACO said on the samples that need a checker."""
    ways: dict[str, Counter[str]] = {"taco_accepts_corrected_rejects": Counter(), "corrected_accepts_taco_rejects": Counter()}
    examples: list[dict] = []
    shown: Counter[Reason] = Counter()
    compared = checker_samples = checker_taco_accepts = 0
    for task, samples in sorted(results.items()):
        for index, result in enumerate(samples):
            verdicts = result.corrected
            if result.status is not SampleStatus.JUDGED or verdicts is None:
                continue
            if verdicts.needs_checker:
                checker_samples += 1
                checker_taco_accepts += result.passed
                continue
            compared += 1
            if verdicts.passed == result.passed:
                continue
            difference = verdicts.difference
            way = "taco_accepts_corrected_rejects" if result.passed else "corrected_accepts_taco_rejects"
            ways[way][difference.reason.value if difference is not None else "unknown"] += 1
            if difference is not None and shown[difference.reason] < examples_per_reason:
                shown[difference.reason] += 1
                accepted_by = "taco" if result.passed else "corrected"
                examples.append({"task_id": task, "sample": index, "accepted_by": accepted_by, **difference.record()})
    block: dict = {"samples_compared": compared}
    for way, counter in ways.items():
        block[way] = {"total": sum(counter.values()), "by_reason": dict(sorted(counter.items()))}
    block[Reason.SEVERAL_VALID_OUTPUTS.value] = {"samples": checker_samples, "taco_accepts": checker_taco_accepts}
    block["examples"] = examples
    return block
