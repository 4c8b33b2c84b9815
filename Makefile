# Every target sets itself up from nothing but Python 3.11: `.venv` is created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint types sandbox clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make run: the sandbox stand-ins for Bitbucket and Heroku (Ctrl-C stops them and every app process).
run: $(STAMP)
	$(BIN)/pipeline sandbox up --state-dir .sandbox

## make sandbox: the same, printing the JSON description first.
sandbox: $(STAMP)
	$(BIN)/pipeline sandbox up --json --state-dir .sandbox

## make test: the whole suite (PostgreSQL tests skip, saying why, where no server answers on 127.0.0.1:5432).
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipeline sandbox tests
	$(BIN)/ruff format --check pipeline sandbox tests

types: $(STAMP)
	$(BIN)/mypy

## make check: lint, types and the tests.
check: lint types test

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache *.egg-info
