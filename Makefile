# Two commands on a fresh machine:  `make run` (the whole job) and `make test` (the tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: deploy the schema, load data/, merge and report (embedded PostgreSQL when no DSN is set)
run: $(BIN)/.installed
	$(BIN)/syncpipe deploy --full

## test: the test suite against a real PostgreSQL (SYNCPIPE_TEST_DATABASE_URL, else embedded)
test: $(BIN)/.installed
	$(BIN)/pytest -n auto

## lint: ruff, ruff format, mypy, import layering
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: the benchmarks (see bench/RESULTS.md; load and merge generate 1M+ records, minutes)
bench: $(BIN)/.installed
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/full_run.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/repeats.py
	$(BIN)/python bench/merge.py
	$(BIN)/python bench/merge.py --persons 100000 --vs-splink
	$(BIN)/python bench/growth.py
	$(BIN)/python bench/pooler.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
