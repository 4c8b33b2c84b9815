# Every target sets itself up from nothing but Python 3.11: `.venv` is created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo bench test check lint types fidelity clean

# constraints.txt pins every package to the versions the suite last passed with
# (refresh: `.venv/bin/pip freeze --exclude-editable > constraints.txt`).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make run: the service. With BITBUCKET_TOKEN and HEROKU_API_KEY set, on the real Bitbucket and
## Heroku; without, on the local sandbox (state in .pipeline/sandbox) with one demo change merged.
run: $(STAMP)
	$(BIN)/pipeline run

## make bench: decisions/s, store writes/s (SQLite, PostgreSQL), one release's time, requests and memory.
bench: $(STAMP)
	$(BIN)/python tests/bench/bench.py

## make demo: the whole story on a fresh sandbox, then its timeline.
demo: $(STAMP)
	$(BIN)/pipeline demo

## make test: the whole suite on four workers, long tests first (PostgreSQL tests skip, saying why,
## where no server answers on 127.0.0.1:5432). One file: .venv/bin/python -m pytest -q tests/...
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 4 --dist worksteal

## make fidelity: the real heroku CLI (npm package, ~400 MB, into .venv/heroku-cli) against the sandbox.
HEROKU_CLI_DIR := $(VENV)/heroku-cli
$(HEROKU_CLI_DIR)/node_modules/.bin/heroku:
	mkdir -p $(HEROKU_CLI_DIR)
	cd $(HEROKU_CLI_DIR) && npm install --no-audit --no-fund --silent heroku@11

fidelity: $(STAMP) $(HEROKU_CLI_DIR)/node_modules/.bin/heroku
	HEROKU_CLI=$(abspath $(HEROKU_CLI_DIR))/node_modules/.bin/heroku $(BIN)/python -m pytest -q tests/sandbox/test_heroku_cli.py

lint: $(STAMP)
	$(BIN)/ruff check pipeline sandbox checks runbooks tests
	$(BIN)/ruff format --check pipeline sandbox checks runbooks tests

types: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy runbooks

## make check: lint, types and the tests.
check: lint types test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
