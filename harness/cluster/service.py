"""The driver's side of evaluation on a Ray cluster: ``RayExecutionService``, an ``ExecutionService``
(as the local ``SandboxPool`` is) over one ``SandboxHost`` actor per node that offers
``taco_sandbox_host``.

* The queue stays here, in priority order (the session sends the longest expected jobs first).  Each
  host holds at most its sandboxes plus a few more jobs (so its sandboxes never wait for the driver);
  a job goes to a host only when it has room, so a slow host takes less (pull).
* Each problem's tests are put in the object store once; their reference goes with a host's first
  job of the problem only, and the host fetches them then and keeps them.
* A host that dies (its actor or node gone) has its jobs in flight put back on the queue: counted as
  re-queued, never as sandbox failures or verdicts.  An infrastructure error from one host is tried
  again on a host that has not failed the job, while there is one.  A host that keeps ending jobs as
  infrastructure errors is taken out of rotation for a while, as the local pool does with a backend.
* A job's result is delivered once, whichever of its attempts answers first (a late answer from a
  host already given up on is dropped).
* Hosts whose ``SandboxIdentity`` differs from the driver's are refused, with what differs.

The journal stays with the session on the driver: a driver that dies loses only what is in flight,
and the same command resumes.  Ray kills a dead driver's actors, and their sandboxes with them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.cluster.choice import HOST_RESOURCE
from harness.cluster.host import SUITES_KEPT, HostDescription, HostJob, SandboxHost, SandboxIdentity
from harness.data.testcases import TestSuite
from harness.errors import ClusterUnavailable
from harness.evaluation.execution import ExecutionJob
from harness.judging.verdicts import SampleResult, SampleStatus
from harness.sandbox.choice import SandboxChoice
from harness.sandbox.pool import BENCH_AFTER_START_FAILURES, BENCH_COOL_DOWN_S, HostStats, PoolStats

log = logging.getLogger(__name__)

HOST_READY_TIMEOUT_S = 300.0  # a host's first answer and its pool opening (it may build the image)
CLOSE_TIMEOUT_S = 60.0
STATS_INTERVAL_S = 1.0


def extra_jobs(slots: int) -> int:
    """Jobs a host holds beyond its sandboxes, so that a finished job's sandbox finds the next one
    already there instead of waiting a round trip to the driver."""
    return max(2, slots // 2)


@dataclass
class _Host:
    description: HostDescription
    actor: Any  # the Ray actor handle
    slots: int
    cap: int  # jobs it may hold at once
    in_flight: dict[int, int] = field(default_factory=dict)  # attempt -> ticket
    tests_sent: OrderedDict[int, None] = field(default_factory=OrderedDict)  # tokens, least recent first
    alive: bool = True
    infra_in_a_row: int = 0
    out_until: float = 0.0
    stats: PoolStats | None = None

    @property
    def label(self) -> str:
        return self.description.label

    def takes_jobs(self, now: float) -> bool:
        return self.alive and now >= self.out_until and len(self.in_flight) < self.cap


@dataclass
class _Ticket:
    job: ExecutionJob
    deliver: Callable[[SampleResult], None]
    priority: float
    tests: int
    failed_on: set[str] = field(default_factory=set)  # labels of hosts that ended it as an infrastructure error


class RayExecutionService:
    """Runs ``ExecutionJob``s on the sandbox hosts of the Ray cluster at *address* (``None``: the
    cluster this process is already connected to).  *sandbox* is what each host runs; its ``workers``
    are sandboxes per host (default: the node's CPUs)."""

    def __init__(self, address: str | None, sandbox: SandboxChoice, say: Callable[[str], None] = lambda message: None) -> None:
        self._say = say
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                raise ClusterUnavailable("--cluster ray needs the head node's address: --ray-address or RAY_ADDRESS")
            unreachable = _unreachable(address)
            if unreachable is not None:  # ray.init would keep trying for minutes
                raise ClusterUnavailable(f"cannot connect to the Ray cluster at {address}: {unreachable}")
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # ConnectionError, a bad address, a version mismatch
                raise ClusterUnavailable(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
            self._owns_ray = True
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._closed = False
        self._waiting: list[tuple[float, int]] = []  # (priority, ticket); tickets grow in arrival order
        self._tickets: dict[int, _Ticket] = {}
        self._ticket_numbers = itertools.count()
        self._attempts = itertools.count()
        self._suites: dict[int, tuple[TestSuite, int, ray.ObjectRef]] = {}  # id(suite) -> (suite, token, reference)
        self._delivered = 0
        self._requeued = 0
        self._lost = 0
        self._refused = 0
        self._results: list[tuple[_Host, int, Future]] = []
        self._results_ready = threading.Condition()
        self._stop = threading.Event()
        # After close: each live host's sandbox containers that its daemon still showed (0: all removed).
        self.sandboxes_left: dict[str, int] = {}
        try:
            self._hosts = self._connect_hosts(sandbox)
        except BaseException:
            self._shutdown_ray()
            raise
        # What the session may hand over at once: every host's sandboxes plus the jobs it holds beside
        # them (else each sandbox would wait a round trip through the session for its next job).
        self.size = sum(host.cap for host in self._hosts)
        self._threads = [
            threading.Thread(target=self._collect, name="cluster-results", daemon=True),
            threading.Thread(target=self._refresh_stats, name="cluster-stats", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- the ExecutionService protocol ---------------------------------------------------------
    def submit_with_callback(self, job: ExecutionJob, deliver: Callable[[SampleResult], None], priority: float = 0.0) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the cluster service is closed")
            ticket = next(self._ticket_numbers)
            self._tickets[ticket] = _Ticket(job, deliver, priority, self._tests_token(job.suite))
            heapq.heappush(self._waiting, (priority, ticket))
            self._dispatch()

    def warm_up(self) -> None:
        with self._lock:
            for host in self._hosts:
                if host.alive:
                    host.actor.warm_up.remote()

    def stats(self) -> PoolStats:
        with self._lock:
            known = [host.stats for host in self._hosts if host.stats is not None]
            alive = [host for host in self._hosts if host.alive]
            return PoolStats(
                jobs=self._delivered,
                sandbox_failures=sum(s.sandbox_failures for s in known),
                sandboxes_started=sum(s.sandboxes_started for s in known),
                sandboxes_retired=sum(s.sandboxes_retired for s in known),
                slots=sum(host.slots for host in alive),
                sandboxes_live=sum(host.stats.sandboxes_live for host in alive if host.stats is not None),
                backends_out_of_rotation=sum(s.backends_out_of_rotation for s in known),
                hosts=HostStats(up=len(alive), lost=self._lost, refused=self._refused, requeued=self._requeued),
            )

    def close(self) -> None:
        """End queued jobs as infrastructure errors, have every host remove its sandboxes (its jobs in
        flight end the same way), and let the hosts go."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            never_sent = [self._tickets.pop(ticket) for _, ticket in self._waiting if ticket in self._tickets]
            self._waiting.clear()
            alive = [host for host in self._hosts if host.alive]
        for ticket in never_sent:
            self._deliver(ticket, ticket.job.infrastructure_error("pool closed"))
        for host, containers in zip(alive, self._close_hosts(alive)):
            self.sandboxes_left[host.label] = containers
            if containers > 0:
                self._say(f"host {host.label}: {containers} sandbox container(s) still there after close (harness sandbox prune)")
        with self._drained:  # the hosts' answers for the jobs they held come back through the collector
            self._drained.wait_for(lambda: not self._tickets, timeout=CLOSE_TIMEOUT_S)
            unanswered = list(self._tickets.values())
            self._tickets.clear()
        for ticket in unanswered:
            self._deliver(ticket, ticket.job.infrastructure_error("pool closed"))
        self._stop.set()
        with self._results_ready:
            self._results_ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        for host in self._hosts:
            try:
                ray.kill(host.actor)
            except Exception as exc:  # already gone
                log.info("%s: %s", host.label, exc)
        self._shutdown_ray()

    @staticmethod
    def _close_hosts(hosts: list[_Host]) -> list[int]:
        """Have *hosts* remove their sandboxes; each one's containers still there (-1: no answer)."""
        closing = [host.actor.close.remote() for host in hosts]
        left = []
        for host, answer in zip(hosts, closing):
            try:
                left.append(ray.get(answer, timeout=CLOSE_TIMEOUT_S))
            except Exception as exc:  # a host that died meanwhile took its sandboxes with it
                log.info("%s: could not close: %s", host.label, _cause(exc))
                left.append(-1)
        return left

    def __enter__(self) -> RayExecutionService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hosts ---------------------------------------------------------------------------------
    def _connect_hosts(self, sandbox: SandboxChoice) -> list[_Host]:
        """An actor on every live node offering ``taco_sandbox_host``, checked against the driver's
        sandbox identity, with its pool open."""
        nodes = [node for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get(HOST_RESOURCE, 0) >= 1]
        if not nodes:
            raise ClusterUnavailable(
                f"no node of the Ray cluster offers the {HOST_RESOURCE} resource: start each sandbox node with "
                f"ray start ... --resources '{{\"{HOST_RESOURCE}\": 1}}'"
            )
        expected = SandboxIdentity.of(sandbox)
        actor_class: Any = ray.remote(SandboxHost)  # Ray's handles are typed loosely: Any here
        candidates: list[tuple[dict, Any, int, int]] = []
        for node in nodes:
            slots = sandbox.workers or max(1, int(node["Resources"].get("CPU", 1)))
            cap = slots + extra_jobs(slots)
            actor = actor_class.options(
                num_cpus=0,
                resources={HOST_RESOURCE: 1},
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                max_concurrency=cap + 4,  # its jobs, plus describe/open/stats/close beside them
                max_restarts=0,
            ).remote(replace(sandbox, workers=slots))
            candidates.append((node, actor, slots, cap))
        hosts: list[_Host] = []
        reasons: list[str] = []
        opening = []
        for node, actor, slots, cap in candidates:
            where = f"node {node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
            try:
                description: HostDescription = ray.get(actor.describe.remote(), timeout=HOST_READY_TIMEOUT_S)
            except Exception as exc:
                reasons.append(f"{where}: no answer ({exc.__class__.__name__}: {exc})")
                ray.kill(actor)
                continue
            differences = description.identity.differences(expected)
            if differences:
                reason = f"host {description.label} refused: its sandboxes differ from the driver's ({'; '.join(differences)})"
                reasons.append(reason)
                self._say(reason)
                self._refused += 1
                ray.kill(actor)
                continue
            opening.append((_Host(description, actor, slots, cap), actor.open.remote()))
        for host, opened in opening:
            try:
                host.slots = ray.get(opened, timeout=HOST_READY_TIMEOUT_S)
                host.cap = host.slots + extra_jobs(host.slots)
            except Exception as exc:
                reason = f"host {host.label} cannot run sandboxes: {_cause(exc)}"
                reasons.append(reason)
                self._say(reason)
                self._refused += 1
                ray.kill(host.actor)
                continue
            hosts.append(host)
        if not hosts:
            raise ClusterUnavailable("no usable sandbox host in the Ray cluster: " + " | ".join(reasons))
        self._say(f"cluster: {len(hosts)} sandbox host(s), {sum(h.slots for h in hosts)} sandboxes")
        return hosts

    def _tests_token(self, suite: TestSuite) -> int:
        """The token of *suite* (under the lock), put in the object store the first time it is seen.
        Keyed by identity: the session's jobs of one problem share its suite object."""
        known = self._suites.get(id(suite))
        if known is None:
            known = self._suites[id(suite)] = (suite, len(self._suites), ray.put(suite))
        return known[1]

    # -- dispatch (under the lock) ---------------------------------------------------------------
    def _dispatch(self) -> None:
        """Send the best waiting jobs to the hosts with room, the emptiest first."""
        if self._closed:
            return
        now = time.monotonic()
        while self._waiting:
            open_hosts = [host for host in self._hosts if host.takes_jobs(now)]
            if not open_hosts:
                return
            _, number = self._waiting[0]
            ticket = self._tickets.get(number)
            if ticket is None:  # delivered meanwhile
                heapq.heappop(self._waiting)
                continue
            fresh = [host for host in open_hosts if host.label not in ticket.failed_on] or open_hosts
            host = min(fresh, key=lambda h: len(h.in_flight) / h.cap)
            heapq.heappop(self._waiting)
            self._send(host, number, ticket)

    def _send(self, host: _Host, number: int, ticket: _Ticket) -> None:
        attempt = next(self._attempts)
        if ticket.tests in host.tests_sent:  # the host has them: a reference per call costs Ray bookkeeping
            host.tests_sent.move_to_end(ticket.tests)
            references = []
        else:
            references = [self._suites[id(ticket.job.suite)][2]]
            host.tests_sent[ticket.tests] = None
            while len(host.tests_sent) > SUITES_KEPT // 2:
                host.tests_sent.popitem(last=False)
        answer = host.actor.run.remote(HostJob.of(ticket.job, ticket.tests), references)
        host.in_flight[attempt] = number
        answer.future().add_done_callback(lambda future: self._arrived(host, attempt, future))

    def _requeue(self, number: int) -> None:
        ticket = self._tickets.get(number)
        if ticket is not None:
            self._requeued += 1
            heapq.heappush(self._waiting, (ticket.priority, number))

    # -- results ---------------------------------------------------------------------------------
    def _arrived(self, host: _Host, attempt: int, future: Future) -> None:
        # On a Ray thread: hand over and return at once.
        with self._results_ready:
            self._results.append((host, attempt, future))
            self._results_ready.notify()

    def _collect(self) -> None:
        while True:
            with self._results_ready:
                self._results_ready.wait_for(lambda: self._results or self._stop.is_set())
                if not self._results:
                    return
                batch, self._results = self._results, []
            for host, attempt, future in batch:
                self._settle(host, attempt, future)

    def _settle(self, host: _Host, attempt: int, future: Future) -> None:
        result: SampleResult | None = None
        host_died = False
        try:
            result = future.result()
        except ray.exceptions.RayTaskError as exc:  # the host's code raised: this host failed the job
            log.warning("%s: a job failed on the host: %s", host.label, _cause(exc))
        except Exception as exc:  # the actor or its node is gone
            host_died = True
            log.warning("%s: host lost: %s", host.label, _cause(exc))
        ready: list[tuple[_Ticket, SampleResult]] = []
        with self._lock:
            number = host.in_flight.pop(attempt, None)
            ticket = self._tickets.get(number) if number is not None else None
            if host_died:
                if number is not None:  # this attempt's job goes back with the host's others
                    host.in_flight[attempt] = number
                ready = self._lose(host)
            elif number is not None and ticket is not None:  # else: answered already (dedup), or given up on
                if result is not None and result.status is SampleStatus.JUDGED:
                    host.infra_in_a_row = 0
                    ready = [(self._tickets.pop(number), result)]
                else:
                    ready = self._after_infrastructure_error(host, number, ticket, result)
            self._delivered += len(ready)
            self._dispatch()
            if not self._tickets:
                self._drained.notify_all()
        for ticket, outcome in ready:
            ticket.deliver(outcome)

    def _after_infrastructure_error(
        self, host: _Host, number: int, ticket: _Ticket, result: SampleResult | None
    ) -> list[tuple[_Ticket, SampleResult]]:
        """*host* could not run the job (under the lock): another host tries it while one has not
        failed it; else its result is the infrastructure error."""
        host.infra_in_a_row += 1
        alive = sum(h.alive for h in self._hosts)
        if host.infra_in_a_row >= BENCH_AFTER_START_FAILURES and alive > 1 and not self._closed:
            host.out_until = time.monotonic() + BENCH_COOL_DOWN_S
            host.infra_in_a_row = 0
            self._say(f"host {host.label} keeps failing jobs: out of rotation for {BENCH_COOL_DOWN_S:.0f}s")
        ticket.failed_on.add(host.label)
        untried = [h for h in self._hosts if h.alive and h.label not in ticket.failed_on]
        if untried and not self._closed:
            self._requeue(number)
            return []
        final = result if result is not None else ticket.job.infrastructure_error(f"host {host.label} failed the job")
        return [(self._tickets.pop(number), final)]

    def _lose(self, host: _Host) -> list[tuple[_Ticket, SampleResult]]:
        """*host* is gone (under the lock): its jobs in flight go back on the queue.  With no host
        left, every job ends as an infrastructure error (returned, for delivery outside the lock)."""
        if host.alive:
            host.alive = False
            self._lost += 1
            self._say(f"host {host.label} lost: {len(host.in_flight)} job(s) in flight sent to the other hosts")
        for number in host.in_flight.values():
            self._requeue(number)
        host.in_flight.clear()
        if any(h.alive for h in self._hosts):
            return []
        self._waiting.clear()
        ended = [(ticket, ticket.job.infrastructure_error("every sandbox host was lost")) for ticket in self._tickets.values()]
        self._tickets.clear()
        return ended

    def _deliver(self, ticket: _Ticket, result: SampleResult) -> None:
        with self._lock:
            self._delivered += 1
        ticket.deliver(result)

    def _refresh_stats(self) -> None:
        """Every second: the hosts' pool figures, and a dispatch round (a host whose time out of
        rotation has ended takes jobs again even when no result arrives to trigger one)."""
        while not self._stop.wait(STATS_INTERVAL_S):
            with self._lock:
                self._dispatch()
            with self._lock:
                alive = [host for host in self._hosts if host.alive]
            asked = [(host, host.actor.stats.remote()) for host in alive]
            for host, answer in asked:
                try:
                    stats = ray.get(answer, timeout=STATS_INTERVAL_S * 5)
                except Exception:  # a host dying shows in its jobs' answers
                    continue
                with self._lock:
                    host.stats = stats

    def _shutdown_ray(self) -> None:
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


def _unreachable(address: str, timeout_s: float = 10.0) -> str | None:
    """Why nothing answers at a HOST:PORT *address* (None when something does, or for other forms
    such as ray:// and "auto", which Ray resolves itself)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__
    return None


def _cause(exc: BaseException) -> str:
    """The first line of what went wrong on a host (Ray wraps it in its own text)."""
    text = str(getattr(exc, "cause", None) or exc)
    return text.strip().splitlines()[-1][:300] if text.strip() else exc.__class__.__name__
