"""What importing the command costs."""


from __future__ import annotations


def test_cli_import_loads_neither_docker_nor_torch():
    # `harness generate` must run on GPU machines without the Docker SDK; `evaluate` without torch.
    import subprocess
    import sys

    probe = "import sys, harness.cli; print(sorted(m for m in ('docker', 'torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
