"""What importing the command and the library costs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("docker", "torch", "transformers")


def heavy_modules_after(statement: str) -> list[str]:
    probe = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "statement",
    [
        # `harness generate` must run on GPU machines without the Docker SDK; `evaluate` without torch.
        "import harness.cli",
        # A library user pays for what they use: importing the package loads none of them ...
        "import harness",
        # ... and neither does any public name (the flows import torch and Docker's SDK only when they
        # generate, or open Docker sandboxes).
        "import harness\nfor name in harness.__all__: getattr(harness, name)",
    ],
)
def test_import_loads_neither_docker_nor_torch(statement):
    assert heavy_modules_after(statement) == []


def test_import_harness_loads_nothing_of_the_package_yet():
    probe = "import sys, harness; print(sorted(m for m in sys.modules if m.startswith('harness')))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['harness']"
