"""One job: TACO's compile step, then every test of one program, each reported as it ends.

A stdin job runs pass 1 (the program on every input) and, when every pass-1 test exited with
status 1, TACO's pass 2 (the program wrapped in ``code()``) on every input again.  A call-based job
keeps one checker process for all its calls, as TACO does.  Between tests the job looks for the
host's StopJob (early exit).
"""

from __future__ import annotations

import os
import time
import types
from dataclasses import dataclass

from .channel import HostChannel
from .forkserver import ForkServer
from .protocol import (
    CaseFinished,
    CheckerDied,
    Compiled,
    CompileStatus,
    NonZeroExit,
    Outcome,
    Output,
    RunCallJob,
    RunJob,
    RunnerMessage,
    RunStdinJob,
    StopJob,
    TimedOut,
)
from .served_program import NoReply, ServedProgram, call_outcome
from .stdin_procedure import stdin_test
from .watched_run import SCRIPT_NAME

STDIN_ENTRY_POINT = "code"  # what TACO's compile step looks up in a stdin program


class Stopped(Exception):
    """The host asked us to stop the current job (early exit)."""


@dataclass(frozen=True)
class Compilation:
    status: CompileStatus
    error: str
    served: ServedProgram | None  # the live checker of a call-based program that compiled
    timed_out: TimedOut | None = None  # the compile step ran past its deadline
    script: types.CodeType | None = None  # the stdin script compiled ahead, for every test to run


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


class Job:
    def __init__(self, request: RunJob, channel: HostChannel, forks: ForkServer, workdir: str) -> None:
        self.request = request
        self.forks = forks
        self.job_id = request.job_id
        self.channel = channel
        self.workdir = workdir
        self.timeout = request.timeout_s
        self.output_limit = request.output_limit_bytes

    def run(self) -> None:
        """Run the whole job; raises Stopped when the host stops it."""
        if isinstance(self.request, RunStdinJob):
            self._run_stdin(self.request)
        else:
            self._run_call(self.request)

    def _send(self, message: RunnerMessage) -> None:
        self.channel.send(message)

    def _check_stop(self) -> None:
        incoming = self.channel.poll()
        if incoming is not None:
            if isinstance(incoming, StopJob) and incoming.job_id == self.job_id:
                raise Stopped()
            self.channel.defer(incoming)

    def _compile(self, program: str, call_based: bool, entry_point: str, script: str | None = None) -> Compilation:
        """TACO's compile step in a child; for a call-based program that compiled, the child stays
        to answer calls.  With *script* (a stdin program's source), the same child first compiles
        that for the tests to share; if that fails in any way, the compile step runs again alone, in
        a fresh child, as it would without."""
        ahead = None if script is None else (script, os.path.join(self.workdir, SCRIPT_NAME))
        served = ServedProgram(self.forks, program, call_based, entry_point, self.workdir, self.timeout, self.output_limit, ahead)
        compiled_ahead = None
        if ahead is not None:
            got = served.read_precompiled(self.timeout)
            if isinstance(got, NoReply):
                served.close()
                served = ServedProgram(
                    self.forks, program, call_based, entry_point, self.workdir, self.timeout, self.output_limit
                )
            else:
                compiled_ahead = got
        keep = False
        try:
            reply = served.read_reply(self.timeout)
            if reply is NoReply.TIMEOUT:
                return Compilation(CompileStatus.ERROR, "compile step timed out", None, served.timed_out)
            if reply is NoReply.DIED or not isinstance(reply.get("ok"), bool):
                return Compilation(CompileStatus.DIED, "process died while compiling", None)
            if not reply["ok"]:
                return Compilation(CompileStatus.ERROR, str(reply.get("error", ""))[:2000], None)
            keep = call_based
            return Compilation(CompileStatus.OK, "", served if keep else None, script=compiled_ahead)
        finally:
            if not keep:
                served.close()

    # -- standard input ---------------------------------------------------------------------------

    def _run_stdin(self, request: RunStdinJob) -> None:
        # Each test forks a warm interpreter and runs the exec program; compiled once, ahead, here.
        ahead = None if request.fresh_interpreter or request.compile_only or not request.inputs else request.exec_program
        compilation = self._compile(request.compile_program, False, STDIN_ENTRY_POINT, ahead)
        self._send(Compiled(self.job_id, compilation.status, compilation.error, compilation.timed_out))
        if compilation.status is not CompileStatus.OK or request.compile_only:
            return
        first = self._stdin_pass(1, request.exec_program, request, compilation.script)
        # TACO: when every test ended as returncode:1, all tests run again on the wrapped program.
        if first and all(isinstance(o, NonZeroExit) and o.returncode == 1 for o in first):
            self._stdin_pass(2, request.second_program, request, None)

    def _stdin_pass(self, pass_number: int, program: str, request: RunStdinJob, script: types.CodeType | None) -> list[Outcome]:
        outcomes = []
        for index, text in enumerate(request.inputs):
            self._check_stop()
            started = time.monotonic()
            test = stdin_test(
                self.forks, program, text, self.workdir, self.timeout, self.output_limit, request.fresh_interpreter, script,
                self.channel,
            )  # fmt: skip
            outcomes.append(test.outcome)
            finished = CaseFinished(self.job_id, pass_number, index, test.outcome, _elapsed_ms(started), test.retry_timeout)
            if isinstance(test.outcome, Output) and test.retry_timeout is None:
                self.channel.send_soon(finished)  # most likely a pass: it can travel with the next few
            else:
                self._send(finished)  # most likely a failure: the host may stop the job at once
        return outcomes

    # -- call-based -------------------------------------------------------------------------------

    def _run_call(self, request: RunCallJob) -> None:
        compilation = self._compile(request.program, True, request.fn_name)
        self._send(Compiled(self.job_id, compilation.status, compilation.error, compilation.timed_out))
        if compilation.status is not CompileStatus.OK or request.compile_only:
            if compilation.served is not None:
                compilation.served.close()
            return
        served = compilation.served
        try:
            for index, args in enumerate(request.args):
                self._check_stop()
                if served is None:  # the previous call timed out: a fresh checker, as close as we can get
                    again = self._compile(request.program, True, request.fn_name)
                    if again.status is not CompileStatus.OK:
                        self._send(CaseFinished(self.job_id, 1, index, CheckerDied(), 0.0, again.timed_out))
                        return
                    served = again.served
                    assert served is not None  # a call-based program that compiled keeps its checker
                started = time.monotonic()
                reply = served.call(args.encode("utf-8"))
                ms = _elapsed_ms(started)
                outcome: Outcome
                if reply is NoReply.TIMEOUT:
                    outcome = served.timed_out or TimedOut()
                    served.close()
                    served = None
                elif reply is NoReply.DIED:
                    outcome = CheckerDied()
                else:
                    outcome = call_outcome(reply)
                self._send(CaseFinished(self.job_id, 1, index, outcome, ms))
                if isinstance(outcome, CheckerDied):
                    return
        finally:
            if served is not None:
                served.close()
