# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when missing and
# installs the locked dependency set (constraints.txt) into it; a second run reuses both.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .venv-tools
INSTALLED := $(VENV)/.installed
TOOLS_INSTALLED := $(TOOLS)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit test-integration bench lock clean image-check image-lock

$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# checkov pins versions that clash with Feast's, so it lives in its own tool venv.
$(TOOLS_INSTALLED): constraints-tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -c constraints-tools.txt checkov
	@touch $@

setup: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/cascade demo

test: $(INSTALLED) $(TOOLS_INSTALLED) image-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(INSTALLED)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: $(INSTALLED)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

# The self-contained benchmarks (each makes its own synthetic data; results in benchmarks/results/).
# Serving benchmarks need a trained export: benchmarks/NOTES.md has their commands.
bench: $(INSTALLED)
	$(BIN)/python benchmarks/bench_datagen.py
	$(BIN)/python benchmarks/bench_preprocessing.py --case demo
	$(BIN)/python benchmarks/bench_feast.py
	$(BIN)/python benchmarks/bench_index.py --items 100000

# The serving image's install resolves for its Python and platform (pip dry run, PyPI; needs
# network). IMAGE_CHECK_ARGS=--full also re-resolves every requirement against the lock.
IMAGE_CHECK_ARGS ?=
image-check: $(INSTALLED)
	$(BIN)/python k8s/image/resolve.py check $(IMAGE_CHECK_ARGS)

# Rewrite k8s/image/constraints-serving.txt with pip's resolver (after changing the serving extras).
image-lock: $(INSTALLED)
	$(BIN)/python k8s/image/resolve.py lock

# Regenerate the lock files from the current environments.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | sed -e 's/^torch==.*/torch==2.13.0/' > constraints.txt
	$(TOOLS)/bin/python -m pip freeze > constraints-tools.txt

clean:
	rm -rf build .pytest_cache
