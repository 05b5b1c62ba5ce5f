# The two commands every user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

export BATCHWORK_TEST_POSTGRES_DSN ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: demo test check lint types browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/batchwork demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

types: $(STAMP)
	$(BIN)/mypy

# The dashboard's tests drive Debian's chromium (never a browser download).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (apt-get install chromium) for the browser tests" >&2; exit 1; fi; }

test: lint types browser
	$(BIN)/python -m pytest

check: test

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	BATCHWORK_CHAOS_N=1000000 $(BIN)/python -m pytest tests/core/test_batcher_chaos.py -q --timeout 1200

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
