"""A second, independent Docker daemon on this machine, standing in for another host's Docker: its
own socket, data-root, exec-root (so its own managed containerd, with its own state), pid file and
network namespace, no bridge and no iptables rules (sandboxes have no network anyway).  The sandbox image is copied into
it from the main daemon (``docker save | docker load``), as a site would load it on each node.

Killing it (``kill``) is a host's Docker dying: its containers go with its containerd.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker

START_TIMEOUT_S = 60.0


def dockerd_missing() -> str | None:
    """Why a second daemon cannot be started here (None when it can)."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "a second dockerd needs root"
    return None


@dataclass
class SecondDockerd:
    root: Path
    process: subprocess.Popen

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the daemon, its containerd (its process group) and every container it ran (their
        shims leave the group, so they are found by this daemon's paths): the host is gone."""
        shims = [pid for pid, command in _processes() if str(self.root) in command and "containerd-shim" in command]
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        for pid in [*shims, *(child for shim in shims for child in descendants(shim))]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """End it cleanly (removing what it ran), and its files."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left of it
        # A daemon that was killed leaves its mounts (its data-root bound on itself, the containers'
        # overlays, its exec-root's namespaces): detach them all, then the files go.
        for mounted in ("exec", "data"):
            subprocess.run(["umount", "-R", "-l", str(self.root / mounted)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
            except OSError:
                continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below *pid* (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def start_second_dockerd(root: Path) -> SecondDockerd:
    """Start a daemon under *root* (a short path: the socket path must fit in 108 bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
    process = subprocess.Popen(
        [
            # In a network namespace of its own, as another host's daemon would be: a dockerd started
            # with `--bridge none` deletes the interface named docker0 where it runs, which in this
            # machine's namespace is the main daemon's bridge (its `docker run` then fails).
            # `unshare` execs dockerd, so the process (and its group) is still the daemon's.
            "unshare", "--net", "--",
            "dockerd",
            "--host", f"unix://{root / 'docker.sock'}",
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "docker.pid"),
            "--bridge", "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: kill() takes its containerd with it
    )  # fmt: skip
    daemon = SecondDockerd(root, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not daemon.alive():
            raise RuntimeError(f"the second dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
        try:
            if daemon.socket.exists() and daemon.client(timeout=5).ping():
                return daemon
        except (docker.errors.DockerException, OSError):
            pass
        if time.monotonic() > deadline:
            daemon.stop()
            raise RuntimeError("the second dockerd did not answer within a minute")
        time.sleep(0.2)


def copy_image(image: str, daemon: SecondDockerd) -> None:
    """``docker save IMAGE | docker load`` into *daemon*."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    load = subprocess.run(
        ["docker", "--host", daemon.url, "load", "--quiet"], stdin=save.stdout, capture_output=True, text=True, check=False
    )
    assert save.stdout is not None
    save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeError(f"could not copy {image} into the second daemon: {load.stderr.strip()}")
