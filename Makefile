# OpenClone: `make run` serves the bundled model; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Every extra a CPU machine can use; add `gpu` on a CUDA machine: make install EXTRAS=cpu,train,gpu,dev
EXTRAS ?= cpu,train,dev
# The CPU build of torch (any other spec pulls gigabytes of CUDA wheels on a CPU box).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test check lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

run: install
	$(BIN)/openclone serve

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

check: lint typecheck
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=75 $(PYTEST_ARGS)

# Benchmarks print a table and write JSON to benchmarks/results/; DATA is a JSONL of prompts.
DATA ?= ../shared/data/sharegpt_prompts.jsonl
bench: install
	$(BIN)/python benchmarks/serve_overhead.py $(DATA) --distinct
	$(BIN)/python benchmarks/gateway_overhead.py
	$(BIN)/python benchmarks/capture_overhead.py $(DATA)
	$(BIN)/python benchmarks/capture_encryption.py $(DATA)
	$(BIN)/python benchmarks/redaction.py $(DATA)
	$(BIN)/python benchmarks/dedupe.py $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/results
