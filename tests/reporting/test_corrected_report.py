"""The report shows both judges' pass@k side by side and the disagreement table (pure: metrics.json
as compute_metrics writes it, from hand-made results of both judges)."""

from __future__ import annotations

import json

from harness.data.problems import Problem
from harness.data.special_judge import SpecialJudge
from harness.data.testcases import Mode, parse_input_output
from harness.judging.corrected import Reason
from harness.judging.verdicts import CorrectedVerdicts, Difference, SampleResult, SampleStatus, Verdict
from harness.reporting.model import build_report_data
from harness.reporting.render import render_html, render_markdown
from harness.scoring.metrics import compute_metrics

P, W = Verdict.PASSED, Verdict.WRONG_ANSWER


def _result(taco: tuple[Verdict, ...], corrected: CorrectedVerdicts) -> SampleResult:
    return SampleResult(SampleStatus.JUDGED, taco, corrected=corrected)


def _metrics() -> dict:
    suite = parse_input_output({"inputs": ["1\n"], "outputs": ["1 2\n"]})
    assert suite.mode is Mode.STDIN
    problems = [
        Problem(0, suite, "EASY", ("Sorting",), {}, SpecialJudge.NONE),
        Problem(1, suite, "HARD", ("Math",), {}, SpecialJudge.CASE_INSENSITIVE),
        Problem(2, suite, "HARD", ("Math",), {}, SpecialJudge.SEVERAL_VALID_OUTPUTS),
    ]
    quirk = Difference(Reason.SET_QUIRK, 0, 1, "12\n", "1 2\n")
    case = Difference(Reason.CASE, 0, 1, "yes\n", "YES\n")
    results = {
        0: [_result((P,), CorrectedVerdicts((W,), difference=quirk)), _result((P,), CorrectedVerdicts((P,)))],
        1: [_result((W,), CorrectedVerdicts((P,), difference=case)), _result((W,), CorrectedVerdicts((W,)))],
        2: [_result((P,), CorrectedVerdicts(needs_checker=True)), _result((W,), CorrectedVerdicts(needs_checker=True))],
    }
    return json.loads(json.dumps(compute_metrics(problems, results)))


def test_both_judges_side_by_side():
    data = build_report_data(_metrics())
    section = data.corrected
    assert section is not None
    overall = section.overall[0]
    assert (overall.name, overall.taco_tasks, overall.corrected_tasks) == ("all tasks", 3, 2)
    assert overall.taco == (0.5,) and overall.corrected == (0.5,)
    assert [r.name for r in section.overall] == ["all tasks", "EASY", "HARD"]
    assert section.taco_same_tasks == (0.5,)
    assert section.needs_checker == (2,) and section.needs_checker_samples == 2 and section.needs_checker_taco_accepts == 1
    assert section.totals == (1, 1)
    assert {(r.reason, r.taco_accepts, r.corrected_accepts) for r in section.disagreements} == {
        ("set_quirk", 1, 0),
        ("case", 0, 1),
    }
    markdown = render_markdown(data)
    assert "## Corrected judge beside TACO's" in markdown
    assert "| all tasks | 3 | 50.00% | 2 | 50.00% |" in markdown
    assert "| set\\_quirk | 1 | 0 |" in markdown and "| total | 1 | 1 |" in markdown
    assert "Needs a checker (several valid outputs): 1 task, 2 samples, of which TACO accepts 1; task ids 2." in markdown
    html = render_html(data)
    assert 'id="pass-at-k-both-judges"' in html and 'id="disagreement-examples"' in html
    assert "12⏎" in html  # an example's output, its newline shown


def test_a_report_without_the_corrected_judge_has_no_section():
    metrics = _metrics()
    del metrics["corrected"], metrics["disagreements"]
    data = build_report_data(metrics)
    assert data.corrected is None
    assert "Corrected judge" not in render_markdown(data) and "both-judges" not in render_html(data)
