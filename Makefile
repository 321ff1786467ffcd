# taco-harness: `make demo` evaluates the bundled sample, `make test` runs the tests, `make bench`
# measures, `make lint` runs the static checks.  Each one first runs scripts/setup.sh (Docker daemon,
# virtualenv, sandbox image).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup setup-test setup-lint demo demo-run test lint soak bench bench-gen prune host-image clean

setup:
	@bash scripts/setup.sh

# setup, plus what only the tests need (a headless chromium for the report's browser check).
setup-test:
	@bash scripts/setup.sh test

# setup, plus the static checkers (the `lint` extra: ruff, mypy, import-linter).
setup-lint:
	@bash scripts/setup.sh lint

demo: setup
	$(VENV)/harness evaluate --dataset samples/problems.jsonl --generations samples/generations.json --output out/demo
	@echo "results: out/demo/results.json  metrics: out/demo/metrics.json  report: out/demo/report.html"

# The whole pipeline (`harness run`: generate + evaluate, overlapped) on the bundled sample, with a tiny
# model trained on the CPU on the sample's own prompts and reference solutions (cached after the first
# time).  Sampled at temperature 1 with top-k 50 and no top-p, some programs come out with typos: expect
# pass@1 between 0 and 1 (greedy, --temperature 0, solves all six).
demo-run: setup
	$(VENV)/harness train-demo-model --dataset samples/problems.jsonl --output out/demo-model
	$(VENV)/harness run --model out/demo-model --dataset samples/problems.jsonl --n 8 --temperature 1 --top-p 1 --max-new-tokens 320 --gpus cpu --dtype float32 --restart --output out/demo-run

test: setup-test
	$(VENV)/python -m pytest -q $(PYTEST_ARGS)

# Static checks, configured in pyproject.toml: lint rules, formatting, types, and the import layers
# (each stage imports only the stages below it).  All four run; the target fails if any one does.
LINT_STEPS := "$(VENV)/ruff check" "$(VENV)/ruff format --check" "$(VENV)/mypy" "$(VENV)/lint-imports"
lint: setup-lint
	@failed=""; for step in $(LINT_STEPS); do \
	  echo "$$step"; $$step || failed="$$failed [$$step]"; \
	done; \
	if [ -n "$$failed" ]; then echo "lint: failed:$$failed" >&2; exit 1; fi

# Reliability soak at full size (10,000 executions under container kills, 100,000 sustained, 3 runs x
# {1,2,8} workers on ../shared/data); `make test` runs the same tests at SOAK_SCALE=0.1.
soak: setup
	SOAK_SCALE=$${SOAK_SCALE:-1} $(VENV)/python -m pytest -q -s -m soak tests/test_soak.py

# Every benchmark (sandbox overhead, the real corpus vs the official procedure, generation and the
# GPU overlap run when CUDA is present, the scripted overlap run), then a summary table on stdout and
# at the top of docs/BENCHMARKS.md.  BENCH_ARGS="--quick" for a short check that all of them run.
bench: setup
	$(VENV)/python bench/run_all.py --markdown docs/BENCHMARKS.md $(BENCH_ARGS)

# Only the GPU parts (generation throughput and the GPU overlap run).
bench-gen: setup
	$(VENV)/python bench/run_all.py --markdown docs/BENCHMARKS.md --only generation overlap-gpu

prune: setup
	$(VENV)/harness sandbox prune

# The host image (top-level Dockerfile: the harness in a container, driving sandboxes through the
# mounted Docker socket), cached by content; offline it builds on the local Debian base with CPU torch.
host-image: setup
	@bash scripts/build-host-image.sh $(HOST_IMAGE_TAG)

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
