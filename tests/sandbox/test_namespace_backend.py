"""The namespace backend (harness/namespace_backend.py) with real namespaces and real processes.

Verdicts must equal the Docker backend's on the same jobs (tests marked ``docker``), and every layer
of isolation it claims is checked from inside a sandbox and, where the host can see it, from
outside: no network, nothing writable but the scratch places, no host files beyond the system
directories, scratch wiped and processes killed between jobs, PID 1 and uid 65534, the memory
limit, no process, cgroup or mount left on the host.  Needs root; fails (does not skip) without
namespace support, like the Docker tests without a daemon.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from bench.variants import wrong_variants
from harness.data.problems import load_problems
from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob, RunLimits, run_job
from harness.judging.verdicts import SampleStatus
from harness.sandbox.namespace.backend import NamespaceBackend, namespace_sandbox_unavailable
from harness.sandbox.namespace.cgroups import CGROUP_PREFIX, CGROUP_ROOT, cgroup_parent
from harness.sandbox.namespace.root import SANDBOX_ENV, inside_path, root_mount_point
from harness.sandbox.pool import SandboxPool
from tests.conftest import SHARED_DATA, shared_file
from tests.support.adversarial import ATTACKS, CANARY, CANARY_SUITE
from tests.support.faults import map_while_killing
from tests.support.truth_tables import CALL_CASES, CALL_SUITE, STDIN_CASES, STDIN_SUITE

REPO = Path(__file__).resolve().parents[2]
READ = "a, b = map(int, input().split())\n"


def _host_mounts() -> set[tuple[str, ...]]:
    """The host's mount table as (mount point, options, type, source), minus what Docker containers
    of other test runs add and remove meanwhile."""
    mounts = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fields = left.split()
        point = fields[4]
        if point.startswith(("/var/lib/docker", "/run/docker", "/run/netns")) or "/docker/" in point:
            continue
        mounts.add((point, fields[5], *right.split()[:2]))
    return mounts


@pytest.fixture(scope="module")
def host_mounts() -> set[tuple[str, ...]]:
    return _host_mounts()


@pytest.fixture(scope="module")
def backend(host_mounts) -> NamespaceBackend:
    reason = namespace_sandbox_unavailable()
    if reason is not None:
        pytest.fail(f"namespace sandboxes cannot run here: {reason}")
    return NamespaceBackend(capacity=2)


@pytest.fixture(scope="module")
def ns_pool(backend):
    with SandboxPool(backend) as pool:
        yield pool


@pytest.fixture
def sandbox(backend):
    """One sandbox used directly, for checks that need consecutive jobs in the same sandbox."""
    box = backend.start()
    yield box
    box.close()


def _session_pids(session: str) -> dict[int, int]:
    """unshare pid -> the namespace's PID 1 (its child) for every sandbox of *session* on the host."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if not argv or not argv[0].endswith(b"unshare") or not any(session.encode() in a for a in argv):
                continue
            children = Path(f"/proc/{entry}/task/{entry}/children").read_text().split()
        except OSError:
            continue
        if children:
            found[int(entry)] = int(children[0])
    return found


def _namespace_members(init_pid: int) -> list[int]:
    """Every host process in the PID namespace of *init_pid* (itself included)."""
    target = os.readlink(f"/proc/{init_pid}/ns/pid")
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == target:
                    members.append(int(entry))
            except OSError:
                pass
    return members


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _report(code: str, stdin: str = "", timeout: float = 10.0) -> ExecutionJob:
    """A stdin job whose program reports something: the host reads it from the verdict detail
    (the program prints to stderr and exits 1; a runtime error's detail is its stderr)."""
    suite = parse_input_output({"inputs": [stdin], "outputs": ["-"]})
    return ExecutionJob(suite, "import sys\n" + code + "\nsys.stderr.flush()\nsys.exit(1)\n", RunLimits(timeout_s=timeout))


