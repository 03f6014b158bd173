"""The shipped default model (engine/default_model): small enough to ship, loads with no path,
and the README's main job (infill a selection of examples/sample.py) runs on it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest
from engine.infill.engine import DEFAULT_MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_model_is_shipped_with_its_provenance():
    files = sorted(p.name for p in DEFAULT_MODEL_DIR.iterdir())
    assert files == ["config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "training.json"]
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= 30 * 2**20
    record = json.loads((DEFAULT_MODEL_DIR / "training.json").read_text())
    # recipe B (scripts/train_default_model.sh): Qwen2 trained causally in two stages, then
    # adapted to masked diffusion; each stage ended where the recipe says (--stop-at, or its
    # last step), each continued the one before it
    stages = record["stages"]
    assert [s["args"]["model"]["objective"] for s in stages] == ["ar", "ar", "diffusion"]
    assert all(s["args"]["model"]["architecture"] == "qwen2" for s in stages)
    assert all(not s["summary"]["stopped_early"] for s in stages)
    for before, after in zip(stages, stages[1:]):
        assert after["args"]["model"]["model"] == before["summary"]["final"]
    assert stages[-1]["args"]["masking"]["masking"] == "mix"
    # make default-model's recipe plans each stage as it ran and ends it where it ended
    recipe = (ROOT / "scripts" / "train_default_model.sh").read_text()
    planned = [tuple(map(int, m)) for m in
               re.findall(r"--steps (\d+) --stop-at (\d+)", recipe.replace("\\\n", " "))]
    assert planned == [(s["args"]["optim"]["steps"], s["summary"]["steps"]) for s in stages]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_it_loads_without_a_path_and_infills(torch_one_thread, dtype):
    # Both precisions the engine picks between by CPU (bf16 where the CPU runs it natively):
    # what the model writes differs between them, the contract must not.
    engine = InfillEngine.load(None, device="cpu", dtype=dtype)
    assert engine.model.dtype == dtype
    text = (ROOT / "examples" / "sample.py").read_text()
    cursor = text.encode().index(b"restocked += 1")
    result = engine.infill(InfillRequest(text, "python", [ByteRange(cursor, cursor)],
                                         options=InfillOptions(candidates=1, repair_rounds=0)))
    best = result.best
    # The engine's contract, whatever this CPU's precision makes the model write (an empty
    # infill deletes the statement with its indentation): one edit, over the selected
    # statement (widened at most to its own line), and the rest of the file kept byte for byte.
    assert len(best.spans) == 1
    edit = best.spans[0]
    line_start = text.rindex("\n", 0, cursor) + 1
    line_end = text.index("\n", cursor) + 1
    assert line_start <= edit.start_byte <= cursor < edit.end_byte <= line_end
    assert "restocked += 1" in edit.old_text
    data = text.encode()
    assert best.text.encode() == (data[:edit.start_byte] + edit.new_text.encode()
                                  + data[edit.end_byte:])
    assert result.valid == best.valid  # an invalid best candidate is reported, never hidden


def test_the_main_job_command_runs():
    result = subprocess.run(
        [sys.executable, "-m", "engine", "infill", "examples/sample.py", "--lines", "24:24",
         "--diff", "--steps", "4", "--candidates", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    assert result.stdout.startswith("--- a/examples/sample.py")
    if result.returncode == 1:
        assert "no valid infill" in result.stderr
