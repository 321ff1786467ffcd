"""The runner's fork server (sandbox_image/taco_runner/forkserver.py), in real containers: it is every
program's parent, out of the programs' reach, the one process that forks during a job (the runner
takes no copy-on-write faults per test), never counted in a timeout's figures, and when it is lost
the job fails as an infrastructure error, never as a verdict.

Some checks look at the container's processes from this machine's /proc (the runner's page faults,
its children): they need the Docker daemon on this machine, as `make test` runs it."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.data.testcases import parse_input_output
from harness.errors import SandboxError
from harness.evaluation.execution import ExecutionJob, RunLimits, run_job
from harness.sandbox.docker.backend import DockerBackend
from sandbox_image.taco_runner.protocol import CaseFinished, Output, TimedOut
from tests.support.raw_jobs import run_stdin_job


@dataclass
class _Box:
    """One sandbox, and its runner as this machine sees it."""

    sandbox: object
    runner_pid: int  # on this machine

    def fork_server_pid(self) -> int:
        children = Path(f"/proc/{self.runner_pid}/task/{self.runner_pid}/children").read_text().split()
        assert len(children) == 1, f"the runner has children {children}: only its fork server is expected"
        return int(children[0])

    def runner_page_faults(self) -> int:
        fields = Path(f"/proc/{self.runner_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[7])  # minflt


@pytest.fixture
def box(docker_client, sandbox_image):
    sandbox = DockerBackend(sandbox_image, client=docker_client, capacity=1).start()
    try:
        sandbox.container.reload()
        pid = int(sandbox.container.attrs["State"]["Pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
        if b"taco_runner" not in cmdline:
            pytest.fail(f"the sandbox's runner is not process {pid} of this machine: is the Docker daemon remote?")
        yield _Box(sandbox, pid)
    finally:
        sandbox.close()


def _raw_stdin_job(sandbox, code: str, inputs: tuple[str, ...], timeout: float = 4.0) -> list[CaseFinished]:
    """Send one stdin job as the evaluator would and return its CaseFinished messages."""
    messages = run_stdin_job(sandbox, code, inputs, timeout=timeout, wait=120.0)
    return [message for message in messages if isinstance(message, CaseFinished)]


_PARENT_REPORT = (
    "import json, os\n"
    "input()\n"
    "parent = os.getppid()\n"
    "status = dict(line.split(':\\t', 1) for line in open(f'/proc/{parent}/status').read().splitlines())\n"
    "def refused(act):\n"
    "    try:\n"
    "        act()\n"
    "    except PermissionError:\n"
    "        return True\n"
    "    return False\n"
    "print(json.dumps({'parent': parent, 'its_parent': status['PPid'].strip(), 'uid': status['Uid'].split()[0],\n"
    "    'kill': refused(lambda: os.kill(parent, 0)), 'environ': refused(lambda: open(f'/proc/{parent}/environ').read()),\n"
    "    'mem': refused(lambda: open(f'/proc/{parent}/mem', 'rb').read(1)),\n"
    "    'oom': [open(f'/proc/{p}/oom_score_adj').read().strip() for p in ('self', parent, 1)]}))\n"
)


def test_every_program_is_a_child_of_one_fork_server_out_of_its_reach(box):
    reports = []
    for _ in range(2):  # two jobs: the same server serves every job of a sandbox
        cases = _raw_stdin_job(box.sandbox, _PARENT_REPORT, ("a\n", "b\n", "c\n"))
        assert [c.case_index for c in cases] == [0, 1, 2]
        assert all(isinstance(c.outcome, Output) for c in cases), cases
        reports += [json.loads(c.outcome.text) for c in cases]
    assert len({r["parent"] for r in reports}) == 1, reports
    # Forked from the runner (PID 1), root like it, and a program may neither signal it nor read it.
    assert all(r["its_parent"] == "1" and r["uid"] == "0" for r in reports), reports
    assert all(r["kill"] and r["environ"] and r["mem"] for r in reports), reports
    # The program is the OOM killer's first choice; the server lends it that score only while it forks.
    assert all(r["oom"][0] == "1000" and r["oom"][1] == r["oom"][2] != "1000" for r in reports), reports


def test_the_runner_takes_no_copy_on_write_faults_per_test(box):
    # Before the fork server, the runner forked every test and then wrote about 200 pages that each
    # fork had made copy-on-write: 200 page faults per test.  Now it never forks during a job.
    server = box.fork_server_pid()
    _raw_stdin_job(box.sandbox, "print(2 * int(input()))", tuple(f"{i}\n" for i in range(50)))  # warm
    tests = 400
    before = box.runner_page_faults()
    cases = _raw_stdin_job(box.sandbox, "print(2 * int(input()))", tuple(f"{i}\n" for i in range(tests)))
    faults = box.runner_page_faults() - before
    assert [c.outcome for c in cases] == [Output(f"{2 * i}\n") for i in range(tests)]
    assert faults < 10 * tests, f"{faults} page faults in the runner over {tests} tests"
    assert box.fork_server_pid() == server  # still its only child, and the same one


def test_a_timeout_s_figures_leave_the_fork_server_out(box):
    # The server has forked 600 runs (its own CPU time: a good fraction of a second) when the last
    # test sleeps past its deadline: the figures are the sleeping program's, a few ms of CPU at most.
    code = "import time\nif input() == 'sleep':\n    time.sleep(30)\nprint('ok')\n"
    cases = _raw_stdin_job(box.sandbox, code, ("go\n",) * 600 + ("sleep\n",), timeout=1.0)
    last = cases[-1].outcome
    assert isinstance(last, TimedOut), last
    assert last.cpu_ms is not None and last.cpu_ms < 50, last


def test_a_lost_fork_server_is_an_infrastructure_failure_not_a_verdict(box):
    suite = parse_input_output({"inputs": ["2\n"], "outputs": ["4\n"]})
    job = ExecutionJob(suite, "print(2 * int(input()))", RunLimits(timeout_s=4.0))
    assert run_job(box.sandbox, job).passed
    os.kill(box.fork_server_pid(), signal.SIGKILL)  # from outside: no program can
    time.sleep(0.2)
    with pytest.raises(SandboxError):
        run_job(box.sandbox, job)
