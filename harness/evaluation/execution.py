"""Running one program against one problem's tests in one sandbox."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from harness.data.special_judge import SpecialJudge
from harness.data.testcases import Mode, TestSuite
from harness.errors import SandboxError
from harness.judging.judge import SampleJudgement, broken_stdin_tests, is_contended, seconds_lost_waiting, stdin_input_text
from harness.judging.programs import call_program, stdin_programs
from harness.judging.verdicts import SampleResult, SampleStatus
from harness.sandbox.interface import Sandbox
from sandbox_image.taco_runner import valuecodec
from sandbox_image.taco_runner.protocol import (
    CaseFinished,
    Compiled,
    CompileStatus,
    JobDone,
    NotUnderstood,
    RunCallJob,
    RunJob,
    RunStdinJob,
    StopJob,
    TimedOut,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLimits:
    timeout_s: float = 4.0  # per test, wall clock (TACO's TIMEOUT)
    output_limit_bytes: int = 64 << 20  # stdout (or encoded return value) beyond this is a wrong answer


@dataclass(frozen=True)
class ExecutionJob:
    suite: TestSuite
    code: str
    limits: RunLimits = RunLimits()
    early_exit: bool = False
    # Run each stdin test in a new interpreter, as the official harness does (benchmarks and
    # fidelity checks only: it is what the warm forks replace).
    fresh_interpreter: bool = False
    # The problem's Special-Judge flag for the corrected judge, which judges the same runs (None: off).
    special_judge: SpecialJudge | None = None

    # -- a SandboxTask for the pool --------------------------------------------------------------
    def run(self, sandbox: Sandbox) -> SampleResult:
        return run_job(sandbox, self)

    def infrastructure_error(self, reason: str) -> SampleResult:
        return SampleResult(SampleStatus.INFRA_ERROR, (), detail=reason)


_job_ids = itertools.count(1)


def job_message(job: ExecutionJob, job_id: int, compile_only: bool = False) -> RunJob:
    """The runner's job for *job*: programs and inputs only (expected outputs stay on the host)."""
    suite = job.suite
    if suite.mode is Mode.STDIN:
        programs = stdin_programs(job.code)
        return RunStdinJob(
            job_id=job_id,
            timeout_s=job.limits.timeout_s,
            output_limit_bytes=job.limits.output_limit_bytes,
            compile_only=compile_only,
            fresh_interpreter=job.fresh_interpreter,
            compile_program=programs.compile_program,
            exec_program=programs.exec_program,
            second_program=programs.second_program,
            inputs=() if compile_only else tuple(stdin_input_text(c.input) for c in suite.cases),
        )
    if suite.fn_name is None:
        raise ValueError("a call-based test suite without fn_name")
    return RunCallJob(
        job_id=job_id,
        timeout_s=job.limits.timeout_s,
        output_limit_bytes=job.limits.output_limit_bytes,
        compile_only=compile_only,
        program=call_program(job.code),
        fn_name=suite.fn_name,
        args=() if compile_only else tuple(valuecodec.dumps(c.input).decode("utf-8") for c in suite.cases),
    )


def _reply_timeout(job: ExecutionJob) -> float:
    # Longest legitimate silence: a compile step or one stdin test with both retries, plus slack.
    return 3 * job.limits.timeout_s + 15.0


def _log_timeout(sandbox: Sandbox, case: int, timed_out: TimedOut, limit_s: float) -> None:
    """Where a timed-out run's time went (``harness -v`` shows it)."""
    log.info(
        "%s: test %d timed out (%s): wall %.0f ms, cpu %s ms, waited %s ms, throttled %s ms, runner %s ms; lost %.2f s",
        sandbox.name, case, "contended" if is_contended(timed_out, limit_s) else "genuine", timed_out.wall_ms,
        timed_out.cpu_ms, timed_out.wait_ms, timed_out.throttled_ms, timed_out.runner_cpu_ms, seconds_lost_waiting(timed_out),
    )  # fmt: skip


def run_job(sandbox: Sandbox, job: ExecutionJob) -> SampleResult:
    """Run *job* in *sandbox*.  Raises SandboxError on infrastructure failure (never a verdict)."""
    job_id = next(_job_ids)
    judgement = SampleJudgement(job.suite, job.early_exit, job.limits.timeout_s, code=job.code, special_judge=job.special_judge)
    broken = job.suite.mode is Mode.STDIN and broken_stdin_tests(job.suite)
    sandbox.send(job_message(job, job_id, compile_only=broken))
    stop_sent = False
    program_ms = 0.0
    wait = _reply_timeout(job)
    while True:
        message = sandbox.recv(wait)
        if isinstance(message, NotUnderstood):
            raise SandboxError(f"runner error: {message.reason}")
        if not isinstance(message, (Compiled, CaseFinished, JobDone)) or message.job_id != job_id:
            continue  # stale message of an earlier, abandoned job
        if isinstance(message, Compiled):
            judgement.on_compiled(message.status, message.error, message.timed_out)
        elif isinstance(message, CaseFinished):
            if stop_sent:
                continue
            program_ms += message.program_ms
            for timed_out in (message.outcome, message.retry_timeout):
                if isinstance(timed_out, TimedOut):
                    _log_timeout(sandbox, message.case_index, timed_out, job.limits.timeout_s)
            if judgement.on_test(message.pass_number, message.outcome, message.retry_timeout):
                sandbox.send(StopJob(job_id))
                stop_sent = True
        else:
            if message.retire_reason:
                # The program left state the runner cannot clean (e.g. SysV IPC objects): the verdict
                # stands, and the pool replaces this sandbox before its next job.
                sandbox.retire = message.retire_reason
            break
    if broken and judgement.compiled is CompileStatus.OK:
        return judgement.data_broken()
    return judgement.result(stopped_early=stop_sent).with_program_seconds(program_ms / 1000)
