#!/usr/bin/env bash
# The GPU checks, as one prepared command for a session that is lent a device machine
# (docs/gpu.md). On the machine that has the repository:
#
#   bash scripts/device_wheels.sh      # once: the wheels the device image lacks, into .whl/
#   device run: command "bash scripts/device_checks.sh", carry [".whl"], timeout_s 590
#
# Steps, in order of value, each under its own time limit; results are packed into $OUT after
# every step, so a run stopped at its limit still returns what it finished:
#   env        GPU, driver, torch
#   cuda       the shipped default model on CUDA in bf16: one infill, and its logits against
#              the CPU fp32 ones
#   train      a default-model candidate by the shipped recipe (scripts/train_default_model.sh:
#              Qwen2 `small`, next-token loss, then masked diffusion with the logit shift),
#              bf16 autocast, about TRAIN_MINUTES minutes split between the two stages, on
#              the standard library's shards built there (the device cannot reach PyPI)
#   bench      python -m engine.bench on CUDA with that model (engine vs naive sampler)
#   serve      python -m engine.serve.bench on CUDA (batching on a GPU: --max-batch 16 vs 1)
#   dream      a Dream-7B-shaped checkpoint (random bf16 weights, built there) through
#              engine.bench on CUDA: engine (dual cache) vs naive, tokens/s at batch 1
# Output: $OUT/results.tgz (JSON, logs, summary.jsonl) and $OUT/model.tgz.part-* (the trained
# model; `cat model.tgz.part-* | tar xz` rebuilds it).
#
# DRY=1 runs every step on this CPU at toy sizes, to check the script before spending device
# time: DRY=1 OUT=/tmp/device-dry bash scripts/device_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=${DRY:-0}
OUT=${OUT:-/tmp/device-out}
WORK=${WORK:-/tmp/astdiffuse-device}
TRAIN_MINUTES=${TRAIN_MINUTES:-3}
TRAIN_STEPS=${TRAIN_STEPS:-6000}
R=$WORK/results
rm -rf "$WORK" && mkdir -p "$R" "$OUT"

if [ "$DRY" = 1 ]; then
    PY=${PY:-.venv/bin/python}
    DEVICE=cpu
    TRAIN_ARGS=(--model tiny --seq-len 64 --batch-size 4 --steps 20 --warmup-steps 2
                --checkpoint-every 10 --eval-every 10 --eval-windows 8 --max-files 40)
    BENCH_SPANS=2 DREAM_SHAPE=tiny SERVE_ARGS=(--clients 1 --requests 1 --spans 2)
else
    PY=${PY:-python3}
    DEVICE=cuda
    if [ -d .whl ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 3
        export PYTHONPATH=/tmp/site
    fi
    TRAIN_ARGS=(--model small --seq-len 256 --batch-size 128 --steps "$TRAIN_STEPS"
                --warmup-steps 200 --lr 1e-3 --checkpoint-every 1000 --eval-every 1000)
    BENCH_SPANS=20 DREAM_SHAPE=dream-7b SERVE_ARGS=(--clients 1,4,16 --requests 2)
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

pack() {
    tar czf "$OUT/results.tgz.tmp" -C "$WORK" results && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"
}

# step NAME SECONDS COMMAND...: run it under a time limit, log to results/NAME.log, record
# its exit status and seconds in results/summary.jsonl, pack. A failed step does not stop
# the next.
step() {
    local name=$1 limit=$2; shift 2
    local began=$SECONDS
    echo "== $name (limit ${limit}s)"
    # a function cannot run under timeout(1): run it as its own process group, killed at the limit
    set -m
    "$@" >"$R/$name.log" 2>&1 &
    local pid=$!
    set +m
    ( sleep "$limit"; kill -TERM -- -"$pid" 2>/dev/null; sleep 10; kill -KILL -- -"$pid" 2>/dev/null ) \
        >/dev/null 2>&1 &
    local guard=$!
    wait "$pid"
    local rc=$?
    kill "$guard" 2>/dev/null
    echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - began))}" >>"$R/summary.jsonl"
    echo "   rc=$rc in $((SECONDS - began))s"; tail -n 3 "$R/$name.log"
    pack
    return 0
}

env_step() {
    nvidia-smi || true
    "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); \
print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    "$PY" -m pip list 2>/dev/null | grep -i -E "^(torch|transformers|tokenizers|tree.sitter)" || true
}

