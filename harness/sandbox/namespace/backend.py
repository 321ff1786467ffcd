"""Sandboxes as Linux namespaces on this machine, for hosts without Docker.  WEAKER ISOLATION THAN DOCKER.

Each sandbox is the same runner package, ``sandbox_image/taco_runner``, that the Docker backend
runs, started as PID 1 of fresh PID, mount, network, IPC and UTS namespaces by util-linux
``unshare`` (run as root), and driven over its stdin/stdout pipes with the same protocol.  Before
the runner starts, a short shell script inside the new mount namespace builds a small root file
system and ``pivot_root``s into it (``root.py``):

* the host's ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` and ``/etc``, the interpreter's prefixes (a
  virtual environment and its base) and the runner package under ``/opt/taco-runner``, all
  bind-mounted read-only, nosuid and nodev; nothing else of the host (no /home, /root, /work,
  /var, /run, data);
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
are, removed on close (``cgroups.py``); otherwise RLIMIT_AS and RLIMIT_NPROC on the runner, which
programs inherit (logged once).

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
from dataclasses import replace
from pathlib import Path

import sandbox_image
from harness.errors import SandboxError
from harness.sandbox.interface import RunnerStream, SandboxLimits, greet
from harness.sandbox.namespace.cgroups import CGROUP_PREFIX, cgroup_parent, make_cgroup, remove_cgroup
from harness.sandbox.namespace.root import (
    SANDBOX_ENV,
    SETUP_SCRIPT,
    SYSTEM_DIRS,
    absolute_interpreter,
    inside_path,
    probe_interpreter,
    root_mount_point,
    sandbox_environment,
)
from sandbox_image.taco_runner.protocol import HostMessage, RunnerMessage, encode_frame

log = logging.getLogger(__name__)

# As in the Docker backend: what the runner needs to run programs as uid 65534 and clean up after them.
RUNNER_CAPABILITIES = ("setuid", "setgid", "kill", "dac_override", "fowner")
REQUIRED_TOOLS = ("unshare", "setpriv", "prlimit", "mount", "umount", "pivot_root", "sh")

_logged: set[str] = set()


def _log_once(level: int, message: str, *args: object) -> None:
    """Each backend says how it limits sandboxes; a process that builds several says it once."""
    text = message % args
    if text not in _logged:
        _logged.add(text)
        log.log(level, text)


class NamespaceSandbox:
    """One runner as PID 1 of its own namespaces; messages go over its stdin/stdout pipes."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], cgroup: Path | None) -> None:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None  # all piped
        self.name = name
        self.process = process
        self.cgroup = cgroup
        self._pipes = (process.stdin, process.stdout, process.stderr)
        self._in = process.stdin.fileno()
        self._out = process.stdout.fileno()
        self._err = process.stderr.fileno()
        self._open = [self._out, self._err]  # until each reaches EOF
        self._messages = RunnerStream(name)
        self._stderr_tail = bytearray()
        self._io = threading.Lock()  # close() must not pull the fds from under a recv() in progress
        self._init_pidfd: int | None = None
        self.init_pid: int | None = None  # the host's pid of the namespace's PID 1 (the runner)
        self.closed = False
        self.retire = ""  # set when the runner asks to be replaced after its job (JobDone.retire_reason)

    def send(self, message: HostMessage) -> None:
        if self.closed:  # its fd numbers may already belong to other files
            raise SandboxError(f"{self.name}: sandbox closed")
        view = memoryview(encode_frame(message))
        try:
            while view:
                view = view[os.write(self._in, view) :]
        except (OSError, ValueError) as exc:
            raise SandboxError(f"{self.name}: cannot write to the runner: {exc}") from exc

    def recv(self, timeout: float) -> RunnerMessage:
        deadline = time.monotonic() + timeout
        with self._io:
            while True:
                message = self._messages.next_message()
                if message is not None:
                    return message
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
                            self._messages.feed(chunk)
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
            for stream in self._pipes:
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
            remove_cgroup(self.cgroup)


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
        self.interpreter = probe_interpreter(absolute_interpreter(python or sys.executable))
        self.session = session or uuid.uuid4().hex[:12]
        self.name = "namespaces"
        self._serial = itertools.count(1)
        self._cgroups = cgroup_parent()
        self._env = sandbox_environment(inside_path(self.interpreter.path))
        self._runner_dir = str(sandbox_image.runner_package_dir())
        self._root_mount_point = root_mount_point([self._runner_dir, *SYSTEM_DIRS, *self.interpreter.dirs])
        lim = self.limits
        if self._cgroups is not None:
            self._rlimits = "--core=0"
            _log_once(
                logging.INFO,
                "namespace sandboxes: limits by cgroup v2 under %s (memory %d MB, pids %d, cpus %g)",
                self._cgroups,
                lim.memory_mb,
                lim.pids,
                lim.cpus,
            )
        else:
            # Weaker: address space per process (not resident memory, not summed over a program's
            # children), processes per uid 65534 over every sandbox of this host, no CPU quota.
            self._rlimits = f"--core=0 --as={lim.memory_mb << 20} --nproc={lim.pids}"
            _log_once(
                logging.WARNING,
                "namespace sandboxes: no writable cgroup v2 with memory and pids controllers; "
                "falling back to RLIMIT_AS=%d MB per process and RLIMIT_NPROC=%d for uid 65534 (weaker)",
                lim.memory_mb,
                lim.pids,
            )
        if not self.interpreter.numpy:
            _log_once(
                logging.WARNING, "namespace sandboxes: %s has no numpy; programs that use it will fail", self.interpreter.path
            )

    @staticmethod
    def identity_for(memory_mb: int = 2048, python: str | None = None, limits: SandboxLimits | None = None) -> str:
        """What verdicts from such sandboxes depend on besides program and tests (for job keys)."""
        limits = replace(limits or SandboxLimits(), memory_mb=memory_mb)
        try:
            interp = probe_interpreter(absolute_interpreter(python or sys.executable))
            python_id = f"python{interp.version} numpy{interp.numpy or '-none'}"
        except SandboxError:
            python_id = f"python-unusable:{python or sys.executable}"  # no verdict can come from it anyway
        digest = hashlib.sha256()
        for path in sandbox_image.runner_files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        digest.update(SETUP_SCRIPT.encode())
        settings = [SANDBOX_ENV, RUNNER_CAPABILITIES, limits.pids, limits.cpus, limits.tmpfs_mb, limits.shm_mb]
        digest.update(json.dumps(settings).encode())
        enforcement = "cgroup" if cgroup_parent() is not None else "rlimit"
        return f"namespace-{digest.hexdigest()[:12]} {python_id} memory={limits.memory_mb}MB limits={enforcement}"

    @property
    def sandbox_id(self) -> str:
        return self.identity_for(self.limits.memory_mb, self.interpreter.path, self.limits)

    def start(self) -> NamespaceSandbox:
        lim = self.limits
        name = f"{CGROUP_PREFIX}{self.session}-{next(self._serial)}"
        cgroup = make_cgroup(self._cgroups, name, lim) if self._cgroups is not None else None
        caps = ",".join(["-all"] + [f"+{cap}" for cap in RUNNER_CAPABILITIES])
        command = [
            "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--propagation", "private",
            "--net", "--ipc", "--uts", "--",
            "sh", "-c", SETUP_SCRIPT, name, str(cgroup or ""), str(lim.tmpfs_mb), str(lim.shm_mb), self._runner_dir,
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
                remove_cgroup(cgroup)
            raise SandboxError(f"cannot start a namespace sandbox: {exc}") from exc
        sandbox = NamespaceSandbox(name, process, cgroup)
        try:
            greet(sandbox)
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
    search = sandbox_environment(python or sys.executable)["PATH"]  # the PATH sandboxes start with
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool, path=search) is None]
    if missing:
        return f"missing util-linux tools: {', '.join(missing)}"
    try:
        backend = NamespaceBackend(capacity=1, python=python)
        backend.start().close()
    except SandboxError as exc:
        return " ".join(str(exc).split())[:400]
    return None


__all__ = ["NamespaceBackend", "NamespaceSandbox", "namespace_sandbox_unavailable"]
