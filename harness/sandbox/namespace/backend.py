"""Sandboxes as Linux namespaces on this machine, for hosts without Docker.  WEAKER ISOLATION THAN DOCKER.

Each sandbox is the same ``sandbox_image/runner.py`` that the Docker backend runs, started as PID 1
of fresh PID, mount, network, IPC and UTS namespaces by util-linux ``unshare`` (run as root), and
driven over its stdin/stdout pipes with the same frames.  Before the runner starts, a short shell
script inside the new mount namespace builds a small root file system and ``pivot_root``s into it:

* the host's ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` and ``/etc``, the interpreter's prefixes (a
  virtual environment and its base) and the runner at ``/opt/taco-runner``, all bind-mounted
  read-only, nosuid and nodev; nothing else of the host (no /home, /root, /work, /var, /run, data);
* fresh size-limited tmpfs on ``/tmp`` and ``/dev/shm``, a fresh ``/dev/mqueue`` for the new IPC
  namespace, a fresh ``/proc`` of the new PID namespace, a read-only ``/sys``;
* a ``/dev`` holding only null, zero, full, random, urandom and tty (no GPU, disk or terminal of the
  host).

Mount propagation is private, so none of this is seen by the host.  The runner keeps the same five
capabilities as in Docker (bounding set), with no_new_privs and no core dumps; it drops every program
to uid 65534 with no capabilities, kills everything else in its PID namespace after each run and
wipes /tmp, /dev/shm and /dev/mqueue, exactly as in its container.  The environment is the
Dockerfile's, never the host's.  Limits: with a writable cgroup v2 hierarchy each sandbox gets its
own cgroup (memory.max with no swap, pids.max, cpu.max), at the top of the hierarchy as Docker's
are, removed on close; otherwise RLIMIT_AS and RLIMIT_NPROC on the runner, which programs inherit
(logged once).

What it does NOT give, compared with the Docker backend:

* the same kernel with NO seccomp profile and no AppArmor/SELinux profile: a kernel bug reachable
  from an unprivileged process is an escape to the host;
* host system directories (/usr, /etc, the interpreter) are readable, read-only, by programs: the
  same files, not an image's, so fidelity also depends on the host's Python, numpy and locale;
* no user namespace: uid 65534 in a sandbox is the host's nobody, and the runner is real root
  (with five capabilities);
* /proc is the sandbox's own but not masked as Docker masks it (/proc/kcore, /proc/sys are there,
  root-only); there is no /dev/pts (os.openpty fails);
* without cgroup v2: memory is limited per process (address space, not resident memory, and not
  summed over a program's children); processes are limited per uid 65534 over the whole host, so
  a fork bomb in one sandbox makes forks and threads fail in the others while it runs; no CPU quota
  (each program still has the runner's RLIMIT_CPU);
* CPUs are not pinned (cpu.max is a quota, as Docker's --cpus is);
* root is needed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from harness.errors import SandboxError
from harness.sandbox.interface import FrameDecoder, SandboxLimits, encode_frame

log = logging.getLogger(__name__)


# sandbox_image/Dockerfile's ENV, which decides how programs see their streams, big ints and BLAS
# threads.  PATH is added per interpreter.  Nothing of the host's environment reaches a sandbox.
SANDBOX_ENV = {
    "LANG": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8:strict",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONINTMAXSTRDIGITS": "0",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HOME": "/tmp",
}

# Host directories shown read-only in every sandbox: what a Python and a shell need to run.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# As in the Docker backend: what the runner needs to run programs as uid 65534 and clean up after them.
RUNNER_CAPABILITIES = ("setuid", "setgid", "kill", "dac_override", "fowner")
REQUIRED_TOOLS = ("unshare", "setpriv", "prlimit", "mount", "umount", "pivot_root", "sh")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "taco-sbx-"

# Runs as PID 1 of the new namespaces, as root, then becomes the runner (exec keeps PID 1).
# Arguments: $0 sandbox name, $1 cgroup directory or "", $2 /tmp MB, $3 /dev/shm MB, $4 runner
# directory, $5 interpreter, $6 prlimit options, $7 bounding set, $8 where to build the new root (a
# host directory that holds none of the sources, since the new root's tmpfs hides what is under it),
# then the directories to show, as (host path, path inside) pairs.
_SETUP = r"""
set -eu
umask 022  # directories made for the new root must be traversable by the program user
cgroup=$1 tmp_mb=$2 shm_mb=$3 runner=$4 python=$5 rlimits=$6 caps=$7 root=$8
shift 8
# First, so that every process of this namespace is counted and limited there.
if [ -n "$cgroup" ]; then echo 0 > "$cgroup/cgroup.procs"; fi
# The new root: a tmpfs mounted over $root in this mount namespace only (propagation is private).
mount -t tmpfs -o mode=755,size=1m,nosuid,nodev taco-root "$root"
while [ $# -ge 2 ]; do
    path=$1 inside=$2
    shift 2
    if [ -L "$path" ]; then  # merged-/usr links such as /bin -> usr/bin
        mkdir -p "$root${inside%/*}"
        ln -s "$(readlink "$path")" "$root$inside"
    elif [ -d "$path" ]; then
        mkdir -p "$root$inside"
        mount --bind -o ro,nosuid,nodev "$path" "$root$inside"
    fi
done
mkdir -p "$root/opt/taco-runner"
mount --bind -o ro,nosuid,nodev "$runner" "$root/opt/taco-runner"
mkdir "$root/dev"
mount -t tmpfs -o mode=755,size=64k,nosuid,noexec taco-dev "$root/dev"
for node in null zero full random urandom tty; do
    : > "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir "$root/dev/shm"
mount -t tmpfs -o "size=${shm_mb}m,mode=1777,nosuid,nodev,noexec" taco-shm "$root/dev/shm"
mkdir "$root/dev/mqueue"  # optional, as in containers: the runner wipes it only if it exists
mount -t mqueue -o nosuid,nodev,noexec mqueue "$root/dev/mqueue" 2>/dev/null || rmdir "$root/dev/mqueue"
mount -o remount,bind,ro,nosuid,noexec "$root/dev"
mkdir "$root/proc"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mkdir "$root/sys"  # optional: glibc and OpenBLAS read CPU counts there, but fall back to /proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys" 2>/dev/null || true
mkdir "$root/tmp"
mount -t tmpfs -o "size=${tmp_mb}m,mode=1777,nosuid,nodev,noexec" taco-tmp "$root/tmp"
mount -o remount,bind,ro,nosuid,nodev "$root"
cd "$root"
pivot_root . .
umount -l .  # the host's root, now stacked on ours: gone from this namespace
cd /tmp
unset OLDPWD PWD  # left by cd; not in a container's environment
exec prlimit $rlimits -- setpriv --no-new-privs --inh-caps=-all --bounding-set="$caps" -- \
    "$python" /opt/taco-runner/runner.py
"""

# What the backend needs to know about an interpreter, asked of the interpreter itself (with the
# sandbox's environment, so its answer is what the runner will see).
_PROBE = r"""
import importlib.metadata, json, os, sys
try:
    numpy = importlib.metadata.version("numpy")
except Exception:
    numpy = ""
print(json.dumps({
    "version": sys.version.split()[0],
    "numpy": numpy,
    "dirs": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.abspath(sys.argv[1])), os.path.dirname(os.path.realpath(sys.argv[1]))],
}))
"""


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str
    numpy: str  # "" when numpy is missing
    dirs: tuple[str, ...]  # host directories to show read-only besides SYSTEM_DIRS


def _runner_dir() -> Path:
    import sandbox_image

    return Path(sandbox_image.__file__).resolve().parent


def _absolute(python: str) -> str:
    """The interpreter as the sandbox will name it: an absolute path (a bare name is looked up in PATH)."""
    return os.path.abspath(shutil.which(python) or python)


def _environment(python: str) -> dict[str, str]:
    path = ":".join([os.path.dirname(python), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    return {**SANDBOX_ENV, "PATH": path}


# Where the new root may be built, in order of preference: existing host directories, only shadowed
# inside the sandbox's own mount namespace.
_ROOT_MOUNT_POINTS = ("/tmp", "/mnt", "/srv", "/media", "/run", "/var", "/home", "/opt")


def root_mount_point(sources: list[str]) -> str:
    """A directory to build the new root on that neither holds nor lies inside any of *sources*
    (a checkout or a virtualenv under /tmp must stay visible while the root is assembled)."""
    for candidate in _ROOT_MOUNT_POINTS:
        if os.path.isdir(candidate) and not os.path.islink(candidate) and not any(
            _covered(source, [candidate]) or _covered(candidate, [source]) for source in sources
        ):
            return candidate
    raise SandboxError(f"no directory to build a sandbox root on: each of {', '.join(_ROOT_MOUNT_POINTS)} holds a source")


# A sandbox's /tmp is its own scratch, so host directories under /tmp (a checkout or virtualenv made
# with mktemp) are shown here instead; a virtualenv still works there, as Python finds pyvenv.cfg
# beside the executable it was started as.
HOST_TMP_VIEW = "/opt/taco-host"


def inside_path(path: str) -> str:
    """Where host *path* appears inside a sandbox."""
    return HOST_TMP_VIEW + path if _covered(path, ["/tmp"]) else path


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


@lru_cache(maxsize=None)
def probe_interpreter(python: str) -> Interpreter:
    """Ask *python* for its version, numpy and the directories it needs; SandboxError if it cannot run."""
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, python], env=_environment(python), capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"cannot run the interpreter {python}: {exc}") from exc
    if done.returncode != 0:
        raise SandboxError(f"the interpreter {python} failed: {done.stderr.strip()[-300:]}")
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise SandboxError(f"the interpreter {python} gave no usable answer: {done.stdout[-300:]!r}") from exc
    chosen: list[str] = list(SYSTEM_DIRS)
    extra: list[str] = []
    for directory in sorted({os.path.normpath(d) for d in answer["dirs"]}, key=len):
        if directory != "/" and os.path.isdir(directory) and not _covered(directory, chosen):
            chosen.append(directory)
            extra.append(directory)
    return Interpreter(python, answer["version"], answer["numpy"], tuple(extra))


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


def _make_cgroup(parent: Path, name: str, limits: SandboxLimits) -> Path:
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
        _remove_cgroup(path)
        raise SandboxError(f"cannot set up the cgroup {path}: {exc}") from exc
    return path


def _remove_cgroup(path: Path, wait_s: float = 10.0) -> None:
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


_logged: set[str] = set()


def _log_once(level: int, message: str, *args) -> None:
    """Each backend says how it limits sandboxes; a process that builds several says it once."""
    text = message % args
    if text not in _logged:
        _logged.add(text)
        log.log(level, text)


class NamespaceSandbox:
    """One runner as PID 1 of its own namespaces; messages go over its stdin/stdout pipes."""

    def __init__(self, name: str, process: subprocess.Popen, cgroup: Path | None) -> None:
        self.name = name
        self.process = process
        self.cgroup = cgroup
        self._in = process.stdin.fileno()
        self._out = process.stdout.fileno()
        self._err = process.stderr.fileno()
        self._open = [self._out, self._err]  # until each reaches EOF
        self._frames = FrameDecoder()
        self._stderr_tail = bytearray()
        self._io = threading.Lock()  # close() must not pull the fds from under a recv() in progress
        self._init_pidfd: int | None = None
        self.init_pid: int | None = None  # the host's pid of the namespace's PID 1 (the runner)
        self.closed = False
        self.retire = ""  # set when the runner asks to be replaced after its job (see runner.leftovers)

    def send(self, message: dict) -> None:
        if self.closed:  # its fd numbers may already belong to other files
            raise SandboxError(f"{self.name}: sandbox closed")
        view = memoryview(encode_frame(message))
        try:
            while view:
                view = view[os.write(self._in, view) :]
        except (OSError, ValueError) as exc:
            raise SandboxError(f"{self.name}: cannot write to the runner: {exc}") from exc

    def recv(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self._io:
            while True:
                frame = self._frames.next()
                if frame is not None:
                    return frame
                if self.closed or self._out not in self._open:
                    raise SandboxError(f"{self.name}: runner exited{self._stderr_note()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxError(f"{self.name}: runner silent for {timeout:.0f}s")
                try:
                    ready, _, _ = select.select(self._open, [], [], left)
                    for fd in ready:
                        chunk = os.read(fd, 1 << 16)
                        if not chunk:
                            self._open.remove(fd)
                        elif fd == self._out:
                            self._frames.feed(chunk)
                        else:
                            self._stderr_tail += chunk
                            del self._stderr_tail[:-4000]
                except (OSError, ValueError) as exc:
                    raise SandboxError(f"{self.name}: pipe to the runner broke: {exc}") from exc

    def _stderr_note(self) -> str:
        text = self._stderr_tail.decode("utf-8", "replace").strip()
        return f" (stderr: {text[-500:]})" if text else ""

    def find_init(self) -> None:
        """Remember the namespace's PID 1 (unshare's only child) by pidfd, so close() can kill it
        without racing pid reuse."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            self.init_pid = int(children[0])
            self._init_pidfd = os.pidfd_open(self.init_pid)
        except (OSError, IndexError, ValueError):
            self.init_pid = None  # close() still kills unshare, whose --kill-child takes PID 1 along

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Killing PID 1 makes the kernel kill every process of the namespace; unshare reaps it and
        # exits.  Killing unshare first would leave PID 1 to the host's init to reap.
        if self._init_pidfd is None and self.process.poll() is None:
            self.find_init()
        if self._init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.process.wait(timeout=10 if self._init_pidfd is not None else 0)
        except subprocess.TimeoutExpired:
            self.process.kill()  # its --kill-child takes PID 1 along
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("%s: unshare did not exit after SIGKILL", self.name)
        got_io = self._io.acquire(timeout=10)  # a recv() in progress sees EOF and leaves
        try:
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
            if self._init_pidfd is not None:
                os.close(self._init_pidfd)
                self._init_pidfd = None
        finally:
            if got_io:
                self._io.release()
        if self.cgroup is not None:
            _remove_cgroup(self.cgroup)


