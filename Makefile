# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both set up .venv on first use: torch first (2.13.0, the CPU build this machine has on disk),
# then the project with its dev extra. Later runs only check a stamp file.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.astdiffuse-installed
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-vscode bench default-model clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip show torch >/dev/null 2>&1 || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine spans examples/sample.py --lines 24:24
	$(PY) -m engine infill examples/sample.py --lines 24:24 --diff || test $$? -eq 1

test: $(STAMP)
	$(PY) -m pytest
	bash vscode-client/scripts/ci.sh

# The VS Code extension alone (npm ci, compile, lint, tests against the real server, .vsix).
test-vscode: $(STAMP)
	bash vscode-client/scripts/ci.sh

bench: $(STAMP)
	$(PY) -m engine.benchmarks.syntax_throughput

# Rebuild engine/default_model (docs/default-model.md): the PyPI corpus of
# training/pypi-manifest.json and the standard library, a Qwen2 network trained causally, then
# adapted to masked diffusion, exported as bf16 (scripts/train_default_model.sh). About 2.5
# hours of training on 2 CPU cores; a stopped run continues where it stopped. The run directory
# stays outside the checkout.
DEFAULT_RUN ?= $(HOME)/astdiffuse-runs/default-model

default-model: $(STAMP)
	PY=$(PY) bash scripts/train_default_model.sh $(DEFAULT_RUN)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
