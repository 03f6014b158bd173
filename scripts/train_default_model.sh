#!/usr/bin/env bash
# The shipped default model (engine/default_model), from nothing but this checkout and PyPI:
# recipe B of docs/recipe-study.md. `make default-model` runs it; on 2 CPU cores it takes about
# 2.5 hours of training after a few minutes of corpus and shards (docs/default-model.md).
#
#   bash scripts/train_default_model.sh RUN_DIR
#
# 1. corpus: the PyPI packages (exact versions) of training/pypi-manifest.json, plus the
#    standard library of the Python that runs this; shards with the shipped tokenizer
# 2. ar1, ar2: Qwen2 (the "small" size, tied embeddings) trained causally, next-token loss
# 3. dlm: the same network made bidirectional, masked diffusion with the one-position logit
#    shift (mix masking: infill spans, AST tiers, random), as Dream and Open-dCoder adapt
# 4. export: bf16, provenance of every stage in training.json
#
# Each stage's schedule is planned to --steps; --stop-at is where the shipped run ended (its
# --max-minutes cap), so the learning rate follows the same curve. A finished stage is kept;
# a stopped one continues with the same command (each stage checkpoints every 50 steps).
set -euo pipefail
RUN=${1:?usage: train_default_model.sh RUN_DIR}
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
mkdir -p "$RUN"
STDLIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
[ -f "$RUN/pypi/pypi-manifest.json" ] || "$PY" -m training.pypi_corpus --out "$RUN/pypi" \
    --from-manifest training/pypi-manifest.json
[ -f "$RUN/shards/index.json" ] || "$PY" -m training.shards --tokenizer engine/default_model \
    --out "$RUN/shards" --max-length 256 --root "$STDLIB" --root "$RUN/pypi/src"
COMMON=(--data "$RUN/shards" --tokenizer engine/default_model --architecture qwen2
        --seq-len 256 --batch-size 16 --warmup-steps 30 --dtype auto --threads "$THREADS"
        --checkpoint-every 50 --eval-every 0 --eval-windows 64 --no-progress)
stage() {  # NAME ARGS...: train unless its final/ exists, resuming a stopped run
    local name=$1; shift
    [ -f "$RUN/$name/final/config.json" ] && return 0
    local resume=()
    [ -f "$RUN/$name/args.json" ] && resume=(--resume)
    "$PY" -m training.finetune "${COMMON[@]}" "$@" --out "$RUN/$name" "${resume[@]}"
}
stage ar1 --model small --objective ar --lr 1e-3 --steps 2000 --stop-at 1789 --seed 0
stage ar2 --model "$RUN/ar1/final" --objective ar --lr 6e-4 --steps 1800 --stop-at 1800 \
    --seed 1
stage dlm --model "$RUN/ar2/final" --objective diffusion --masking mix --max-rate 0.6 \
    --lr 6e-4 --steps 3000 --stop-at 3000 --seed 2
"$PY" -m training.export "$RUN/dlm/final" --out engine/default_model