class NamespaceBackend:
    """Starts namespace sandboxes on this machine (root only).  See the module docstring: weaker
    isolation than the Docker backend."""

    def __init__(
        self,
        *,
        capacity: int | None = None,
        memory_mb: int | None = None,
        python: str | None = None,
        limits: SandboxLimits | None = None,
        session: str | None = None,
    ) -> None:
        limits = limits or SandboxLimits()
        self.limits = replace(limits, memory_mb=memory_mb) if memory_mb is not None else limits
        self.capacity = capacity or (os.cpu_count() or 1)
        self.interpreter = probe_interpreter(_absolute(python or sys.executable))
        self.session = session or uuid.uuid4().hex[:12]
        self.name = "namespaces"
        self._serial = itertools.count(1)
        self._cgroups = cgroup_parent()
        self._env = _environment(inside_path(self.interpreter.path))
        self._runner_dir = str(_runner_dir())
        self._root_mount_point = root_mount_point([self._runner_dir, *SYSTEM_DIRS, *self.interpreter.dirs])
        lim = self.limits
        if self._cgroups is not None:
            self._rlimits = "--core=0"
            _log_once(logging.INFO, "namespace sandboxes: limits by cgroup v2 under %s (memory %d MB, pids %d, cpus %g)",
                     self._cgroups, lim.memory_mb, lim.pids, lim.cpus)
        else:
            # Weaker: address space per process (not resident memory, not summed over a program's
            # children), processes per uid 65534 over every sandbox of this host, no CPU quota.
            self._rlimits = f"--core=0 --as={lim.memory_mb << 20} --nproc={lim.pids}"
            _log_once(logging.WARNING, "namespace sandboxes: no writable cgroup v2 with memory and pids controllers; "
                        "falling back to RLIMIT_AS=%d MB per process and RLIMIT_NPROC=%d for uid 65534 (weaker)",
                        lim.memory_mb, lim.pids)
        if not self.interpreter.numpy:
            _log_once(logging.WARNING, "namespace sandboxes: %s has no numpy; programs that use it will fail", self.interpreter.path)

    @staticmethod
    def identity_for(memory_mb: int = 2048, python: str | None = None, limits: SandboxLimits | None = None) -> str:
        """What verdicts from such sandboxes depend on besides program and tests (for job keys)."""
        limits = replace(limits or SandboxLimits(), memory_mb=memory_mb)
        try:
            interp = probe_interpreter(_absolute(python or sys.executable))
            python_id = f"python{interp.version} numpy{interp.numpy or '-none'}"
        except SandboxError:
            python_id = f"python-unusable:{python or sys.executable}"  # no verdict can come from it anyway
        digest = hashlib.sha256()
        for name in ("runner.py", "valuecodec.py"):
            digest.update((_runner_dir() / name).read_bytes())
        digest.update(_SETUP.encode())
        digest.update(json.dumps([SANDBOX_ENV, RUNNER_CAPABILITIES, limits.pids, limits.cpus, limits.tmpfs_mb, limits.shm_mb]).encode())
        enforcement = "cgroup" if cgroup_parent() is not None else "rlimit"
        return f"namespace-{digest.hexdigest()[:12]} {python_id} memory={limits.memory_mb}MB limits={enforcement}"

    @property
    def sandbox_id(self) -> str:
        return self.identity_for(self.limits.memory_mb, self.interpreter.path, self.limits)

    def start(self) -> NamespaceSandbox:
        lim = self.limits
        name = f"{CGROUP_PREFIX}{self.session}-{next(self._serial)}"
        cgroup = _make_cgroup(self._cgroups, name, lim) if self._cgroups is not None else None
        caps = ",".join(["-all"] + [f"+{cap}" for cap in RUNNER_CAPABILITIES])
        command = [
            "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--propagation", "private",
            "--net", "--ipc", "--uts", "--",
            "sh", "-c", _SETUP, name, str(cgroup or ""), str(lim.tmpfs_mb), str(lim.shm_mb), self._runner_dir,
            inside_path(self.interpreter.path), self._rlimits, caps, self._root_mount_point,
            *(part for path in (*SYSTEM_DIRS, *self.interpreter.dirs) for part in (path, inside_path(path))),
        ]  # fmt: skip
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd="/",
                # Its own session: no controlling terminal for programs to open, no Ctrl-C from ours.
                start_new_session=True,
            )
        except OSError as exc:
            if cgroup is not None:
                _remove_cgroup(cgroup)
            raise SandboxError(f"cannot start a namespace sandbox: {exc}") from exc
        sandbox = NamespaceSandbox(name, process, cgroup)
        try:
            sandbox.send({"op": "hello"})
            hello = sandbox.recv(60.0)
            if hello.get("ev") != "hello":
                raise SandboxError(f"{sandbox.name}: unexpected greeting {hello!r}")
            sandbox.find_init()
        except BaseException:
            sandbox.close()
            raise
        return sandbox


def namespace_sandbox_unavailable(python: str | None = None) -> str | None:
    """None when namespace sandboxes work here; else one line saying why not (for callers to show)."""
    if not sys.platform.startswith("linux"):
        return "namespace sandboxes need Linux"
    if os.geteuid() != 0:
        return "namespace sandboxes need root (mounts, PID namespaces, and running programs as uid 65534)"
    search = _environment(python or sys.executable)["PATH"]  # the PATH sandboxes start with
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool, path=search) is None]
    if missing:
        return f"missing util-linux tools: {', '.join(missing)}"
    try:
        backend = NamespaceBackend(capacity=1, python=python)
        backend.start().close()
    except SandboxError as exc:
        return " ".join(str(exc).split())[:400]
    return None


__all__ = [
    "NamespaceBackend",
    "NamespaceSandbox",
    "SANDBOX_ENV",
    "cgroup_parent",
    "namespace_sandbox_unavailable",
    "probe_interpreter",
]
