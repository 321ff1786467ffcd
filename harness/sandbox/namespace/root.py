"""What a namespace sandbox is made of: the small root file system it runs in, built by a shell
script in its new mount namespace; the environment it starts with (the Dockerfile's); and the host
interpreter it runs the runner on.

The root holds the host's ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` and ``/etc``, the interpreter's
prefixes (a virtual environment and its base) and the runner package at
``/opt/taco-runner/taco_runner``, all bind-mounted read-only, nosuid and nodev; nothing else of the
host.  Fresh size-limited tmpfs on ``/tmp`` and ``/dev/shm``, a fresh ``/dev/mqueue``, a fresh
``/proc``, a read-only ``/sys``, and a ``/dev`` of null, zero, full, random, urandom and tty only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from harness.errors import SandboxError

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

# Runs as PID 1 of the new namespaces, as root, then becomes the runner (exec keeps PID 1).
# Arguments: $0 sandbox name, $1 cgroup directory or "", $2 /tmp MB, $3 /dev/shm MB, $4 the runner
# package's directory, $5 interpreter, $6 prlimit options, $7 bounding set, $8 where to build the new
# root (a host directory that holds none of the sources, since the new root's tmpfs hides what is
# under it), then the directories to show, as (host path, path inside) pairs.  The runner starts
# as in the image: `python -m taco_runner` from /opt/taco-runner, where the package is alone.
SETUP_SCRIPT = r"""
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
mkdir -p "$root/opt/taco-runner/taco_runner"
mount --bind -o ro,nosuid,nodev "$runner" "$root/opt/taco-runner/taco_runner"
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
cd /opt/taco-runner
unset OLDPWD PWD  # left by cd; not in a container's environment
exec prlimit $rlimits -- setpriv --no-new-privs --inh-caps=-all --bounding-set="$caps" -- \
    "$python" -m taco_runner
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


def absolute_interpreter(python: str) -> str:
    """The interpreter as the sandbox will name it: an absolute path (a bare name is looked up in PATH)."""
    return os.path.abspath(shutil.which(python) or python)


def sandbox_environment(python: str) -> dict[str, str]:
    """The whole environment of a sandbox whose interpreter is *python* (as the sandbox names it)."""
    path = ":".join([os.path.dirname(python), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    return {**SANDBOX_ENV, "PATH": path}


@cache
def probe_interpreter(python: str) -> Interpreter:
    """Ask *python* for its version, numpy and the directories it needs; SandboxError if it cannot run."""
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, python], env=sandbox_environment(python), capture_output=True, text=True, timeout=60
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


# Where the new root may be built, in order of preference: existing host directories, only shadowed
# inside the sandbox's own mount namespace.
_ROOT_MOUNT_POINTS = ("/tmp", "/mnt", "/srv", "/media", "/run", "/var", "/home", "/opt")


def root_mount_point(sources: list[str]) -> str:
    """A directory to build the new root on that neither holds nor lies inside any of *sources*
    (a checkout or a virtualenv under /tmp must stay visible while the root is assembled)."""
    for candidate in _ROOT_MOUNT_POINTS:
        if (
            os.path.isdir(candidate)
            and not os.path.islink(candidate)
            and not any(_covered(source, [candidate]) or _covered(candidate, [source]) for source in sources)
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
