"""The job message, job keys, the journal and the verdict cache."""

from __future__ import annotations

from pathlib import Path

from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob, job_message


def test_expected_outputs_never_enter_the_sandbox():
    secret_stdin = "EXPECTED-OUTPUT-4242"
    suite = parse_input_output({"inputs": ["1\n"], "outputs": [secret_stdin]})
    assert secret_stdin not in repr(job_message(ExecutionJob(suite, "print(1)"), 1))
    suite = parse_input_output({"fn_name": "f", "inputs": [[1]], "outputs": [["SECRET-RETURN-9191"]]})
    assert "SECRET-RETURN-9191" not in repr(job_message(ExecutionJob(suite, "def f(x): return x"), 1))


def test_journal_survives_a_torn_last_line(tmp_path):
    from harness.evaluation.verdict_journal import VerdictJournal
    from harness.judging.verdicts import SampleResult, SampleStatus, Verdict

    passed = SampleResult(SampleStatus.JUDGED, (Verdict.PASSED, Verdict.PASSED))
    failed = SampleResult(SampleStatus.JUDGED, (Verdict.TIMEOUT,), stopped_early=True, detail="slow")
    path = tmp_path / "journal.jsonl"
    with VerdictJournal(path) as journal:
        journal.append("a", passed)
        journal.append("b", failed)
    path.write_bytes(path.read_bytes() + b'{"key": "c", "result": {"status": "jud')  # killed mid-write
    assert VerdictJournal(path).load() == {"a": passed, "b": failed}
    with VerdictJournal(path) as journal:
        journal.append("d", passed)
    assert VerdictJournal(path).load() == {"a": passed, "b": failed, "d": passed}


def test_verdict_cache_keeps_judged_results_only(tmp_path):
    from harness.evaluation.cache import VerdictCache
    from harness.judging.verdicts import SampleResult, SampleStatus, Verdict

    judged = SampleResult(SampleStatus.JUDGED, (Verdict.COMPILE_ERROR,), detail="SyntaxError")
    infra = SampleResult(SampleStatus.INFRA_ERROR, (), detail="container died")
    with VerdictCache(tmp_path) as cache:
        cache.put("k1", judged)
        cache.put("k2", infra)
    with VerdictCache(tmp_path) as cache:  # persisted across instances
        assert cache.get_many(["k1", "k2", "k3"]) == {"k1": judged}


def test_job_keys_dedup_and_separate_what_decides_verdicts():
    from harness.data.generations import TaskSamples
    from harness.data.problems import load_problems
    from harness.evaluation.execution import RunLimits
    from harness.evaluation.plan import EvaluationSettings, plan_jobs

    problems = load_problems(Path(__file__).resolve().parents[2] / "samples" / "problems.jsonl")
    tasks = [TaskSamples(problems[0], ("a", "b", "a")), TaskSamples(problems[1], ("a",))]
    plan = plan_jobs(tasks, EvaluationSettings())
    assert sorted(p.owners for p in plan) == sorted([((0, 0), (0, 2)), ((0, 1),), ((1, 0),)])
    assert len(plan_jobs(tasks, EvaluationSettings(dedup=False))) == 4
    keys = {p.key for p in plan}
    for other in (
        EvaluationSettings(limits=RunLimits(timeout_s=2)),
        EvaluationSettings(early_exit=False),
        EvaluationSettings(sandbox_id="other image"),
    ):
        assert keys.isdisjoint(p.key for p in plan_jobs(tasks, other))
