#!/usr/bin/env bash
# Everything `make demo` / `make test` / `make bench` need: a Docker daemon, a virtualenv with the
# package, and the sandbox image.  Idempotent and quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-docker.sh
if [ ! -x .venv/bin/python ]; then
  # --system-site-packages: reuse what the machine already has (numpy, torch, ...).
  if ! python3 -m venv --system-site-packages .venv 2>/dev/null; then
    rm -rf .venv
    echo "setup: installing python3-venv from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    python3 -m venv --system-site-packages .venv
  fi
fi
# torch==2.13.0 resolves to the CPU wheel these machines carry; any other spec would pull GBs of CUDA.
# A torch that is already importable (a GPU machine's) is kept.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,gpu]' 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
.venv/bin/python -c "import harness, docker, click, numpy, tqdm" \
  || { echo "setup: the package did not install" >&2; exit 1; }
.venv/bin/harness sandbox build >/dev/null
