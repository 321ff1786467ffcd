"""One stdin job sent straight to a sandbox's runner, as the evaluator sends it, with every message of
that job kept (tests that look at the runner's own replies rather than at verdicts)."""

from __future__ import annotations

import itertools

from harness.judging.programs import stdin_programs
from harness.sandbox.interface import Sandbox
from sandbox_image.taco_runner.protocol import JobDone, RunnerMessage, RunStdinJob

_job_ids = itertools.count(1_000_000)


def run_stdin_job(
    sandbox: Sandbox, code: str, inputs: tuple[str, ...], timeout: float = 4.0, fresh: bool = False, wait: float = 60.0
) -> list[RunnerMessage]:
    """Send ``code`` with ``inputs`` as one RunStdinJob; return that job's messages up to its JobDone."""
    programs = stdin_programs(code)
    job_id = next(_job_ids)
    sandbox.send(
        RunStdinJob(
            job_id, timeout, 1 << 20, False, fresh,
            programs.compile_program, programs.exec_program, programs.second_program, inputs,
        )
    )  # fmt: skip
    messages = []
    while True:
        message = sandbox.recv(wait)
        if getattr(message, "job_id", None) != job_id:
            continue
        messages.append(message)
        if isinstance(message, JobDone):
            return messages
