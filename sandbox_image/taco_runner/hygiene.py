"""Nothing a program does outlives its test: its processes are killed and reaped, everything it can
write is wiped, and what cannot be cleaned here is reported so that the host replaces the sandbox.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import stat

from .isolation import IN_SANDBOX, SEPARATED

SCRATCH = os.environ.get("TACO_RUNNER_SCRATCH", "/tmp")
# Where programs run (their working directory, holding solution.py, input.txt, output.txt).
WORKDIR = os.path.join(SCRATCH, "work")
# The runner's own corner of the scratch space (the stdin feed of retry A): programs cannot touch it
# when they run under another uid.
PRIVATE = os.path.join(SCRATCH, ".runner")
STDIN_FEED = os.path.join(PRIVATE if SEPARATED else SCRATCH, ".stdin-feed")
# Scratch places besides SCRATCH that a program can write and that outlive it; wiped after every run.
SHARED_SCRATCH = ("/dev/shm", "/dev/mqueue")


# -- processes --------------------------------------------------------------------------------


def sweep_descendants(groups: list[int]) -> None:
    """Kill every program process and reap them all: the fork server's sweep (it is their child
    subreaper, so every one of them is its descendant, and ends as its child).

    In a sandbox, kill(-1) reaches every process it may signal but itself and PID 1 (the runner):
    every program process, all at once, a fork bomb included (no process can fork once the signal is
    on its way).  Elsewhere (the runner run by hand) only the process *groups* of the programs it forked."""
    if IN_SANDBOX:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def kill_program(pid: int) -> None:
    """The runner's kill of a program past its deadline (or past its output limit): the program
    itself, at once; the fork server's sweep, which follows, takes whatever it started.  Never
    kill(-1) here: that would take the fork server too.  Outside a sandbox, its process group."""
    try:
        if not IN_SANDBOX:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:  # the program may not have made its group yet
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- files ------------------------------------------------------------------------------------


def _make_writable(function: object, path: str, _exc_info: object) -> None:
    """rmtree's error hook: a program may leave directories it made unreadable (mode 000)."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
    except OSError:
        pass
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def remove_path(full: str) -> None:
    try:  # what programs leave is mostly files: one system call
        os.unlink(full)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # a directory (EISDIR), or something rmtree's error hook can deal with
    try:
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, onerror=_make_writable)
        else:
            os.unlink(full)
    except OSError:
        pass


def wipe_dir(path: str, keep: tuple[str, ...] = ()) -> None:
    """Remove everything below *path* (files a program left behind), keeping *path* itself."""
    try:
        entries = os.listdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
        return
    except OSError:
        return
    for name in entries:
        full = os.path.join(path, name)
        if full not in keep:
            remove_path(full)


def _own_dir(path: str, mode: int) -> None:
    """*path* as a real directory of ours with *mode* (recreated if a program replaced it)."""
    try:
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            if stat.S_IMODE(info.st_mode) != mode:
                os.chmod(path, mode)
            return
        remove_path(path)
    except FileNotFoundError:
        pass
    os.mkdir(path)
    os.chmod(path, mode)


_shared_scratch: tuple[str, ...] | None = None  # SHARED_SCRATCH places this sandbox has (mounts do not change)


def clean_scratch(workdir: str, likely: tuple[str, ...] = ()) -> None:
    """Everything a program can write is reset: all of SCRATCH (not just its working directory),
    /dev/shm and the POSIX message queues.  *likely*: names a run leaves in *workdir* (its script),
    removed by name before anything is listed."""
    global _shared_scratch
    if IN_SANDBOX:  # elsewhere (the runner run by hand) only the work dir is ours
        _wipe_unless_unchanged(SCRATCH, keep=(workdir, PRIVATE))
    _own_dir(workdir, 0o777 if SEPARATED else 0o755)
    for name in likely:
        try:
            os.unlink(os.path.join(workdir, name))
        except OSError:
            pass  # not there, or not a file: the wipe below deals with it
    _wipe_unless_unchanged(workdir)
    if SEPARATED:
        _own_dir(PRIVATE, 0o700)
    if IN_SANDBOX:
        if _shared_scratch is None:
            _shared_scratch = tuple(path for path in SHARED_SCRATCH if os.path.isdir(path) and os.access(path, os.W_OK))
        for path in _shared_scratch:
            _wipe_unless_unchanged(path)


# tmpfs and mqueue give a directory a size that counts its entries (a fixed amount for each).  On them,
# a scratch directory whose size is what it was when it was last found clean has gained no entry, and
# lost none (the entries it keeps are the runner's, in a sticky directory: no program can remove or
# rename them): it need not be listed again.  A stat instead of a listing, per place and per test.
_COUNTING_FILE_SYSTEMS = ("tmpfs", "mqueue")
_counts_entries: dict[str, bool] = {}  # per scratch directory: whether its size counts its entries
_clean_size: dict[str, int] = {}  # per such directory: its size when it was last found clean


def _wipe_unless_unchanged(path: str, keep: tuple[str, ...] = ()) -> None:
    """``wipe_dir(path, keep)``, unless *path*'s size says nothing has changed in it since it was
    last found holding *keep* alone."""
    counts = _counts_entries.get(path)
    if counts is None:
        counts = _counts_entries[path] = _file_system(path) in _COUNTING_FILE_SYSTEMS
    if counts:
        try:
            info = os.lstat(path)
            if _clean_size.get(path) == info.st_size and (not keep or info.st_mode & stat.S_ISVTX):
                return
        except OSError:
            pass
    wipe_dir(path, keep)
    if counts:  # the size to compare with from now on: only once a listing shows it clean
        _clean_size.pop(path, None)
        try:
            if all(os.path.join(path, name) in keep for name in os.listdir(path)):
                _clean_size[path] = os.lstat(path).st_size
        except OSError:
            pass


def _file_system(path: str) -> str | None:
    """The type of the file system *path* is on (the mount table's longest mount point above it)."""
    found, kind = "", None
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(found):
                    found, kind = point, fields[2]
    except OSError:
        return None
    return kind


# -- what could not be cleaned ----------------------------------------------------------------

RunnerLimits = list[tuple[int, int]]


def runner_limits() -> RunnerLimits:
    """Every resource limit of this process (a program must not have changed the runner's)."""
    return [resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")]


def leftovers(limits_at_start: RunnerLimits, helpers: tuple[int, ...]) -> list[str]:
    """What a program left that the runner could not remove (reasons to retire this sandbox);
    *helpers*: the runner's own processes besides itself (the fork server)."""
    found = []
    ours = {str(os.getpid()), *map(str, helpers)}
    try:
        others = [p for p in os.listdir("/proc") if p.isdigit() and p not in ours]
    except OSError:
        others = []
    if IN_SANDBOX and others:
        found.append(f"processes {others[:5]}")
    for kind in ("shm", "msg", "sem"):  # SysV IPC objects outlive processes; only CAP_SYS_ADMIN removes others'
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                if len(f.read().splitlines()) > 1:
                    found.append(f"sysv {kind}")
        except OSError:
            pass
    for path in (SCRATCH, *SHARED_SCRATCH):
        try:
            names = set(os.listdir(path)) - {"work", ".runner"}
        except OSError:
            continue
        if names:
            found.append(f"files in {path}")
    if runner_limits() != limits_at_start:
        found.append("runner limits changed")
    return found
