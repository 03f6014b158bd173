#!/usr/bin/env bash
# The recipe study of the default model (docs/recipe-study.md): candidate recipes trained for
# the same CPU time on the same shards, then scored on held-out infill-hole loss (each run's
# final evaluation) and on an infill benchmark. Every run directory is outside the repository.
#
#   bash scripts/recipe_study.sh SHARDS BENCH.jsonl OUT [MINUTES] [STEPS]
#
# SHARDS: a shard cache built with the shipped tokenizer (training.shards --tokenizer
# engine/default_model); BENCH: training.evaluate build's tasks; MINUTES: CPU time per recipe
# (default 12), split in half for the two-stage recipe; STEPS: the optimizer steps that fit
# it (the cosine schedule ends there; default 480 at batch 16 x 256 on 2 cores, bf16).
set -euo pipefail
SHARDS=$1 BENCH=$2 OUT=$3 MINUTES=${4:-12} STEPS=${5:-480}
PY=${PY:-.venv/bin/python}
HALF=$(python3 -c "print($MINUTES / 2)") HALF_STEPS=$((STEPS / 2))
COMMON=(--data "$SHARDS" --tokenizer engine/default_model --seq-len 256 --batch-size 16
        --lr 1e-3 --warmup-steps 30 --dtype auto --threads 2 --checkpoint-every 50
        --eval-every 0 --eval-windows 64 --no-progress --seed 0)
DIFFUSION=(--masking mix --max-rate 0.6)
run() {  # NAME ARGS...: train unless done; a run --max-minutes stopped is then evaluated and
    # exported at the step it reached (--resume --steps N: no more training)
    local name=$1; shift
    [ -f "$OUT/$name/summary.json" ] || "$PY" -m training.finetune "${COMMON[@]}" "$@" \
        --out "$OUT/$name"
    if [ ! -f "$OUT/$name/final/config.json" ]; then
        local reached
        reached=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" \
            "$OUT/$name/summary.json")
        "$PY" -m training.finetune "${COMMON[@]}" "$@" --out "$OUT/$name" --resume \
            --steps "$reached"
    fi
}
# A: the current recipe (anchored small model, mix masking), from scratch
run A-anchored --model small "${DIFFUSION[@]}" --steps "$STEPS" --max-minutes "$MINUTES"
# B0: the same Qwen2 network as B, diffusion only
run B0-qwen2 --model small --architecture qwen2 "${DIFFUSION[@]}" --steps "$STEPS" \
    --max-minutes "$MINUTES"
# B: Qwen2 autoregressive warm start for half the time, then diffusion with the logit shift
run B-ar --model small --architecture qwen2 --objective ar --steps "$HALF_STEPS" \
    --max-minutes "$HALF"
run B-ar-dlm --model "$OUT/B-ar/final" --architecture qwen2 "${DIFFUSION[@]}" \
    --steps "$HALF_STEPS" --max-minutes "$HALF"
for name in A-anchored B0-qwen2 B-ar-dlm; do
    [ -f "$OUT/$name/eval.json" ] || "$PY" -m training.evaluate --benchmark "$BENCH" \
        --model "$OUT/$name/final" --limit "${LIMIT:-50}" --threads 2 --json \
        --samples "$OUT/$name/samples.jsonl" --quiet >"$OUT/$name/eval.json"
done
