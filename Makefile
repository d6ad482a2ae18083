# Two entry points for a fresh machine with only Python 3.11 and pip:
#   make demo   -- collector + sensor + demo API + traffic, then the inventory
#   make test   -- lint, type-check and the whole test suite, then the sensor's tests again against
#                  the mypyc-compiled analysis (the build the Docker image ships; see setup.py)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-compiled clean-compiled lint typecheck bench bench-all bench-signatures bench-classify venv clean

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
	$(MAKE) test-compiled

# The compiled extensions are built in place for the run and removed after it (pass or fail): a
# leftover .so would shadow its .py, and a later source edit would silently not run.
# APIWARD_EXPECT_COMPILED makes tests/sensor/test_compiled.py fail if the extensions did not load.
# The sensor's tests and the fault suite (the proxy path is compiled too), except the tests that swap
# methods of analysis objects (marker replaces_methods), which compiled classes do not allow.
test-compiled: $(STAMP) clean-compiled
	APIWARD_COMPILE=1 $(BIN)/python setup.py --quiet build_ext --inplace
	APIWARD_EXPECT_COMPILED=1 $(BIN)/python -m pytest tests/sensor tests/hardening -m "not replaces_methods" $(PYTEST_ARGS); \
	  status=$$?; $(MAKE) --no-print-directory clean-compiled; exit $$status

clean-compiled:
	find sensor -name '*.cpython-*.so' -delete
	rm -f ./*__mypyc.cpython-*.so
	rm -rf build

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

clean: clean-compiled
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
