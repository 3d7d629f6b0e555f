# `make demo` and `make test` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_data

.PHONY: install lock test test-slow lint format demo demo-curriculum demo-dimensional clean

# Installs exactly the tested set: every package pinned with its hashes in requirements.lock
# (nothing is resolved anew), then ser itself without dependencies.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --require-hashes -r requirements.lock --quiet
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# Regenerates the lock from pyproject.toml's ranges, on purpose only (then run `make test`).
lock:
	$(PYTHON) -m pip install -q uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --extra bench --universal \
		--generate-hashes --python-version 3.10 -o requirements.lock

lint: install
	$(VENV)/bin/ruff check ser tests benchmarks
	$(VENV)/bin/ruff format --check ser tests benchmarks

format: install
	$(VENV)/bin/ruff check --fix ser tests benchmarks
	$(VENV)/bin/ruff format ser tests benchmarks

# Tests run in one process a core (pytest-xdist), the long ones dealt first as workers free up.
PYTEST := $(PY) -m pytest -q -n auto --dist worksteal

test: lint
	$(PYTEST)

test-slow: install
	$(PYTEST) -m slow

demo: install
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo.sh

demo-curriculum: install
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo_curriculum.sh

demo-dimensional: install
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo_dimensional.sh

clean:
	rm -rf $(DEMO_DIR) lightning_logs/demo lightning_logs/demo_curriculum \
		lightning_logs/demo_dimensional .pytest_cache