cuda_step() {
    "$PY" -m engine infill examples/sample.py --lines 24:24 --device "$DEVICE" --json \
        >"$R/infill-$DEVICE.json"
    local rc=$?
    [ $rc -le 1 ] || return $rc  # 1: no valid infill (the model's quality, not the device)
    "$PY" - "$DEVICE" >"$R/parity.json" <<'EOF'
import json, sys, torch
from engine.infill import InfillEngine
device = sys.argv[1]
cpu = InfillEngine.load(device="cpu", dtype=torch.float32)
gpu = InfillEngine.load(device=device)
ids = cpu.tokenizer.encode(open("examples/sample.py", encoding="utf-8").read())[0][:512]
ids = torch.as_tensor(ids).unsqueeze(0)
ids[0, 200:230] = cpu.tokenizer.mask_id
with torch.no_grad():
    a = cpu.model.logits(ids).float()
    b = gpu.model.logits(ids.to(gpu.device)).float().cpu()
pa, pb = a[0, 200:230].softmax(-1), b[0, 200:230].softmax(-1)
print(json.dumps({"device": str(gpu.device), "dtype": str(gpu.model.dtype),
                  "max_abs_logit_diff": float((a - b)[a.isfinite()].abs().max()),  # not -inf
                  "max_prob_diff_masked": float((pa - pb).abs().max()),
                  "argmax_agree_masked": float((pa.argmax(-1) == pb.argmax(-1)).float().mean())}))
EOF
}

train_step() {
    "$PY" -m training.shards --tokenizer engine/default_model --out "$WORK/shards" \
        --max-length 256 --workers "$(nproc)" --quiet || return $?
    local half
    half=$(python3 -c "print($TRAIN_MINUTES / 2)")
    local common=("${TRAIN_ARGS[@]}" --architecture qwen2 --tokenizer engine/default_model
                  --data "$WORK/shards" --device "$DEVICE" --no-progress --max-minutes "$half")
    finish() {  # a stage --max-minutes stopped ends where it reached (evaluated, final/ saved)
        [ -f "$WORK/$1/final/config.json" ] && return 0
        local reached
        reached=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" \
            "$WORK/$1/summary.json") || return $?
        "$PY" -m training.finetune "${common[@]}" "${@:2}" --out "$WORK/$1" --resume \
            --stop-at "$reached"
    }
    "$PY" -m training.finetune "${common[@]}" --objective ar --out "$WORK/ar" || return $?
    finish ar --objective ar || return $?
    "$PY" -m training.finetune "${common[@]}" --model "$WORK/ar/final" --objective diffusion \
        --masking mix --max-rate 0.6 --out "$WORK/train" || return $?
    finish train --model "$WORK/ar/final" --objective diffusion --masking mix \
        --max-rate 0.6 || return $?
    "$PY" -m training.export "$WORK/train/final" --out "$WORK/model" || return $?
    cat "$WORK/ar/metrics.jsonl" "$WORK/train/metrics.jsonl" >"$R/train-metrics.jsonl"
    cp "$WORK/train/loss.png" "$R/" 2>/dev/null
    tar czf "$WORK/model.tgz" -C "$WORK" model && split -b 15M "$WORK/model.tgz" "$OUT/model.tgz.part-"
}

dream_step() {
    "$PY" -m engine.bench --shape "$DREAM_SHAPE" --layout dream --build-dir "$WORK/dream" \
        --device "$DEVICE" --spans 5 --json >"$R/bench-dream-$DEVICE.json"
}

step env 60 env_step
step cuda 120 cuda_step
step train $((TRAIN_MINUTES * 60 + 120)) train_step
MODEL=$WORK/model
[ -f "$MODEL/config.json" ] || MODEL=engine/default_model
step bench 150 bash -c "'$PY' -m engine.bench --model '$MODEL' --device $DEVICE \
    --spans $BENCH_SPANS --json >'$R/bench-$DEVICE.json'"
step serve 120 bash -c "'$PY' -m engine.serve.bench --model '$MODEL' --device $DEVICE \
    ${SERVE_ARGS[*]} --json >'$R/serve-bench-$DEVICE.json'"
step dream 180 dream_step
echo "done: $(ls "$OUT")"
