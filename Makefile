# aztrain — the two commands: `make demo` and `make test`. Everything else is set-up they call.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench dev clean screenshots

setup: $(STAMP) node_modules/.installed $(VENV)/.horovod

# PyTorch from its CPU index first: PyPI's Linux wheel is the CUDA build (gigabytes the local backend never uses).
# A GPU machine: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu126 (an index from pytorch.org).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell grep -o 'torch==[0-9.]*' pyproject.toml)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps "$(TORCH_PIN)" --index-url $(TORCH_INDEX)  # its dependencies come from PyPI below
	$(PY) -m pip install --quiet -e ".[trainer,dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Only the dashboard's browser tests need a browser: they drive the system Chromium (Playwright's own
# browser download cannot work here), so `make test` installs it and `make demo` needs no system package.
/usr/bin/chromium:
	sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium

# Horovod is compiled once (about 5 minutes on 2 cores) and the wheel cached in .cache/wheels.
$(VENV)/.horovod: $(STAMP) scripts/build_horovod.sh
	VENV=$(VENV) bash scripts/build_horovod.sh
	touch $@

demo: setup
	$(VENV)/bin/aztrain demo

dev: setup
	$(VENV)/bin/aztrain dev

test: setup /usr/bin/chromium
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy aztrain devhost functions trainer function_app.py

# The README's dashboard screenshots, taken by the browser tests.
screenshots: setup /usr/bin/chromium
	AZTRAIN_SCREENSHOTS=docs/img $(VENV)/bin/pytest -q tests/browser

bench: setup
	$(PY) bench/control_plane.py
	$(PY) bench/intake.py
	$(PY) bench/upload.py
	$(PY) bench/run_list.py
	$(PY) bench/scheduler.py

clean:
	rm -rf .aztrain .azurite .pytest_cache .mypy_cache .ruff_cache
