"""The runner's main loop: start-up, then one host message at a time, a job at a time.

At start-up, once warm, the runner forks its fork server (``forkserver``), which forks every program
from then on.  After every job all program processes of the sandbox are killed and reaped and the
scratch places wiped; what cannot be cleaned makes the runner ask to be retired
(JobDone.retire_reason) and exit.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import TextIO

from .channel import Garbled, HostChannel
from .forkserver import ForkServer
from .hygiene import WORKDIR, RunnerLimits, clean_scratch, leftovers, runner_limits
from .interpreter import prepare_streams, warm_up
from .isolation import PROGRAM_UID, SEPARATED, can_drop_privileges, set_dumpable
from .jobs import Job, Stopped
from .protocol import PROTOCOL_VERSION, Hello, JobDone, NotUnderstood, Ready, RunJob, StopJob
from .served_program import checker_child
from .watched_run import program_child


class Runner:
    def __init__(self, limits_at_start: RunnerLimits, forks: ForkServer) -> None:
        self.channel = HostChannel()
        self.forks = forks
        self.workdir = WORKDIR
        self.limits_at_start = limits_at_start
        clean_scratch(self.workdir)

    def serve(self) -> None:
        """Answer the host until it goes away, or until a job leaves what cannot be cleaned."""
        while True:
            message = self.channel.next_message()
            if message is None:
                return  # host went away
            if isinstance(message, Hello):
                self.channel.send(Ready(PROTOCOL_VERSION, sys.version.split()[0]))
            elif isinstance(message, StopJob):
                continue  # a stop that arrived after its job finished
            elif isinstance(message, Garbled):
                self.channel.send(NotUnderstood(message.reason))
            elif not self._run(message):
                return

    def _run(self, request: RunJob) -> bool:
        """Run one job and clean up after it; False when this sandbox must be retired."""
        stopped = False
        try:
            Job(request, self.channel, self.forks, self.workdir).run()
        except Stopped:
            stopped = True
        self.forks.sweep()
        clean_scratch(self.workdir)
        # State a program left that cannot be cleaned here: ask for a fresh sandbox.
        left = leftovers(self.limits_at_start, (self.forks.pid,))
        self.channel.send(JobDone(request.job_id, stopped, "; ".join(left)))
        return not left


# Kept referenced forever: if a forked child dropped it, closing it would close whatever that child
# has at the same fd number by then.
_RUNNER_STDOUT: TextIO | None = None


def main() -> None:
    # Python installs a SIGINT handler at start-up; the runner wants none at all.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Not dumpable: /proc/1/{mem,environ,fd,...} and ptrace are closed to every unprivileged process.
    set_dumpable(False)
    if SEPARATED and not can_drop_privileges():
        # Never run programs that would all fail in prepare_child: that would read as verdicts.
        sys.stderr.write(f"runner: cannot switch programs to uid {PROGRAM_UID} (needs CAP_SETUID and CAP_SETGID)\n")
        sys.stderr.flush()
        sys.exit(2)
    limits_at_start = runner_limits()
    # Frames go straight to fd 1; nothing may sit in a stdout buffer that a forked child would flush.
    global _RUNNER_STDOUT
    _RUNNER_STDOUT = sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # open for the process's life
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # TACO ran on Python <= 3.10, which had no digit limit
    warm_up()
    prepare_streams()
    gc.collect()
    gc.freeze()  # keep the warm heap shared with forked children
    # Forked now, before any job: it holds the warm heap as it is, and the runner never forks again.
    forks = ForkServer.start(program_child, checker_child)
    Runner(limits_at_start, forks).serve()
