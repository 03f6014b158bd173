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

# Rebuild engine/default_model (docs/ablation.md, docs/inference.md): the stdlib tokenizer and
# shards; stage 1, the ablation's best variant (ast-tier masking + AnchorTree anchoring, 1200
# steps); stage 2, 1600 more steps of the cpu recipe (mix masking, which teaches the pads that
# end a span, max rate 0.6), exported as bf16. Stage 1 about 1.5 hours on a 2-core CPU with the
# tokenizer, stage 2 93 minutes (the shipped model's stage 2 started from stage 1's bf16
# export, this from its fp32 final). A finished stage is kept (delete $(DEFAULT_RUN) to start
# over, or add --resume to continue a stopped one).
DEFAULT_RUN ?= runs/default-model
DEFAULT_ARGS := --model small --use-anchor --anchoring --masking ast-tier --seq-len 256 \
	--batch-size 8 --steps 1200 --warmup-steps 60 --lr 2e-3 --checkpoint-every 100 \
	--eval-every 200 --seed 0
DEFAULT_STAGE2_ARGS := --recipe cpu --steps 1600 --eval-every 400 --seed 0

default-model: $(STAMP)
	test -f $(DEFAULT_RUN)/tok/tokenizer.json || $(PY) -m training.tokenizer --out $(DEFAULT_RUN)/tok
	$(PY) -m training.shards --tokenizer $(DEFAULT_RUN)/tok --out $(DEFAULT_RUN)/shards --max-length 256
	test -f $(DEFAULT_RUN)/train/final/config.json || $(PY) -m training.finetune $(DEFAULT_ARGS) \
		--data $(DEFAULT_RUN)/shards --out $(DEFAULT_RUN)/train
	test -f $(DEFAULT_RUN)/stage2/final/config.json || $(PY) -m training.finetune \
		$(DEFAULT_STAGE2_ARGS) --model $(DEFAULT_RUN)/train/final --data $(DEFAULT_RUN)/shards \
		--out $(DEFAULT_RUN)/stage2
	$(PY) -m training.export $(DEFAULT_RUN)/stage2/final --out engine/default_model

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