def _reported(result) -> dict:
    """The JSON object a _report program printed last on stderr."""
    assert result.status is SampleStatus.JUDGED, result.detail
    lines = [line for line in result.detail.splitlines() if line.startswith("REPORT ")]
    assert lines, result.detail
    return json.loads(lines[-1][len("REPORT ") :])


# ---------------------------------------------------------------------------------------------
# verdicts equal to the Docker backend's

ATTACK_NAMES = {
    "stdin": [
        "double-fork daemon that outlives the test", "kill pid 1 / parent / everyone", "exec a shell",
        "abort (SIGABRT, no core)", "prlimit the runner", "ptrace-style read of the runner's memory", "setuid to root",
        "exhaust file descriptors", "write to /", "overwrite the runner", "fill /tmp, then answer",
        "files outside the work dir", "POSIX message queue", "SysV shared memory (outlives processes)", "network socket",
        "listening socket", "output.txt as a symlink to the runner's environment", "print a lone surrogate",
        "close stdout, then print",
    ],
    "call": ["kill pid 1", "forge an oversized result frame", "sys.exit(0)", "deep recursion to segfault (C stack)",
             "raise KeyboardInterrupt"],
}  # fmt: skip
# Run with nothing else in the pool: without cgroup v2 the process limit is RLIMIT_NPROC of uid 65534,
# shared by all sandboxes of the host, so a fork bomb makes forks fail in the other sandboxes too.
ALONE_ATTACK = ("stdin", "fork bomb")


def _comparison_jobs() -> tuple[list[tuple[str, ExecutionJob]], list[tuple[str, ExecutionJob]]]:
    """(jobs run together, jobs run one at a time afterwards).

    No verdict here may depend on how busy the machine is: a program that ends by itself must end far
    from its deadline in both backends, or the comparison fails whenever one backend crosses it and the
    other does not.  Measured per test (up to three runs of a program), the worst in either backend over
    several runs on a 2-core machine loaded with two busy loops and other test suites (load average
    10-50): the truth tables 1.0 s against 4 s, the TACO rows 1.3 s against 4 s, the attacks 0.6 s
    against 2 s, the sleep under the deadline 0.33 s against 1 s (a sleeper needs little CPU: 24 ms
    over its sleep at most).  Attacks that need seconds to end, such as the C-stack segfault whose
    verdict flipped to a timeout under load (2.2 s against 2 s; 5 s in a sandbox of its own), carry
    ROOMY_TIMEOUT (tests/support/adversarial.py).  The other jobs run into their deadline on purpose,
    which load only delays."""
    jobs = []
    # Truth tables, without the two slow ones (their deadlines are exercised by the short jobs below).
    slow = {"sleep 3.5s", "infinite loop"}
    jobs += [(f"stdin {n}", ExecutionJob(STDIN_SUITE, code)) for n, (code, _) in STDIN_CASES.items() if n not in slow]
    jobs += [(f"call {n}", ExecutionJob(CALL_SUITE, code)) for n, (code, _) in CALL_CASES.items() if n not in slow]
    short = RunLimits(timeout_s=1.0)
    jobs += [
        ("stdin timeout", ExecutionJob(STDIN_SUITE, "while True:\n    pass", short)),
        (
            "stdin sleep under the deadline",
            ExecutionJob(STDIN_SUITE, "import time\ntime.sleep(0.3)\n" + READ + "print(a + b)", short),
        ),
        ("call timeout", ExecutionJob(CALL_SUITE, "def add(a, b):\n    while True:\n        pass", short)),
    ]
    by_name = {(a.mode, a.name): a for a in ATTACKS}

    def attack_job(mode: str, name: str) -> tuple[str, ExecutionJob]:
        attack = by_name[(mode, name)]
        return f"attack {mode} {name}", ExecutionJob(attack.suite, attack.code, RunLimits(timeout_s=attack.timeout))

    jobs += [attack_job(mode, name) for mode, names in ATTACK_NAMES.items() for name in names]
    # Real TACO rows (stdin and call-based), their first 15 tests: two reference solutions and wrong
    # variants of the first (wrong on some tests, exit 1 after or before the output, compile error).
    for problem in load_problems(shared_file("taco_train_sample_original_fields.jsonl")):
        solutions = problem.row["solutions"]
        solutions = json.loads(solutions) if isinstance(solutions, str) else solutions
        suite = replace(problem.tests, cases=problem.tests.cases[:15])
        programs = [*solutions[:2], *wrong_variants(solutions[0], suite)]
        jobs += [(f"taco {problem.task_id} program {i}", ExecutionJob(suite, code)) for i, code in enumerate(programs)]
    return jobs, [attack_job(*ALONE_ATTACK)]


