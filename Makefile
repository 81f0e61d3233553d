# Set-up on a fresh machine: `make demo` (train on the embedded digits and write a sample grid),
# `make test` (run the test suite). Both create .venv and install what they need.
#
# TORCH_SPEC pins the CPU wheel this project is developed against; on a GPU machine let pip choose
# its own build instead:  make demo TORCH_SPEC=torch
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: venv demo test test-fast bench app clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install --quiet -e '.[test]'
	touch $@

$(VENV)/.gui: $(VENV)/.base
	$(PIP) install --quiet -e '.[gui]'
	touch $@

venv: $(VENV)/.base

demo: $(VENV)/.base
	$(VENV)/bin/dpsad-core demo

# The full suite, as CI runs it; the style, type and import-layer checks first (seconds; mypy's first
# run on a fresh clone takes about a minute, then its cache in .mypy_cache makes it a few seconds).
test: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# The inner loop: the same checks and every test not marked slow.
test-fast: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.test
	$(PY) bench/step_time.py

# The desktop workbench (issue 4): installs the gui extra and opens the window.
app: $(VENV)/.gui
	$(VENV)/bin/dpsad-workbench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
