"""Sandboxes as locked-down Docker containers on one Docker host, driven over an attached socket."""

from __future__ import annotations

import os
import select
import struct
import time
import uuid
from typing import Any

import docker
import docker.errors

from harness.errors import DockerUnavailable, SandboxError
from harness.sandbox.interface import RunnerStream, SandboxLimits, greet
from sandbox_image.taco_runner.protocol import HostMessage, RunnerMessage, encode_frame

LABEL = "taco-harness.sandbox"
RUNNER_CAPABILITIES = ("SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER")


class DockerSandbox:
    """One container running the runner as PID 1; messages go over its attached stdin/stdout."""

    def __init__(self, client: docker.DockerClient, container: Any, sock: Any) -> None:
        self._client = client
        self.container = container
        self.name = container.name
        self._sock = sock
        self._raw = getattr(sock, "_sock", sock)
        self._raw.setblocking(True)
        self._stream = bytearray()  # Docker's multiplexed stream, undecoded
        self._messages = RunnerStream(self.name)
        self._stderr_tail = bytearray()
        self.closed = False
        self.retire = ""  # set when the runner asks to be replaced after its job (JobDone.retire_reason)

    def send(self, message: HostMessage) -> None:
        try:
            self._raw.sendall(encode_frame(message))
        except OSError as exc:
            raise SandboxError(f"{self.name}: cannot write to the runner: {exc}") from exc

    def recv(self, timeout: float) -> RunnerMessage:
        deadline = time.monotonic() + timeout
        while True:
            message = self._messages.next_message()
            if message is not None:
                return message
            self._demux()
            message = self._messages.next_message()
            if message is not None:
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError(f"{self.name}: runner silent for {timeout:.0f}s")
            try:
                ready, _, _ = select.select([self._raw], [], [], left)
                if not ready:
                    continue
                chunk = self._raw.recv(1 << 16)
            except OSError as exc:
                raise SandboxError(f"{self.name}: connection to the runner broke: {exc}") from exc
            if not chunk:
                raise SandboxError(f"{self.name}: runner exited{self._stderr_note()}")
            self._stream += chunk

    def _demux(self) -> None:
        # Without a TTY, Docker prefixes each chunk with 8 bytes: stream id, 3 zero bytes, length.
        while len(self._stream) >= 8:
            stream_id = self._stream[0]
            (size,) = struct.unpack(">I", self._stream[4:8])
            if len(self._stream) < 8 + size:
                return
            payload = bytes(self._stream[8 : 8 + size])
            del self._stream[: 8 + size]
            if stream_id == 1:
                self._messages.feed(payload)
            else:
                self._stderr_tail += payload
                del self._stderr_tail[:-4000]

    def _stderr_note(self) -> str:
        text = self._stderr_tail.decode("utf-8", "replace").strip()
        return f" (stderr: {text[-500:]})" if text else ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._raw.close()
        except OSError:
            pass
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409):  # 409: removal already in progress
                raise


class DockerBackend:
    """Starts sandboxes on one Docker host (one SDK client).  A pool can hold several of these."""

    def __init__(
        self,
        image: str,
        client: docker.DockerClient | None = None,
        limits: SandboxLimits | None = None,
        capacity: int | None = None,
        session: str | None = None,
    ) -> None:
        self.client = client or connect()
        self.image = image
        self.limits = limits or SandboxLimits()
        self.capacity = capacity or (os.cpu_count() or 1)
        self.session = session or uuid.uuid4().hex[:12]
        self.name = self.client.api.base_url

    def host_config(self) -> dict[str, Any]:
        """The Docker host configuration of every sandbox: its limits and lock-down."""
        lim = self.limits
        return self.client.api.create_host_config(
            auto_remove=True,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"size={lim.tmpfs_mb}m,mode=1777,nosuid,nodev,noexec"},
            shm_size=f"{lim.shm_mb}m",
            mem_limit=f"{lim.memory_mb}m",
            memswap_limit=f"{lim.memory_mb}m",
            pids_limit=lim.pids,
            nano_cpus=int(lim.cpus * 1e9),
            cap_drop=["ALL"],
            # The runner (PID 1, uid 0 of the container) keeps only what it needs to run each
            # program as uid 65534 with no capabilities at all, kill its leftovers and wipe its
            # files; programs then cannot signal, ptrace, prlimit or read /proc/1 of the runner.
            cap_add=list(RUNNER_CAPABILITIES),
            security_opt=["no-new-privileges"],
            ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
        )

    def start(self) -> DockerSandbox:
        try:
            api = self.client.api
            host_config = self.host_config()
            created = api.create_container(
                self.image,
                name=f"taco-sbx-{self.session}-{uuid.uuid4().hex[:8]}",
                stdin_open=True,
                detach=False,  # with stdin_open this sets StdinOnce: host gone -> stdin EOF -> runner exits -> container removed
                tty=False,
                user="0:0",
                network_disabled=True,
                labels={LABEL: "1", f"{LABEL}.session": self.session},
                host_config=host_config,
            )
            container = self.client.containers.get(created["Id"])
            sock = self.client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
        except (docker.errors.DockerException, OSError) as exc:
            raise SandboxError(f"cannot start a sandbox container: {exc}") from exc
        sandbox = DockerSandbox(self.client, container, sock)
        try:
            greet(sandbox)
        except BaseException:
            sandbox.close()
            raise
        return sandbox


def connect(timeout: float = 120) -> docker.DockerClient:
    """A client for the Docker daemon of the environment (DOCKER_HOST etc.), checked to answer
    (*timeout*: seconds for each of its API calls)."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise DockerUnavailable(
            f"cannot reach a Docker daemon ({exc.__class__.__name__}); start one or set DOCKER_HOST, "
            "or use --sandbox namespace (no Docker; needs root)"
        ) from exc
    return client


def prune(client: docker.DockerClient | None = None) -> int:
    """Remove every sandbox container this harness ever left behind; returns how many."""
    client = client or connect()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        try:
            container.remove(force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    return removed


def live_sessions(client: docker.DockerClient) -> dict[str, int]:
    """The running sandbox containers on this daemon, counted by the session (the pool, so the
    evaluation) that started each one: a session other than one's own is another evaluation."""
    counts: dict[str, int] = {}
    for entry in client.api.containers(filters={"label": LABEL, "status": "running"}):
        session = (entry.get("Labels") or {}).get(f"{LABEL}.session", "")
        counts[session] = counts.get(session, 0) + 1
    return counts


def daemon_cpus(client: docker.DockerClient) -> int | None:
    """How many CPUs the daemon's machine has (where the sandboxes run), or None if it does not say."""
    cpus = client.info().get("NCPU")
    return cpus if isinstance(cpus, int) and cpus > 0 else None


def sandbox_containers(client: docker.DockerClient, session: str | None = None) -> list:
    label = f"{LABEL}.session={session}" if session else LABEL
    return client.containers.list(all=True, filters={"label": label})


__all__ = ["DockerBackend", "DockerSandbox", "DockerUnavailable", "connect", "prune"]
