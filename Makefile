# aztrain — the two commands: `make demo` and `make test`. Everything else is set-up they call.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench dev clean

setup: $(STAMP) node_modules/.installed $(VENV)/.horovod

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[trainer,dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Horovod is compiled once (about 5 minutes on 2 cores) and the wheel cached in .cache/wheels.
$(VENV)/.horovod: $(STAMP) scripts/build_horovod.sh
	VENV=$(VENV) bash scripts/build_horovod.sh
	touch $@

demo: setup
	$(VENV)/bin/aztrain demo

dev: setup
	$(VENV)/bin/aztrain dev

test: setup
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy aztrain devhost functions trainer function_app.py

bench: setup
	$(PY) bench/control_plane.py

clean:
	rm -rf .aztrain .azurite .pytest_cache .mypy_cache .ruff_cache
