# Two entry points: `make run` (live demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest test-slow system-deps fixtures bench dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	$(BIN)/python -m compileall -q exporter
	$(BIN)/python -m exporter report /dev/null > /dev/null  # leaves the bundled rules and compiled patterns cached
	touch $@

$(TSTAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/gmail-rejection-exporter demo

system-deps:
	bash tests/install-system-deps.sh

lint: $(TSTAMP)
	$(BIN)/ruff check exporter tests bench
	$(BIN)/ruff format --check exporter tests bench

typecheck: $(TSTAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected nothing; make treats every non-zero status as failure.
pytest: $(TSTAMP) system-deps
	$(BIN)/pytest -ra

test: lint typecheck pytest

test-slow: $(TSTAMP) system-deps
	$(BIN)/pytest -ra -m slow --run-slow

fixtures: $(TSTAMP)
	bash tests/fixtures/make_mta_logs.sh

bench: $(TSTAMP)
	bash bench/install-peers.sh
	$(BIN)/python -m bench

# The wheel and sdist that production installs from (README, "Install"); built offline with the venv's setuptools.
DIST ?= dist
dist: $(TSTAMP)
	rm -f $(DIST)/gmail_rejection_exporter-*
	$(BIN)/python -m build --no-isolation --outdir $(DIST) .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
