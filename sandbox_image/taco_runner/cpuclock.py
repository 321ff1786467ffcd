"""Where a run's time went: how much CPU the program got, and how long it waited for one.

A run that ends past its deadline is reported with these figures (``protocol.TimedOut``), so that
the host can tell a program that is slow (or sleeps, or loops) from one that was simply not given a
CPU on a busy machine.  Read from the kernel, before the program is killed:

* ``/proc/<pid>/task/<tid>/schedstat``: per task, nanoseconds on a CPU, nanoseconds runnable but
  waiting on a run queue, and timeslices.  Summed over every task (thread) of every program process
  of the sandbox, the runner and its fork server left out (when the runner is PID 1; else of the one
  program process).
* the sandbox cgroup's ``cpu.stat``: time its tasks were throttled by the CPU quota
  (``throttled_usec`` in cgroup v2, ``throttled_time`` in ns in v1), as a delta over the run.  Only
  where a cgroup file system is visible (Docker containers); elsewhere it is None.
* the runner's own CPU time over the run (``time.process_time``): in a sandbox of one CPU the
  runner shares the quota with the program (feeding its stdin, draining its output).

Standard library only; a figure that cannot be read is None, never a guess.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .isolation import IN_SANDBOX
from .protocol import TimedOut

# Candidate cpu.stat files: (path, key, nanoseconds per unit).  v2 first: a cgroup namespace shows
# the container's own cgroup at the root; v1 mounts each controller's container cgroup.
_CPU_STAT_CANDIDATES = (
    ("/sys/fs/cgroup/cpu.stat", "throttled_usec", 1000),
    ("/sys/fs/cgroup/cpu,cpuacct/cpu.stat", "throttled_time", 1),
    ("/sys/fs/cgroup/cpu/cpu.stat", "throttled_time", 1),
)


def _find_cpu_stat() -> tuple[str, str, int] | None:
    for path, key, scale in _CPU_STAT_CANDIDATES:
        try:
            with open(path) as f:
                if any(line.split()[:1] == [key] for line in f):
                    return path, key, scale
        except OSError:
            continue
    return None


_CPU_STAT = _find_cpu_stat()  # once: the sandbox's cgroup does not move


_cpu_stat_fd: int | None = None  # kept open: read at the start of every run (children close it before any program code)


def throttled_ns() -> int | None:
    """The sandbox cgroup's total throttled time so far, or None where it cannot be read."""
    global _cpu_stat_fd
    if _CPU_STAT is None:
        return None
    path, key, scale = _CPU_STAT
    try:
        if _cpu_stat_fd is None:
            _cpu_stat_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        text = os.pread(_cpu_stat_fd, 4096, 0)
        for line in text.split(b"\n"):
            name, _, value = line.partition(b" ")
            if name == key.encode():
                return int(value) * scale
    except (OSError, ValueError):
        return None
    return None


# Per process: (ns on a CPU, ns waiting on a run queue), summed over its tasks.
ProcessClocks = dict[int, tuple[int, int]]


def _process_clock(pid: int) -> tuple[int, int] | None:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    on_cpu = waited = 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                fields = f.read().split()
            on_cpu += int(fields[0])
            waited += int(fields[1])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return on_cpu, waited


def program_pids(main_pid: int, helpers: tuple[int, ...]) -> list[int]:
    """The program's processes: in a sandbox, every process but the runner and its *helpers* (the
    fork server): they are all the program's; elsewhere (the runner run by hand) just the one it
    started."""
    if not IN_SANDBOX:
        return [main_pid]
    ours = {"1", *map(str, helpers)}
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit() and name not in ours]
    except OSError:
        return [main_pid]


def process_clocks(pids: list[int]) -> ProcessClocks:
    clocks: ProcessClocks = {}
    for pid in pids:
        clock = _process_clock(pid)
        if clock is not None:
            clocks[pid] = clock
    return clocks


@dataclass(frozen=True, slots=True)
class RunClock:
    """What was true when a run started: its figures are taken as deltas from here."""

    started: float  # time.monotonic()
    runner_cpu: float  # time.process_time()
    throttled_ns: int | None
    program: ProcessClocks  # empty for a process forked for this run (its counters start at 0)

    @classmethod
    def start(cls, program: ProcessClocks | None = None) -> RunClock:
        return cls(time.monotonic(), time.process_time(), throttled_ns(), program or {})

    def timed_out(self, main_pid: int, helpers: tuple[int, ...]) -> TimedOut:
        """The figures of a run that is past its deadline; call it while the program still lives.
        *helpers*: the runner's processes besides itself (the fork server), never counted."""
        now = time.monotonic()
        clocks = process_clocks(program_pids(main_pid, helpers))
        if main_pid not in clocks:  # its /proc entries are unreadable: no figure rather than a wrong one
            cpu_ms = wait_ms = None
        else:
            on_cpu = waited = 0
            for pid, (cpu, wait) in clocks.items():
                before_cpu, before_wait = self.program.get(pid, (0, 0))
                on_cpu += max(0, cpu - before_cpu)
                waited += max(0, wait - before_wait)
            cpu_ms, wait_ms = _ms(on_cpu), _ms(waited)
        throttled = throttled_ns()
        return TimedOut(
            wall_ms=round((now - self.started) * 1000, 3),
            cpu_ms=cpu_ms,
            wait_ms=wait_ms,
            throttled_ms=None if throttled is None or self.throttled_ns is None else _ms(max(0, throttled - self.throttled_ns)),
            runner_cpu_ms=round((time.process_time() - self.runner_cpu) * 1000, 3),
        )


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)
