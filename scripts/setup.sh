#!/usr/bin/env bash
# Everything `make demo` / `make test` / `make bench` need: a Docker daemon, a virtualenv with the
# package, and the sandbox image.  Idempotent and quick when already done.
# `setup.sh test` also installs what only the tests need: a headless chromium (Debian's, as root).
# `setup.sh test` and `setup.sh lint` also install Ray (the `ray` extra): the cluster tests run a
# real local Ray cluster, and mypy checks harness/cluster against Ray's own types.
# `setup.sh test` and `setup.sh lint` also install the static checkers (the `lint` extra: ruff, mypy,
# import-linter), which `make lint` runs before the tests in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-}"
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
extras=test,gpu
case "$purpose" in test | lint) extras="$extras,lint,ray" ;; esac
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
.venv/bin/python -c "import harness, docker, click, numpy, tqdm, matplotlib" \
  || { echo "setup: the package did not install" >&2; exit 1; }
if [[ "$extras" == *lint* ]]; then
  for tool in ruff mypy lint-imports; do
    [ -x ".venv/bin/$tool" ] || { echo "setup: $tool (the lint extra) did not install" >&2; exit 1; }
  done
fi
.venv/bin/harness sandbox build >/dev/null

# The report tests look at report.html in a real browser.  Not fatal here: the test says what is
# missing (and fails rather than skips under CI=true).
if [ "$purpose" = test ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: chromium is not installed and this is not root: install Debian's chromium for the report's browser test" >&2
  else
    echo "setup: installing chromium from Debian (headless browser for the report tests)" >&2
    if ! apt_log=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium 2>&1 >/dev/null); then
      # A fresh container has no package lists yet: fetch them only then, and try once more.
      if grep -q -E "Unable to locate package|has no installation candidate" <<<"$apt_log"; then
        apt-get update -qq || true
        apt_log=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium 2>&1 >/dev/null) || true
      fi
      command -v chromium >/dev/null 2>&1 \
        || echo "setup: could not install chromium: $(tail -n 1 <<<"$apt_log")" >&2
    fi
  fi
fi
