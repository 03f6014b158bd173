"""The autoregressive warm start then diffusion adaptation recipe (Dream's and Open-dCoder's):
`--architecture qwen2 --objective ar` trains transformers' Qwen2 causally with the next-token
loss, `--objective diffusion` continues the same network bidirectionally with the one-position
logit shift, and the engine loads the result as the open-dcoder family and infills with it."""

import json

import pytest
import torch

from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest
from training.finetune.args import ModelArgs
from training.finetune.models import ModelSetupError, build_model

from .finetune_runs import build_cache, finetune, records, summary_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("qwen2-cache"))


def test_ar_warm_start_then_diffusion_then_the_engine(cache, tmp_path):
    shards, tokenizer = cache
    (tokenizer / "tokenizer_config.json").unlink()  # a bare tokenizer.json, as the shipped one
    common = ["--data", str(shards), "--tokenizer", str(tokenizer), "--model", "tiny",
              "--architecture", "qwen2", "--seq-len", "64", "--batch-size", "4",
              "--eval-every", "0", "--eval-windows", "8", "--checkpoint-every", "20"]
    ar = finetune(*common, "--objective", "ar", "--steps", "30", "--lr", "3e-3",
                  "--out", str(tmp_path / "ar"))
    losses = [r["loss"] for r in records(tmp_path / "ar" / "metrics.jsonl", "train")]
    assert losses[-1] < losses[0]  # it learns the next token
    assert summary_of(ar)["steps"] == 30
    config = json.loads((tmp_path / "ar" / "final" / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"]
    finetune("--data", str(shards), "--model", str(tmp_path / "ar" / "final"),
             "--architecture", "qwen2", "--objective", "diffusion", "--seq-len", "64",
             "--batch-size", "4", "--steps", "10", "--eval-every", "0", "--eval-windows", "8",
             "--out", str(tmp_path / "dlm"))
    engine = InfillEngine.load(tmp_path / "dlm" / "final", device="cpu", dtype=torch.float32)
    assert engine.model.family == "open-dcoder" and engine.model.shift_logits
    text = "def add(a, b):\n    total = a + b\n    return total\n"
    start = text.index("total = a + b")
    result = engine.infill(InfillRequest(text, "python", [ByteRange(start, start)],
                                         options=InfillOptions(steps=3, candidates=1)))
    assert result.candidates

    # exported as a default model: the transformers layout kept, weights in bf16, the mask token
    # named, provenance recorded; the engine loads it as the same family
    from safetensors.torch import load_file

    from training.export import main as export_main

    out = tmp_path / "default_model"
    assert export_main([str(tmp_path / "dlm" / "final"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "training.json"]
    record = json.loads((out / "training.json").read_text())
    assert record["args"]["model"]["objective"] == "diffusion" and record["dtype"] == "bf16"
    # every stage of its lineage, first to last, followed through --model
    assert [(s["args"]["model"]["objective"], s["summary"]["steps"]) for s in record["stages"]] \
        == [("ar", 30), ("diffusion", 10)]
    saved = load_file(str(out / "model.safetensors"))
    trained = load_file(str(tmp_path / "dlm" / "final" / "model.safetensors"))
    assert saved.keys() == trained.keys()
    assert all(saved[k].dtype == torch.bfloat16 and torch.equal(saved[k], trained[k].bfloat16())
               for k in saved)
    exported = InfillEngine.load(out, device="cpu")
    assert exported.model.family == "open-dcoder"
    narrow = tmp_path / "narrow"
    assert export_main([str(tmp_path / "dlm" / "final"), "--out", str(narrow),
                        "--max-positions", "48"]) == 0
    assert json.loads((narrow / "config.json").read_text())["max_position_embeddings"] == 48
    assert InfillEngine.load(narrow, device="cpu").max_tokens == 48
    assert export_main([str(tmp_path / "dlm" / "final"), "--out", str(tmp_path / "big"),
                        "--max-mb", "0.01"]) == 2
    assert not (tmp_path / "big").exists()


def test_ar_needs_the_qwen2_network(cache):
    _, tokenizer = cache
    with pytest.raises(ModelSetupError, match="--architecture qwen2"):
        build_model(ModelArgs(model="tiny", objective="ar"), tokenizer, 0)
