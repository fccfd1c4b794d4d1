# PagedRAG: `make serve` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PAGEDRAG := $(VENV)/bin/pagedrag
DEFAULT_MODEL := qwen2.5-coder:0.5b-instruct
TEST_MODEL := smollm2:135m-instruct
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install models serve test lint unit bench bench-engine bench-retrieval clean

# NOTE: torch is pinned in the same pip call as everything that depends on it, so pip
# takes the CPU wheel here and the CUDA build on a CUDA machine, never a surprise.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[dev]"
	touch $@

install: $(VENV)/.installed

models: install
	$(PAGEDRAG) pull $(DEFAULT_MODEL)
	$(PAGEDRAG) pull $(TEST_MODEL)

# Until the HTTP server lands, `serve` ingests the sample documents (duplicates are
# skipped, so a second run is quick) and ends by running the default model on a prompt.
serve: install
	$(PAGEDRAG) pull $(DEFAULT_MODEL)
	$(PAGEDRAG) ingest data/samples
	$(PAGEDRAG) search --mode hybrid -k 2 "How does PagedRAG share work between prompts?"
	$(PAGEDRAG) generate --max-tokens 64 "In one sentence: what is retrieval-augmented generation?"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: models lint
	$(VENV)/bin/pytest -q

# Each writes bench/results/*.json and prints the tables docs/benchmarks.md reports.
bench: bench-engine bench-retrieval

bench-engine: models
	$(PY) -m bench.engine_throughput

bench-retrieval: install
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[bench]"
	$(PY) -m bench.retrieval_beir
	$(PY) -m bench.retrieval_faq
	$(PY) -m bench.ingest_speed
	$(PY) -m bench.search_latency

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
