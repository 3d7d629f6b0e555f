# `make demo` and `make test` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_data

.PHONY: install test test-slow lint format demo demo-curriculum clean

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check ser tests benchmarks
	$(VENV)/bin/ruff format --check ser tests benchmarks

format: install
	$(VENV)/bin/ruff check --fix ser tests benchmarks
	$(VENV)/bin/ruff format ser tests benchmarks

test: lint
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo.sh

demo-curriculum: install
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash scripts/demo_curriculum.sh

clean:
	rm -rf $(DEMO_DIR) lightning_logs/demo lightning_logs/demo_curriculum .pytest_cache
