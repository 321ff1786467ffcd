"""Resource limits of namespace sandboxes through cgroup v2: one cgroup per sandbox (memory.max with
no swap, pids.max, cpu.max) at the top of the hierarchy, as Docker's are, removed on close."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from harness.errors import SandboxError
from harness.sandbox.interface import SandboxLimits

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "taco-sbx-"


def cgroup_parent() -> Path | None:
    """Where sandbox cgroups go: the cgroup v2 root when it is writable and delegates memory and pids
    (as on systemd hosts); None when limits must fall back to rlimits."""
    try:
        enabled = set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split())
    except OSError:
        return None  # not cgroup v2 (a v1 or hybrid host), or not visible
    if {"memory", "pids"} <= enabled and os.access(CGROUP_ROOT, os.W_OK):
        return CGROUP_ROOT
    return None


def make_cgroup(parent: Path, name: str, limits: SandboxLimits) -> Path:
    path = parent / name
    try:
        path.mkdir()
        (path / "memory.max").write_text(str(limits.memory_mb << 20))
        if (path / "memory.swap.max").exists():  # absent without swap accounting: nothing to limit
            (path / "memory.swap.max").write_text("0")
        (path / "pids.max").write_text(str(limits.pids))
        if (path / "cpu.max").exists():
            (path / "cpu.max").write_text(f"{int(limits.cpus * 100_000)} 100000")
    except OSError as exc:
        remove_cgroup(path)
        raise SandboxError(f"cannot set up the cgroup {path}: {exc}") from exc
    return path


def remove_cgroup(path: Path, wait_s: float = 10.0) -> None:
    """Remove a sandbox cgroup once its processes are gone (they exit just after their PID 1)."""
    try:
        (path / "cgroup.kill").write_text("1")  # anything still in it (kernels >= 5.14)
    except OSError:
        pass
    deadline = time.monotonic() + wait_s
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY until the last process has exited
            if time.monotonic() > deadline:
                log.warning("could not remove the sandbox cgroup %s: %s", path, exc)
                return
            time.sleep(0.02)