@pytest.mark.docker
def test_same_verdicts_as_docker(pool, ns_pool):
    together, alone = _comparison_jobs()
    named = together + alone
    docker, namespace = [], []
    for batch in [together] + [[job] for job in alone]:
        docker += pool.map([job for _, job in batch])
        namespace += ns_pool.map([job for _, job in batch])
    differences = [
        # The programs' seconds (all tests) against the limit per test show a verdict the load decided.
        (
            name,
            d.status.value,
            d.taco(),
            n.status.value,
            n.taco(),
            n.detail[-300:],
            f"{d.program_seconds:.1f}s and {n.program_seconds:.1f}s, limit {job.limits.timeout_s:g}s per test",
        )
        for (name, job), d, n in zip(named, docker, namespace)
        if (d.status, d.verdicts) != (n.status, n.verdicts)
    ]
    assert not differences, differences
    assert len(named) >= 100
    assert all(r.status is SampleStatus.JUDGED for r in namespace)
    seen = {repr(v) for r in namespace for v in r.taco()}
    assert seen >= {"True", "False", "-1", "-2", "-3"}  # every kind of verdict was compared


# ---------------------------------------------------------------------------------------------
# isolation


def test_environment_is_the_dockerfile_one(ns_pool, backend):
    dockerfile = (REPO / "sandbox_image" / "Dockerfile").read_text()
    block = re.search(r"^ENV (.*?)(?=^\S)", dockerfile, re.S | re.M).group(1)
    declared = dict(re.findall(r"(\w+)=(\S+)", block))
    assert declared == SANDBOX_ENV
    os.environ["TACO_NAMESPACE_TEST_SECRET"] = "host-only"  # the host's environment never gets in
    try:
        report = _reported(
            ns_pool.run(_report("import os, json\nprint('REPORT ' + json.dumps(dict(os.environ)), file=sys.stderr)"))
        )
    finally:
        del os.environ["TACO_NAMESPACE_TEST_SECRET"]
    path = report.pop("PATH")
    assert report == SANDBOX_ENV
    assert path.split(":")[0] == inside_path(os.path.dirname(backend.interpreter.path))  # as the sandbox sees it


def test_runner_is_pid_1_and_programs_run_as_nobody_without_capabilities(ns_pool):
    code = (
        "import os, json\n"
        "def status(pid):\n"
        "    return dict(line.split(':\\t', 1) for line in open(f'/proc/{pid}/status').read().strip().splitlines())\n"
        "me, runner, parent = status('self'), status(1), status(os.getppid())\n"
        "print('REPORT ' + json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(), 'ppid': os.getppid(),\n"
        "    'pid': os.getpid(), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), 'caps': me['CapEff'],\n"
        "    'bounding': me['CapBnd'], 'nnp': me['NoNewPrivs'], 'runner_uid': runner['Uid'].split()[0],\n"
        "    'runner_caps': runner['CapEff'],\n"
        "    'runner_name': runner['Name'], 'parent_uid': parent['Uid'].split()[0], 'parent_ppid': parent['PPid'],\n"
        "    'parent_caps': parent['CapEff']}), file=sys.stderr)\n"
    )
    report = _reported(ns_pool.run(_report(code)))
    assert (report["uid"], report["gid"], report["groups"]) == (65534, 65534, [])
    # The program's parent is the runner's fork server (forked from PID 1, root like it); nothing else runs.
    assert report["pids"][0] == 1 and sorted(report["pids"][1:]) == sorted([report["ppid"], report["pid"]]), report
    assert report["ppid"] != 1 and report["parent_ppid"] == "1" and report["parent_uid"] == "0", report
    assert int(report["parent_caps"], 16) == 0xEA, report
    assert report["caps"] == "0000000000000000" and report["nnp"] == "1"
    assert report["runner_uid"] == "0" and report["runner_name"].startswith("python")
    # The runner keeps exactly setuid, setgid, kill, dac_override and fowner, as in its container.
    assert int(report["runner_caps"], 16) == int(report["bounding"], 16) == 0xEA


