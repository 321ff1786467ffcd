"""Both judges from one execution, in real sandboxes: early exit gives each judge the same pass@k as
``--all-tests``, TACO's verdicts are those of a TACO-only run test by test, and the outputs
(results_corrected.json, metrics.json's ``corrected`` and ``disagreements``, the report) say so."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import nullcontext
from pathlib import Path

import pytest

from harness.data.generations import TaskSamples
from harness.data.problems import Problem, load_problems
from harness.data.special_judge import SpecialJudge
from harness.evaluation.outputs import CORRECTED_RESULTS_FILE, METRICS_FILE, RESULTS_FILE, write_outputs
from harness.evaluation.plan import EvaluationSettings
from harness.evaluation.session import evaluate
from harness.judging.verdicts import Verdict
from harness.reporting.model import build_report_data
from harness.reporting.render import render_html, render_markdown
from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[2]

# What a sample prints, made from what the reference printed (``_text``): answers that are right in
# other letters, in another layout, or with more digits, and wrong ones that TACO's quirks accept.
TRANSFORMS = {
    "swapped case": "_text.swapcase()",
    "one token per line": "'\\n'.join(_text.split()) + '\\n'",
    "tokens run together": "''.join(_text.split()) + '\\n'",
    "lines reversed": "'\\n'.join(reversed(_text.strip().split('\\n'))) + '\\n'",
    "more digits": "__import__('re').sub(r'(\\d+\\.\\d+)', r'\\g<1>0000001', _text)",
}


def transformed(code: str, expression: str) -> str:
    """*code* with its standard output caught and printed as *expression* of it (also after exit())."""
    return (
        "import io as _io, sys as _sys\n"
        "_real, _sys.stdout = _sys.stdout, _io.StringIO()\n"
        "try:\n" + textwrap.indent(code, "    ") + "\n    pass\n"
        "finally:\n"
        "    _text, _sys.stdout = _sys.stdout.getvalue(), _real\n"
        f"    _sys.stdout.write({expression})\n"
    )


def reference(problem: Problem) -> str:
    solutions = problem.row["solutions"]
    return (json.loads(solutions) if isinstance(solutions, str) else solutions)[0]


def corpus() -> list[TaskSamples]:
    """Real TACO test rows: every case-insensitive and float-tolerance problem of the examples file,
    a few with several valid outputs and some unflagged ones, each with its reference and the
    transforms of it."""
    problems = load_problems(shared_file("taco_test_examples.jsonl"))
    by_flag: dict[SpecialJudge, list[Problem]] = {}
    for problem in problems:
        by_flag.setdefault(problem.special_judge, []).append(problem)
    chosen = (
        by_flag[SpecialJudge.CASE_INSENSITIVE]
        + by_flag[SpecialJudge.FLOAT_TOLERANCE]
        + by_flag[SpecialJudge.SEVERAL_VALID_OUTPUTS][:4]
        + by_flag[SpecialJudge.NONE][:16]
    )
    return [TaskSamples(p, (reference(p), *(transformed(reference(p), e) for e in TRANSFORMS.values()))) for p in chosen]


@pytest.fixture(scope="module")
def runs(pool):
    tasks = corpus()
    early = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings(early_exit=True))
    full = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings(early_exit=False))
    taco_only = evaluate(tasks, lambda: nullcontext(pool), EvaluationSettings(early_exit=True, corrected=False))
    return tasks, early, full, taco_only


def test_early_exit_gives_both_judges_the_pass_at_k_of_all_tests(runs):
    _, early, full, _ = runs
    assert early.infra_errors == full.infra_errors == 0
    for key in ("pass@1", "detail", "by_difficulty", "by_skill"):
        assert early.metrics[key] == full.metrics[key]
        assert early.metrics["corrected"][key] == full.metrics["corrected"][key]
    assert early.metrics["corrected"]["needs_checker"] == full.metrics["corrected"]["needs_checker"]
    for block in ("taco_accepts_corrected_rejects", "corrected_accepts_taco_rejects"):
        assert early.metrics["disagreements"][block] == full.metrics["disagreements"][block]
    # Early exit did stop samples, for both judges, and ran fewer tests.
    early_results = [r for rs in early.results.values() for r in rs]
    full_results = [r for rs in full.results.values() for r in rs]
    assert sum(r.stopped_early for r in early_results) > 20
    assert sum(r.corrected is not None and r.corrected.stopped_early for r in early_results) > 20
    assert sum(len(r.verdicts) for r in early_results) < sum(len(r.verdicts) for r in full_results)


def test_taco_verdicts_are_unchanged_test_by_test(runs):
    _, early, _, taco_only = runs
    for task, samples in taco_only.results.items():
        for alone, both in zip(samples, early.results[task]):
            assert alone.corrected is None
            assert both.taco() == alone.taco() and both.stopped_early == alone.stopped_early
            assert both.first_failure == alone.first_failure
    assert {k: v for k, v in early.metrics.items() if k not in ("corrected", "disagreements", "settings")} == {
        k: v for k, v in taco_only.metrics.items() if k != "settings"
    }
    assert "corrected" not in taco_only.metrics and "disagreements" not in taco_only.metrics


def test_the_judges_disagree_both_ways_for_the_reasons_given(runs):
    tasks, early, _, _ = runs
    block = early.metrics["disagreements"]
    taco_only = block["taco_accepts_corrected_rejects"]["by_reason"]
    corrected_only = block["corrected_accepts_taco_rejects"]["by_reason"]
    assert taco_only.get("set_quirk", 0) > 0
    assert corrected_only.get("case", 0) > 5 and corrected_only.get("whitespace", 0) > 0
    assert corrected_only.get("float_tolerance", 0) > 0
    assert set(taco_only) <= {"set_quirk", "rounded_set_quirk", "per_character_float_quirk"}
    assert set(corrected_only) <= {"case", "whitespace", "float_tolerance"}
    # Every reference passes both judges (they reproduce the examples), except where a checker is needed.
    for task in tasks:
        reference_result = early.results[task.problem.task_id][0]
        assert reference_result.passed, task.problem.task_id
        corrected = reference_result.corrected
        assert corrected is not None
        assert corrected.needs_checker is task.problem.special_judge.needs_checker
        assert corrected.passed is not task.problem.special_judge.needs_checker
    # A swapped-case answer: accepted by the corrected judge only where the problem is case-insensitive.
    # (The wrapper does not compile around every reference: a compile error is one for both judges.)
    swapped = list(TRANSFORMS).index("swapped case") + 1
    checked = 0
    for task in tasks:
        result = early.results[task.problem.task_id][swapped]
        assert result.corrected is not None
        if result.verdicts == (Verdict.COMPILE_ERROR,):
            assert result.corrected.verdicts == result.verdicts
        elif task.problem.special_judge is SpecialJudge.CASE_INSENSITIVE:
            assert result.corrected.passed
            checked += 1
        elif task.problem.special_judge is SpecialJudge.NONE:
            assert result.corrected.passed is result.passed
    assert checked >= 20
    for example in block["examples"]:
        assert {"task_id", "sample", "accepted_by", "reason", "test", "output", "expected"} <= set(example)


def test_outputs_and_report_show_both_judges(runs, tmp_path):
    tasks, early, _, taco_only = runs
    problems = [t.problem for t in tasks]
    write_outputs(early, tmp_path, problems)
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    corrected = json.loads((tmp_path / CORRECTED_RESULTS_FILE).read_text())
    assert corrected.keys() == results.keys()
    for task in tasks:
        lists = corrected[str(task.problem.task_id)]
        assert len(lists) == len(task.outputs)
        if task.problem.special_judge.needs_checker:
            assert lists == [None] * len(task.outputs)
        else:
            assert all(isinstance(v, list) for v in lists)
    metrics = json.loads((tmp_path / METRICS_FILE).read_text())
    assert metrics["settings"]["judges"] == ["taco", "corrected"]
    data = build_report_data(metrics)
    assert data.corrected is not None
    markdown, html = render_markdown(data), render_html(data)
    assert "## Corrected judge beside TACO's" in markdown and "### Disagreements" in markdown
    assert 'id="pass-at-k-both-judges"' in html and 'id="disagreements"' in html
    assert f"corrected {data.ks[0]}" in markdown
    # With the corrected judge off, the file of an earlier run does not stay behind.
    write_outputs(taco_only, tmp_path, problems)
    assert not (tmp_path / CORRECTED_RESULTS_FILE).exists()
    assert "corrected" not in json.loads((tmp_path / METRICS_FILE).read_text())


def test_the_command_writes_both_judges_by_default(tmp_path):
    tasks = corpus()[:3] + corpus()[-2:]
    generations = tmp_path / "generations.json"
    generations.write_text(json.dumps([{"task_id": t.problem.task_id, "output": list(t.outputs)} for t in tasks]))
    dataset = shared_file("taco_test_examples.jsonl")
    ids = ",".join(str(t.problem.task_id) for t in tasks)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "evaluate", "--dataset", str(dataset), "--generations", str(generations),
         "--indices", ids, "--output", str(out), "--workers", "2"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert "pass@1" in metrics["corrected"] and "disagreements" in metrics
    assert json.loads((out / CORRECTED_RESULTS_FILE).read_text()).keys() == json.loads((out / RESULTS_FILE).read_text()).keys()


# -- keys, journal and cache (pure) ----------------------------------------------------------------
def test_job_keys_carry_the_judges_and_the_flag():
    from dataclasses import replace

    from harness.evaluation.plan import plan_jobs

    problem = load_problems(ROOT / "samples" / "problems.jsonl")[0]
    assert problem.special_judge is SpecialJudge.NONE
    tasks = [TaskSamples(problem, ("print(1)",))]
    both = plan_jobs(tasks, EvaluationSettings())[0]
    alone = plan_jobs(tasks, EvaluationSettings(corrected=False))[0]
    flagged = plan_jobs([TaskSamples(replace(problem, special_judge=SpecialJudge.CASE_INSENSITIVE), ("print(1)",))],
                        EvaluationSettings())[0]  # fmt: skip
    assert len({both.key, alone.key, flagged.key}) == 3
    assert both.job.special_judge is SpecialJudge.NONE and alone.job.special_judge is None
    assert flagged.job.special_judge is SpecialJudge.CASE_INSENSITIVE


def test_journal_and_cache_keep_the_corrected_verdicts(tmp_path):
    from harness.evaluation.cache import VerdictCache
    from harness.evaluation.verdict_journal import VerdictJournal
    from harness.judging.corrected import Reason
    from harness.judging.verdicts import CorrectedVerdicts, Difference, SampleResult, SampleStatus

    corrected = CorrectedVerdicts(
        (Verdict.PASSED, Verdict.WRONG_ANSWER), True, False, Difference(Reason.SET_QUIRK, 1, 1, "12", "1 2")
    )
    result = SampleResult(SampleStatus.JUDGED, (Verdict.PASSED, Verdict.PASSED), corrected=corrected)
    checker = SampleResult(SampleStatus.JUDGED, (Verdict.PASSED,), corrected=CorrectedVerdicts(needs_checker=True))
    with VerdictJournal(tmp_path / "journal.jsonl") as journal:
        journal.append("a", result)
        journal.append("b", checker)
    loaded = VerdictJournal(tmp_path / "journal.jsonl").load()
    assert loaded["a"].corrected == corrected and loaded["b"].corrected == checker.corrected
    with VerdictCache(tmp_path) as cache:
        cache.put("a", result)
    with VerdictCache(tmp_path) as cache:
        assert cache.get_many(["a"])["a"].corrected == corrected
