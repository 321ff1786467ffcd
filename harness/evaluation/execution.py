"""Running one program against one problem's tests in one sandbox."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.data.testcases import Mode, TestSuite
from harness.errors import SandboxError
from harness.judging.judge import SampleJudgement, broken_stdin_tests, stdin_input_text
from harness.judging.programs import call_program, stdin_programs
from harness.judging.verdicts import SampleResult, SampleStatus, Verdict
from harness.sandbox.interface import Sandbox
from sandbox_image import valuecodec


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

    # -- a SandboxTask for the pool --------------------------------------------------------------
    def run(self, sandbox: Sandbox) -> SampleResult:
        return run_job(sandbox, self)

    def infrastructure_error(self, reason: str) -> SampleResult:
        return SampleResult(SampleStatus.INFRA_ERROR, (), detail=reason)


_job_ids = itertools.count(1)


def job_message(job: ExecutionJob, job_id: int, compile_only: bool = False) -> dict:
    message = {
        "op": "run",
        "id": job_id,
        "mode": job.suite.mode.value,
        "timeout": job.limits.timeout_s,
        "output_limit": job.limits.output_limit_bytes,
        "compile_only": compile_only,
    }
    if job.fresh_interpreter:
        message["fresh_interpreter"] = True
    if job.suite.mode is Mode.STDIN:
        programs = stdin_programs(job.code)
        message.update(
            compile_program=programs.compile_program,
            exec_program=programs.exec_program,
            second_program=programs.second_program,
            inputs=[] if compile_only else [stdin_input_text(c.input) for c in job.suite.cases],
        )
    else:
        message.update(
            program=call_program(job.code),
            fn_name=job.suite.fn_name,
            args=[] if compile_only else [valuecodec.dumps(c.input).decode("utf-8") for c in job.suite.cases],
        )
    return message


def _reply_timeout(job: ExecutionJob) -> float:
    # Longest legitimate silence: a compile step or one stdin test with both retries, plus slack.
    return 3 * job.limits.timeout_s + 15.0


def run_job(sandbox: Sandbox, job: ExecutionJob) -> SampleResult:
    """Run *job* in *sandbox*.  Raises SandboxError on infrastructure failure (never a verdict)."""
    job_id = next(_job_ids)
    judgement = SampleJudgement(job.suite, job.early_exit)
    broken = job.suite.mode is Mode.STDIN and broken_stdin_tests(job.suite)
    sandbox.send(job_message(job, job_id, compile_only=broken))
    stop_sent = False
    program_ms = 0.0
    wait = _reply_timeout(job)
    while True:
        event = sandbox.recv(wait)
        if event.get("id") != job_id:
            if event.get("ev") == "error":
                raise SandboxError(f"runner error: {event.get('error')}")
            continue  # stale event of an earlier, abandoned job
        kind = event.get("ev")
        if kind == "compiled":
            judgement.on_compiled(event["status"], event.get("error", ""))
        elif kind == "test":
            if stop_sent:
                continue
            program_ms += float(event["outcome"].get("ms", 0.0))
            settled = judgement.on_test(event["pass"], event["outcome"])
            if settled:
                sandbox.send({"op": "stop", "id": job_id})
                stop_sent = True
        elif kind == "done":
            if event.get("retire"):
                # The program left state the runner cannot clean (e.g. SysV IPC objects): the verdict
                # stands, and the pool replaces this sandbox before its next job.
                sandbox.retire = str(event["retire"])
            break
        else:
            raise SandboxError(f"unexpected runner event {kind!r}")
    if broken and judgement.compiled == "ok":
        return SampleResult(SampleStatus.JUDGED, (Verdict.CRASHED,) * len(job.suite), detail="test data cannot be joined")
    return judgement.result(stopped_early=stop_sent).with_program_seconds(program_ms / 1000)
