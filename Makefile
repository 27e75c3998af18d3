# One entry point for set-up, tests, the demo and the reproduction workflows.
# Uses the active virtualenv/conda env if there is one, else creates ./.venv.
SHELL := /bin/bash
ifdef VIRTUAL_ENV
  PY := $(VIRTUAL_ENV)/bin/python
else ifdef CONDA_PREFIX
  PY := $(CONDA_PREFIX)/bin/python
else
  PY := .venv/bin/python
endif
STAMP := $(dir $(PY)).mtl-installed
BENCH ?= synthetic
METHOD ?= db_mtl
SEEDS ?= 0,1,2

.PHONY: install test test-slow demo train clean

$(PY):
	python3 -m venv .venv

# Editable install with the dev extras; re-runs when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) scripts/demo.py

train: install
	$(PY) -m mtl.train benchmark=$(BENCH) method=$(METHOD)

clean:
	rm -rf results/runs results/tables multirun outputs .pytest_cache
