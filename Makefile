# The two commands of the README: `make demo` and `make test`. Both create .venv on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo demo-dfcnn lint test clean

setup: $(STAMP)

# Install torch first and alone: the pin resolves to the local CPU wheel, so nothing
# afterwards can pull a CUDA build in through a looser requirement.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The SKILL headline: two agents (Ray actors, one core each) learn the 12 tasks of the
# embedded shipped-mix stream in parallel, share their knowledge bundles, and then both
# answer every task without a task oracle.
demo: $(STAMP)
	$(BIN)/lifelong skill --agents 2 --benchmark shipped-mix --out $(DEMO_OUT) --overwrite

# DF-CNN against single-task learning and hard parameter sharing on Split-MNIST (shipped
# digits). Finished runs are reused, so a second run only redraws the comparison.
demo-dfcnn: $(STAMP)
	$(BIN)/lifelong compare --benchmark split-mnist --learners stl,hps,dfcnn --seeds 1 --out runs/demo-dfcnn

# Lint (ruff: E, F, W, I, B, UP) and type-check (mypy on src/lifelong); settings in
# pyproject.toml. .ci/run runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