def test_no_network(ns_pool):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:  # the host's own addresses too, not only loopback
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except socket.gaierror:
        own = set()
    addresses = ["127.0.0.1", *sorted(own - {"127.0.0.1"})]
    try:
        for address in addresses:  # reachable from the host itself
            socket.create_connection((address, port), timeout=2).close()
        code = (
            "import json, socket\n"
            "port, *addresses = input().split()\n"
            "reached = []\n"
            "for address in addresses:\n"
            "    try:\n"
            "        socket.create_connection((address, int(port)), timeout=1)\n"
            "        reached.append(address)\n"
            "    except OSError:\n"
            "        pass\n"
            "names = [name for _, name in socket.if_nameindex()]\n"
            "print('REPORT ' + json.dumps({'reached': reached, 'interfaces': names, 'routes': open('/proc/net/route').read().splitlines()[1:]}), file=sys.stderr)\n"
        )
        report = _reported(ns_pool.run(_report(code, f"{port} {' '.join(addresses)}\n")))
    finally:
        listener.close()
    assert report == {"reached": [], "interfaces": ["lo"], "routes": []}


def test_nothing_writable_but_scratch_and_no_host_files(ns_pool, backend):
    targets = ["/x", "/usr/x", "/etc/x", "/opt/taco-runner/x", "/dev/x", "/proc/x", "/sys/x", "/root/x",
               "/tmp/x", "/tmp/work/x", "/dev/shm/x"]  # fmt: skip
    targets += [os.path.join(d, "taco-namespace-test-x") for d in backend.interpreter.dirs]
    hidden = [str(Path(__file__).resolve()), str(SHARED_DATA), "/home", "/var", "/run"]
    code = (
        "import json, os\n"
        "targets, hidden = json.loads(input())\n"
        "written = []\n"
        "for path in targets:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        written.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "mounts = [line.split(' - ')[0].split() for line in open('/proc/self/mountinfo')]\n"
        "writable = sorted(fields[4] for fields in mounts if 'rw' in fields[5].split(','))\n"
        "print('REPORT ' + json.dumps({'written': written, 'seen': [p for p in hidden if os.path.exists(p)], 'rw': writable}), file=sys.stderr)\n"
    )
    report = _reported(ns_pool.run(_report(code, json.dumps([targets, hidden]) + "\n")))
    assert report["written"] == ["/tmp/x", "/tmp/work/x", "/dev/shm/x"]
    assert report["seen"] == []
    devices = {f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")}
    assert set(report["rw"]) - devices <= {"/tmp", "/dev/shm", "/dev/mqueue", "/proc"}, report["rw"]
    assert {"/tmp", "/dev/shm", "/proc"} <= set(report["rw"])
    for path in targets:  # and nothing reached the host's files
        if not path.startswith(("/tmp", "/dev/shm", "/proc", "/sys")):
            assert not os.path.exists(path), path


def test_scratch_wiped_and_processes_killed_between_jobs(sandbox):
    first = _report(
        "import json, os, time\n"
        "open('/tmp/left-in-tmp', 'w').write('x')\n"
        "open('/tmp/work/left-in-work', 'w').write('x')\n"
        "open('/dev/shm/left-in-shm', 'w').write('x')\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        for fd in (0, 1, 2):\n"
        "            os.close(fd)\n"
        "        time.sleep(120)\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit() and p not in ('1', str(os.getpid()), str(os.getppid()))]\n"
        "print('REPORT ' + json.dumps({'others': others}), file=sys.stderr)\n"
    )
    report = _reported(run_job(sandbox, first))
    assert report["others"], "the daemon did not start, so the test proves nothing"
    # From outside: the namespace holds only its PID 1 again, and PID 1's fork server (with no child).
    fork_server = _children(sandbox.init_pid)
    assert len(fork_server) == 1 and _children(fork_server[0]) == [], fork_server
    assert sorted(_namespace_members(sandbox.init_pid)) == sorted([sandbox.init_pid, *fork_server])
    second = _report(
        "import json, os\n"
        "print('REPORT ' + json.dumps({'tmp': sorted(os.listdir('/tmp')), 'work': sorted(os.listdir('/tmp/work')),\n"
        "    'shm': os.listdir('/dev/shm'), 'pids': sorted(p for p in os.listdir('/proc') if p.isdigit())}), file=sys.stderr)\n"
    )
    report = _reported(run_job(sandbox, second))
    assert report["tmp"] == [".runner", "work"] and report["work"] == ["solution.py"] and report["shm"] == []
    assert len(report["pids"]) == 3 and "1" in report["pids"]  # the runner, its fork server, the program


def test_memory_limit():
    backend = NamespaceBackend(capacity=1, memory_mb=512)
    suite = parse_input_output({"inputs": ["100\n", "1024\n"], "outputs": ["ok\n", "ok\n"]})
    allocate = "x = b' ' * (int(input()) << 20)\nprint('ok')"
    box = backend.start()
    try:
        if box.cgroup is not None:
            assert (box.cgroup / "memory.max").read_text().strip() == str(512 << 20)
            assert (box.cgroup / "pids.max").read_text().strip() == "256"
        result = run_job(box, ExecutionJob(suite, allocate))
        # 100 MB fits; 1 GB is refused (RLIMIT_AS: MemoryError) or OOM-killed (cgroup): a runtime error.
        assert result.taco() == [True, -3], result.detail
        if box.cgroup is not None:
            events = dict(line.split() for line in (box.cgroup / "memory.events").read_text().splitlines())
            assert int(events["oom_kill"]) >= 1
        assert run_job(box, ExecutionJob(CANARY_SUITE, CANARY, RunLimits(timeout_s=10.0))).taco() == [True]  # runner unharmed
    finally:
        box.close()


def test_killed_sandboxes_are_replaced_and_jobs_retried():
    suite = parse_input_output({"inputs": [f"{i} {i}\n" for i in range(100)], "outputs": [f"{2 * i}\n" for i in range(100)]})
    codes = [READ + "print(a + b)", READ + "print(a * b)"]
    jobs = [ExecutionJob(suite, codes[i % 2], RunLimits(timeout_s=4.0)) for i in range(30)]
    killing = NamespaceBackend(capacity=2)
    with SandboxPool(killing) as pool:

        def kill_one() -> str | None:
            # From outside, as an OOM killer or an operator would: the namespace's PID 1 (the runner).
            running = _session_pids(killing.session)
            if not running:
                return None
            init_pid = sorted(running.values())[0]
            try:
                os.kill(init_pid, 9)
            except ProcessLookupError:
                return None
            return str(init_pid)

        results, kills, stats = map_while_killing(pool, jobs, kill_one, interval_s=1.0)
    assert len(kills) >= 2, "the test did not manage to kill sandboxes"
    assert stats.sandbox_failures >= 1
    assert all(r.status is SampleStatus.JUDGED for r in results), [
        r.detail for r in results if r.status is not SampleStatus.JUDGED
    ]
    for i, result in enumerate(results):
        assert result.taco() == ([True] * 100 if i % 2 == 0 else [n in (0, 2) for n in range(100)])


def test_identity():
    base = NamespaceBackend.identity_for(memory_mb=2048)
    assert base.startswith("namespace-") and "memory=2048MB" in base and re.search(r"python3\.\d+\.\d+ ", base)
    assert NamespaceBackend.identity_for(memory_mb=1024) != base
    assert NamespaceBackend(capacity=1).sandbox_id == base
    assert ("limits=cgroup" in base) == (cgroup_parent() is not None)


def test_unavailable_reasons():
    assert "/nonexistent/python3" in namespace_sandbox_unavailable(python="/nonexistent/python3")
    # Not root: checked in a real unprivileged process (the system Python, which nobody may run), on a
    # copy of the package that nobody may read (the checkout may sit in a 0700 `mktemp -d`).
    import shutil
    import subprocess
    import tempfile

    readable = Path(tempfile.mkdtemp(prefix="taco-ns-unprivileged-"))
    try:
        readable.chmod(0o755)
        for package in ("harness", "sandbox_image"):
            shutil.copytree(REPO / package, readable / package, ignore=shutil.ignore_patterns("__pycache__"))
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
             "import sys; sys.path.insert(0, sys.argv[1]); from harness.sandbox.namespace.backend import namespace_sandbox_unavailable as f; print(f())",
             str(readable)],
            capture_output=True, text=True, timeout=60, cwd="/",
        )  # fmt: skip
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert "need root" in done.stdout, done.stderr


