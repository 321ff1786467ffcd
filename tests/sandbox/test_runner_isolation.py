"""A solution cannot see the runner's modules: ``import protocol``, ``import valuecodec`` and
``import runner`` fail as they do under a fresh ``python``, in the warm fork too, although the fork
shares the runner's ``sys.modules`` (which holds the uniquely named ``taco_runner.*``).  Real
containers.  Also: the image holds exactly the runner files its tag is computed from."""

from __future__ import annotations

import pytest

from harness.data.testcases import parse_input_output
from harness.evaluation.execution import ExecutionJob
from harness.sandbox.docker.image import context_files

RUNNER_NAMES = ("protocol", "valuecodec", "runner", "channel", "jobs", "serve")

PROBE = f"""
import importlib, sys
report = []
for name in {RUNNER_NAMES!r}:
    if name in sys.modules:
        report.append(name + ":loaded")
        continue
    try:
        importlib.import_module(name)
        report.append(name + ":importable")
    except ModuleNotFoundError:
        report.append(name + ":absent")
# Proof that the probe ran where it should: the warm fork shares the runner's modules.
report.append("warm" if "taco_runner.protocol" in sys.modules else "fresh")
"""
ABSENT = " ".join(f"{name}:absent" for name in RUNNER_NAMES)


@pytest.mark.parametrize("fresh", [False, True], ids=["warm fork", "fresh python"])
def test_a_stdin_program_cannot_import_the_runner_modules(pool, fresh):
    expected = f"{ABSENT} {'fresh' if fresh else 'warm'}"
    suite = parse_input_output({"inputs": [""], "outputs": [expected + "\n"]})
    result = pool.run(ExecutionJob(suite, PROBE + "print(' '.join(report))\n", fresh_interpreter=fresh))
    assert result.taco() == [True], result.detail


def test_a_call_based_program_cannot_import_the_runner_modules(pool):
    body = "".join("    " + line + "\n" for line in PROBE.strip().splitlines())
    code = f"def probe(x):\n{body}    return ' '.join(report)\n"
    suite = parse_input_output({"fn_name": "probe", "inputs": [[0]], "outputs": [[f"{ABSENT} warm"]]})
    result = pool.run(ExecutionJob(suite, code))
    assert result.taco() == [True], result.detail


def test_the_image_holds_exactly_the_files_its_tag_covers(docker_client, sandbox_image):
    listing = docker_client.containers.run(
        sandbox_image, ["sh", "-c", "cd /opt/taco-runner && find . -type f | sort"], remove=True, network_disabled=True
    )
    copied = sorted(line.removeprefix("./") for line in listing.decode().split())
    assert copied == sorted(name for name in context_files() if name != "Dockerfile")
