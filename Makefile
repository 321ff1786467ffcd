# taco-harness: `make demo` evaluates the bundled sample, `make test` runs the tests, `make bench`
# measures.  Each one first runs scripts/setup.sh (Docker daemon, virtualenv, sandbox image).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup demo test bench prune clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/harness evaluate --dataset samples/problems.jsonl --generations samples/generations.json --output out/demo
	@echo "results: out/demo/results.json  metrics: out/demo/metrics.json"

test: setup
	$(VENV)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/python bench/sandbox_overhead.py --markdown docs/BENCHMARKS.md
	$(VENV)/python bench/evaluation_corpus.py --official-fraction 0.2 --markdown docs/BENCHMARKS.md

prune: setup
	$(VENV)/harness sandbox prune

clean:
	rm -rf out .pytest_cache
