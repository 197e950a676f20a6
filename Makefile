# peppol-migrate: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration acceptance bench postgres install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sandbox]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/peppol-migrate demo

postgres:
	bash scripts/ensure-postgres.sh

chromium:  # headless Chromium for the HTML report test (Debian's package)
	bash scripts/ensure-chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check migration_engine migrations_db tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) postgres chromium lint typecheck
	$(BIN)/pytest -q -n 2 --dist loadgroup -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) postgres
	$(BIN)/pytest -q tests/integration

acceptance: $(STAMP)
	$(BIN)/pytest -q tests/acceptance

bench: $(STAMP) postgres
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
