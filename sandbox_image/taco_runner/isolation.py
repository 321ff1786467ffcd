"""Who programs run as, and what a freshly forked child does before any program code runs.

Privilege separation: started as root (with only the capabilities it needs: SETUID, SETGID, KILL,
DAC_OVERRIDE, FOWNER), the runner drops every program to PROGRAM_UID/PROGRAM_GID, so a program can
neither signal, ptrace, prlimit nor open /proc/1/* of the runner.  Started as any other user it runs
programs as itself (and is then only as safe as PR_SET_DUMPABLE makes it).
"""

from __future__ import annotations

import os
import resource
from typing import Any

PROGRAM_UID = int(os.environ.get("TACO_RUNNER_PROGRAM_UID", "65534"))
PROGRAM_GID = int(os.environ.get("TACO_RUNNER_PROGRAM_GID", "65534"))
SEPARATED = os.getuid() == 0

PR_SET_DUMPABLE = 4

# Bound once: a program may replace os._exit in its own process; its forked child must still leave
# through here, never fall back into the runner's code.
hard_exit = os._exit


def set_dumpable(dumpable: bool) -> bool:
    """PR_SET_DUMPABLE: a process that is not dumpable has its /proc entries (mem, environ, fd)
    and ptrace closed to every unprivileged process."""
    return _prctl(PR_SET_DUMPABLE, 1 if dumpable else 0)


# libc's prctl, looked up once (by the runner at start): loading libc through ctypes in every forked
# child cost more than the rest of the child's set-up together.
_libc_prctl: Any = None


def _prctl(option: int, value: int) -> bool:
    global _libc_prctl
    try:
        if _libc_prctl is None:
            import ctypes

            _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
        return bool(_libc_prctl(option, value, 0, 0, 0) == 0)
    except Exception:
        return False


def _drop_privileges() -> None:
    os.setgroups([])
    os.setresgid(PROGRAM_GID, PROGRAM_GID, PROGRAM_GID)
    os.setresuid(PROGRAM_UID, PROGRAM_UID, PROGRAM_UID)  # drops every capability


def can_drop_privileges() -> bool:
    """Whether a forked child can become the program user (checked once, before serving)."""
    pid = os.fork()
    if pid == 0:
        try:
            _drop_privileges()
            hard_exit(0 if os.getresuid() == (PROGRAM_UID,) * 3 else 1)
        finally:
            hard_exit(1)
    _, status = os.waitpid(pid, 0)
    return status == 0


def prepare_child(workdir: str, cpu_seconds: float) -> None:
    """Common set-up right after fork, before any untrusted code runs."""
    if os.getpid() != 1 and os.getppid() != 1:
        # Outside a container (runner tests) the process group is what gets killed.  Inside, the
        # runner is PID 1 and kill(-1) sweeps everything, so the program stays in PID 1's group and
        # os.setsid() works for it as it does for a program started from a shell.
        os.setpgid(0, 0)
    soft = max(1, int(cpu_seconds) + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    if SEPARATED:
        _drop_privileges()
    # The runner is not dumpable (its /proc entries are closed to programs); a program is, as usual.
    set_dumpable(True)
    try:  # under memory pressure the kernel kills the program, never the runner
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass
    os.chdir(workdir)


def redirect_std_fds(fd_in: int, fd_out: int, fd_err: int) -> None:
    """Make the three descriptors the child's 0, 1 and 2, and close every other one."""
    os.dup2(fd_in, 0)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    os.closerange(3, 65536)
