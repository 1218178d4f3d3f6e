# hamr — HAMR reference implementation. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HAMR_DATA_DIR ?= $(CURDIR)/data
ARGS ?=

.PHONY: help install test test-all lint train demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install:  ## create .venv with the CPU build of torch and the package (editable) with its dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'

test:  ## the test suite without `slow` tests (what CI runs)
	$(BIN)/python -m pytest

test-all:  ## every test, the slow ones too
	$(BIN)/python -m pytest -m "not gpu"

lint:  ## ruff
	$(BIN)/ruff check src tests scripts

train:  ## one training run: make train ARGS="dataset=sst5 baseline_loss=focal"
	$(BIN)/python -m hamr.train $(ARGS)

demo:  ## a smoke-sized run of every baseline loss on Cyclone-Idai (a minute or two on a CPU)
	$(BIN)/python -m hamr.train -m debug=smoke baseline_loss=ce,focal,dice,icf $(ARGS)

bench:  ## speed benchmarks: training step (CE vs HAMR modes vs the authors' step) and the k-NN graph -> results/bench/
	$(BIN)/python scripts/bench_step.py $(ARGS)
	$(BIN)/python scripts/bench_knn.py

clean:  ## remove run folders and caches (never results/)
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
