# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both set up .venv on first use: torch first (2.13.0, the CPU build this machine has on disk),
# then the project with its dev extra. Later runs only check a stamp file.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.astdiffuse-installed
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip show torch >/dev/null 2>&1 || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine spans examples/sample.py --lines 21:23 --tokens

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m engine.benchmarks.syntax_throughput

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
