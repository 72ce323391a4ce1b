# Two commands matter: `make train` (the quickstart) and `make test` (what CI runs).
# Both create the project's virtual environment on first use and reinstall when the
# package metadata changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.film-rl-installed
EXPERIMENT ?= experiments/quickstart.yaml

.PHONY: install train test lint typecheck unit bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/film-rl train $(EXPERIMENT)

lint: $(STAMP)
	$(BIN)/ruff check film_rl tests
	$(BIN)/ruff format --check film_rl tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy film_rl

unit: $(STAMP)
	WANDB_MODE=disabled WANDB_SILENT=true $(BIN)/python -m pytest film_rl tests

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
