"""--lora (peft) in python -m training.finetune: on our anchored model and on a transformers
masked LM (a tiny BERT with the project's tokenizer) only the adapters train and are
checkpointed, the saved model has them merged and loads in the engine, and resume is exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.finetune.args import DataArgs, FinetuneArgs, LoraArgs, ModelArgs, OptimArgs
from training.finetune.checkpoint import latest_checkpoint
from training.finetune.data import MissingSpecialTokenError, prepare_data
from training.finetune.models import (ModelSetupError, apply_lora, build_model, build_trainable,
                                      trainable_state)

from .finetune_runs import build_cache, finetune, summary_of

ANCHORED_LINEAR = ("qkv", "out_proj", "fc_in", "fc_out", "anchor_to_hidden")
LORA = ["--lora", "--lora-r", "4", "--lora-dropout", "0"]
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> tuple[Path, Path]:
    return build_cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def anchored_dir(cache, tmp_path_factory) -> Path:
    """A tiny anchored model (untrained) saved as the engine loads it, with its tokenizer."""
    from engine.model import save_model_and_tokenizer
    from engine.tokens import load_tokenizer

    _, tokenizer = cache
    model = build_model(ModelArgs(model="tiny"), tokenizer, seed=0)
    return save_model_and_tokenizer(model.network, load_tokenizer(tokenizer),
                                    tmp_path_factory.mktemp("anchored"))


@pytest.fixture(scope="module")
def bert_dir(cache, tmp_path_factory) -> Path:
    """A tiny random BertForMaskedLM over the project's byte-level BPE (<|pad|> 0, <|mask|> 1,
    <|endoftext|> 2), saved with the tokenizer.json it was built for."""
    from transformers import BertConfig, BertForMaskedLM

    from engine.tokens import load_tokenizer

    _, tokenizer_dir = cache
    tokenizer = load_tokenizer(tokenizer_dir)
    path = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=tokenizer.pad_token_id,
                        mask_token_id=tokenizer.mask_token_id)
    BertForMaskedLM(config).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, path / name)
    return path


def lora_only(tensors: dict) -> bool:
    return bool(tensors) and all(".lora_A." in n or ".lora_B." in n for n in tensors)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def checkpoint_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run / "checkpoints").directory /
                         "weights.safetensors"))


def test_adapters_on_the_anchored_linear_modules(cache):
    _, tokenizer = cache
    args = FinetuneArgs(model=ModelArgs(model="tiny"), optim=OptimArgs(seed=3),
                        lora=LoraArgs(lora=True, lora_r=4))
    model = build_trainable(args, tokenizer)
    state = trainable_state(model)
    assert lora_only(state)
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in state}
    assert adapted == set(ANCHORED_LINEAR)
    again = trainable_state(build_trainable(args, tokenizer))  # seeded: the same adapters
    assert all(torch.equal(state[n], again[n]) for n in state)

    chosen = apply_lora(build_model(ModelArgs(model="tiny"), tokenizer, 0),
                        LoraArgs(lora=True, lora_targets="qkv,fc_out"))
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable_state(chosen)} == \
        {"qkv", "fc_out"}
    with pytest.raises(ModelSetupError, match="named .*qkv"):
        apply_lora(build_model(ModelArgs(model="tiny"), tokenizer, 0),
                   LoraArgs(lora=True, lora_targets="query,value"))


def test_a_tokenizer_without_the_special_tokens_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[MASK]": 1, "def": 2, "x": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="x"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(MissingSpecialTokenError, match=r"no <\|pad\|>, <\|mask\|>"):
        prepare_data(DataArgs(data=str(tmp_path)), tmp_path / "out", tmp_path)


def test_lora_on_an_anchored_model(cache, anchored_dir, tmp_path):
    data, _ = cache
    out = tmp_path / "anchored-lora"
    summary = summary_of(finetune("--recipe", "smoke", "--model", str(anchored_dir), "--data",
                                  str(data), *LORA, "--steps", "6", "--checkpoint-every", "3",
                                  "--eval-every", "0", "--out", str(out)))
    assert summary["steps"] == 6 and summary["trainable"] < summary["params"] / 10
    assert lora_only(checkpoint_weights(out))

    base, final = weights(anchored_dir), weights(out / "final")
    assert final.keys() == base.keys()  # merged: no lora_ or base_layer names
    changed = {name for name in base if not torch.equal(base[name], final[name])}
    assert changed and all(name.rsplit(".", 2)[-2] in ANCHORED_LINEAR for name in changed)
    assert "embed_tokens.weight" not in changed  # tied embeddings are not adapted

    from engine.infill import InfillEngine

    InfillEngine.load(out / "final", device="cpu")


def test_lora_on_a_transformers_masked_lm_resumes_exactly(cache, bert_dir, tmp_path):
    """Data from source files, tokenized with the model's own tokenizer (its directory); a run
    stopped after a step and resumed ends where an uninterrupted one does."""
    data, _ = cache
    sources = data.parent / "src"
    flags = ["--recipe", "smoke", "--model", str(bert_dir), *LORA, "--steps", "6",
             "--checkpoint-every", "3", "--eval-every", "0"]
    straight = tmp_path / "straight"
    summary = summary_of(finetune(*flags, "--data", str(sources), "--out", str(straight)))
    assert summary["steps"] == 6
    index = json.loads((straight / "data" / "index.json").read_text())
    assert Path(index["tokenizer"]["path"]) == bert_dir.resolve()
    assert lora_only(checkpoint_weights(straight))

    base, final = weights(bert_dir), weights(straight / "final")
    assert final.keys() == base.keys()
    assert not any("lora_" in name or "base_layer" in name for name in final)
    changed = {name for name in base if not torch.equal(base[name], final[name])}
    assert changed and all(name.endswith("dense.weight") or name.rsplit(".", 2)[-2] in
                           ("query", "key", "value") for name in changed)

    resumed = tmp_path / "resumed"
    stopped = summary_of(finetune(*flags, "--data", str(straight / "data"), "--out",
                                  str(resumed), "--max-minutes", "0"))
    assert stopped["stopped_early"] and stopped["steps"] == 1
    finetune(*flags, "--data", str(straight / "data"), "--out", str(resumed), "--resume")
    again = weights(resumed / "final")
    assert all(torch.equal(final[name], again[name]) for name in final)

    from engine.infill import InfillEngine

    InfillEngine.load(straight / "final", device="cpu")
