# taco-harness: `make demo` evaluates the bundled sample, `make test` runs the tests, `make bench`
# measures.  Each one first runs scripts/setup.sh (Docker daemon, virtualenv, sandbox image).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup setup-test demo test soak bench bench-gen prune clean

setup:
	@bash scripts/setup.sh

# setup, plus what only the tests need (a headless chromium for the report's browser check).
setup-test:
	@bash scripts/setup.sh test

demo: setup
	$(VENV)/harness evaluate --dataset samples/problems.jsonl --generations samples/generations.json --output out/demo
	@echo "results: out/demo/results.json  metrics: out/demo/metrics.json"

test: setup-test
	$(VENV)/python -m pytest -q $(PYTEST_ARGS)

# Reliability soak at full size (10,000 executions under container kills, 100,000 sustained, 3 runs x
# {1,2,8} workers on ../shared/data); `make test` runs the same tests at SOAK_SCALE=0.1.
soak: setup
	SOAK_SCALE=$${SOAK_SCALE:-1} $(VENV)/python -m pytest -q -s -m soak tests/test_soak.py

bench: setup
	$(VENV)/python bench/sandbox_overhead.py --markdown docs/BENCHMARKS.md
	$(VENV)/python bench/evaluation_corpus.py --official-fraction 0.2 --markdown docs/BENCHMARKS.md

# GPU machine: generation throughput (fast engine vs generate baselines), random-weight models.
bench-gen: setup
	$(VENV)/python bench/generation.py --out docs/bench/generation.json --markdown docs/BENCHMARKS.md

prune: setup
	$(VENV)/harness sandbox prune

clean:
	rm -rf out .pytest_cache
