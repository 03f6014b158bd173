#!/usr/bin/env bash
# The wheels the device machine's image lacks (its Python 3.12 has torch, transformers,
# tokenizers, safetensors, msgpack, peft, matplotlib and tqdm, not tree-sitter), downloaded
# into .whl/ (git-ignored) for `scripts/device_checks.sh`, at the versions this venv runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
names=(tree-sitter tree-sitter-python tree-sitter-javascript tree-sitter-typescript
       tree-sitter-go tree-sitter-rust tree-sitter-java)
specs=()
for name in "${names[@]}"; do
    specs+=("$name==$("$PY" -m pip show "$name" | sed -n 's/^Version: //p')")
done
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 -d .whl "${specs[@]}"
ls -la .whl
