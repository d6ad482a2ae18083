# Two entry points for a fresh machine with only Python 3.11 and pip:
#   make demo   -- collector + sensor + demo API + traffic, then the inventory
#   make test   -- lint, type-check and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck bench bench-all bench-signatures bench-classify venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/apiward demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.proxy_throughput

bench-signatures: $(STAMP)
	$(BIN)/python -m bench.signature_quality
	$(BIN)/python -m bench.signature_speed

bench-classify: $(STAMP)
	$(BIN)/python -m bench.classify_quality
	$(BIN)/python -m bench.classify_speed

bench-all: bench bench-signatures bench-classify
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.dashboard_render

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
