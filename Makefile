# Two commands matter: `make train` (the quickstart) and `make test` (what CI runs).
# Both create the project's virtual environment on first use and reinstall when the
# package metadata changes. Training needs the runtime only; the tests add the dev extras
# (Ray, pytest with xdist, ruff, mypy, import-linter). The suite runs in two workers: most tests
# wait on a training subprocess, so two keep a 2-core machine busy.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.film-rl-runtime
DEV := $(VENV)/.film-rl-dev
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
EXPERIMENT ?= experiments/quickstart.yaml

.PHONY: install train test lint typecheck unit bench clean

$(RUNTIME): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(PIP) -e ".[dev]"
	touch $(DEV)

install: $(RUNTIME)

train: $(RUNTIME)
	$(BIN)/film-rl train $(EXPERIMENT)

lint: $(DEV)
	$(BIN)/ruff check film_rl tests
	$(BIN)/ruff format --check film_rl tests
	$(BIN)/lint-imports

typecheck: $(DEV)
	$(BIN)/mypy film_rl

unit: $(DEV)
	WANDB_MODE=disabled WANDB_SILENT=true $(BIN)/python -m pytest -n 2 film_rl tests

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