def test_closing_leaves_no_process_cgroup_or_mount(host_mounts):
    backend = NamespaceBackend(capacity=3)
    pool = SandboxPool(backend)
    suite = parse_input_output({"inputs": ["1 2\n"], "outputs": ["3\n"]})
    daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n" + READ + "print(a + b)"
    results = pool.map([ExecutionJob(suite, READ + "print(a + b)")] * 6 + [ExecutionJob(suite, daemon, RunLimits(timeout_s=1.0))])
    assert [r.taco() for r in results] == [[True]] * 6 + [[-1]]
    sandboxes = _session_pids(backend.session)
    assert len(sandboxes) >= 2
    during = Path("/proc/self/mountinfo").read_text()
    assert not re.search(r" taco-(root|tmp|shm|dev) ", during), "a sandbox mount reached the host"
    cgroups = sorted(CGROUP_ROOT.glob(f"{CGROUP_PREFIX}{backend.session}-*")) if cgroup_parent() else []
    if cgroup_parent() is not None:
        assert len(cgroups) == len(sandboxes)
    pool.close()
    left = [pid for pair in sandboxes.items() for pid in pair if _alive(pid)]
    assert left == [] and _session_pids(backend.session) == {}
    assert [c for c in cgroups if c.exists()] == []
    assert _host_mounts() == host_mounts


def test_the_new_root_is_built_where_it_hides_no_source():
    # A checkout or virtualenv under /tmp (a `mktemp -d` clone) must stay visible while the root is built.
    assert root_mount_point(["/usr", "/opt/torch/.venv/bin"]) == "/tmp"
    assert root_mount_point(["/usr", "/tmp/tmp.abc/sandbox_image", "/tmp/tmp.abc/.venv/bin"]) not in ("/tmp", "/usr")
    chosen = root_mount_point(["/tmp/x", "/mnt/y"])
    assert chosen not in ("/tmp", "/mnt") and os.path.isdir(chosen)


def test_an_interpreter_under_tmp_still_runs(tmp_path):
    # tmp_path is under /tmp, which every sandbox replaces with its own scratch: the venv is shown
    # elsewhere, and programs still run on it (with the base interpreter's numpy).
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    suite = parse_input_output({"inputs": ["1 2\n"], "outputs": ["3\n"]})
    with SandboxPool(NamespaceBackend(capacity=1, python=str(venv / "bin" / "python"))) as pool:
        result = pool.run(ExecutionJob(suite, READ + "print(a + b)", RunLimits(timeout_s=10.0)))
    assert result.taco() == [True], result.detail
