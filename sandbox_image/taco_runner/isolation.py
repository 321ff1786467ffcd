"""Who programs run as, and what a freshly forked child does before any program code runs.

Privilege separation: started as root (with only the capabilities it needs: SETUID, SETGID, KILL,
DAC_OVERRIDE, FOWNER), the runner drops every program to PROGRAM_UID/PROGRAM_GID, so a program can
neither signal, ptrace, prlimit nor open /proc/1/* of the runner, nor do any of that to the fork
server, which is root too (the programs' parent, ``forkserver``).  Started as any other user it runs
programs as itself (and is then only as safe as PR_SET_DUMPABLE makes it).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from typing import Any

PROGRAM_UID = int(os.environ.get("TACO_RUNNER_PROGRAM_UID", "65534"))
PROGRAM_GID = int(os.environ.get("TACO_RUNNER_PROGRAM_GID", "65534"))
SEPARATED = os.getuid() == 0
# The runner is PID 1 of its sandbox (a container, or the namespace backend's PID namespace): every
# other process there is a program's, or the fork server.  Decided where the runner starts; the fork
# server and programs are forked from it and inherit the answer.  Elsewhere (the runner run by hand)
# programs get process groups of their own, and only those are killed.
IN_SANDBOX = os.getpid() == 1

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

# Bound once: a program may replace os._exit in its own process; its forked child must still leave
# through here, never fall back into the runner's code.
hard_exit = os._exit


def set_dumpable(dumpable: bool) -> bool:
    """PR_SET_DUMPABLE: a process that is not dumpable has its /proc entries (mem, environ, fd)
    and ptrace closed to every unprivileged process."""
    return _prctl(PR_SET_DUMPABLE, 1 if dumpable else 0)


def set_child_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphans among this process's descendants become its children (not PID
    1's), so it can wait for every one of them."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


# libc's prctl, looked up once (by the runner at start): loading libc through ctypes in every forked
# child cost more than the rest of the child's set-up together.
_libc_prctl: Any = None


def _prctl(option: int, value: int) -> bool:
    global _libc_prctl
    try:
        if _libc_prctl is None:
            import ctypes

            _libc_prctl = ctypes.CDLL(None).prctl  # errno unread: no use_errno (it costs each call)
        return bool(_libc_prctl(option, value, 0, 0, 0) == 0)
    except Exception:
        return False


# Whether this process (the fork server, and so every child it forks) has the program's groups already.
_program_groups_taken = False


def take_program_groups() -> None:
    """The fork server's, once: no supplementary groups and the program's gid, so that each program
    it forks changes only its uid (a credential change less per run).  What keeps the server out of
    programs' reach is its uid (0, with the runner's capabilities): signals, ptrace and prlimit are
    granted by uid, and its /proc entries are closed to them (not dumpable); its groups give it nothing
    it needs."""
    global _program_groups_taken
    if SEPARATED:
        os.setgroups([])
        os.setresgid(PROGRAM_GID, PROGRAM_GID, PROGRAM_GID)
        _program_groups_taken = True


def _drop_privileges() -> None:
    if not _program_groups_taken:
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
    if not IN_SANDBOX:
        # Outside a sandbox the process group is what gets killed.  Inside, the fork server's
        # kill(-1) sweeps everything, so the program stays in the runner's group and os.setsid()
        # works for it as it does for a program started by TACO's subprocess.run.
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


def redirect_fds(sources: Sequence[int]) -> None:
    """Make ``sources[i]`` the child's descriptor i, for each i, and close every other one."""
    count = len(sources)
    if min(sources) < count:  # one may sit where another goes: move them all out of the way first
        import fcntl  # here only: a checker's set-up, never a run's

        sources = [fcntl.fcntl(fd, fcntl.F_DUPFD, count) for fd in sources]
    for target, fd in enumerate(sources):
        os.dup2(fd, target)
    os.closerange(count, 65536)
