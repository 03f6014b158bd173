"""Any masked LM as the denoiser: a tiny local ModernBERT and a tiny remote-code model behind
`MaskedLMDenoiser`, the trust_remote_code guard, offline-only loading, `load_denoiser`."""

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (GPT2Config, GPT2LMHeadModel, ModernBertConfig, ModernBertForMaskedLM,
                          PreTrainedTokenizerFast)
from transformers.utils import HF_MODULES_CACHE

import engine.model as em
from engine.tokens import SPECIAL_TOKENS

VOCAB = 48
MASK = 1

REMOTE_CONFIG = '''
from transformers import PretrainedConfig


class TinyRemoteConfig(PretrainedConfig):
    model_type = "tiny-remote-dlm"

    def __init__(self, vocab_size=48, hidden_size=16, mask_token_id=1, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.mask_token_id = mask_token_id
        super().__init__(**kwargs)
'''

REMOTE_MODEL = '''
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteModel(PreTrainedModel):
    """LLaDA-style: registered for AutoModel only, every position sees the whole sequence."""

    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.mix = nn.Linear(config.hidden_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.embed(input_ids)
        hidden = hidden + self.mix(hidden.mean(1, keepdim=True))
        return MaskedLMOutput(logits=self.head(hidden))
'''


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def modernbert_config(**extra) -> ModernBertConfig:
    return ModernBertConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                            local_attention=16, pad_token_id=0, eos_token_id=2, bos_token_id=3,
                            cls_token_id=3, sep_token_id=2, **extra)


@pytest.fixture(scope="module")
def modernbert_dir(tmp_path_factory):
    """A tiny random ModernBERT saved with mask_token_id in its config."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("modernbert")
    ModernBertForMaskedLM(modernbert_config(mask_token_id=MASK)).save_pretrained(path)
    return path


def masked_batch():
    ids = torch.randint(3, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[:, 2:6] = True
    return ids, ids.masked_fill(masked, MASK), masked


def check_rules(logits: torch.Tensor, original: torch.Tensor, masked: torch.Tensor) -> None:
    assert logits.shape == (*original.shape, VOCAB)
    probs = logits.float().softmax(-1)
    assert torch.all(probs[..., MASK] == 0)
    assert torch.all(probs[~masked].max(-1).values == 1.0)
    assert torch.equal(probs[~masked].argmax(-1), original[~masked])
    assert torch.all(probs[masked].max(-1).values < 1.0)


def test_modernbert_denoiser(modernbert_dir):
    denoiser = em.MaskedLMDenoiser(modernbert_dir)
    assert isinstance(denoiser, em.Denoiser)
    assert (denoiser.mask_token_id, denoiser.vocab_size) == (MASK, VOCAB)
    assert denoiser.device == torch.device("cpu") and denoiser.dtype == torch.float32
    original, ids, masked = masked_batch()
    logits = denoiser.logits(ids)
    check_rules(logits, original, masked)
    assert denoiser.anchor_logits(ids) is None
    # Padding: same shape, rules still hold on the real positions.
    attention = torch.ones_like(ids)
    attention[1, 8:] = 0
    check_rules(denoiser.logits(ids, attention_mask=attention), original, masked)


def test_modernbert_mask_token_from_tokenizer(tmp_path):
    """No mask_token_id in config.json: the tokenizer saved beside the model supplies it."""
    ModernBertForMaskedLM(modernbert_config()).save_pretrained(tmp_path)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"t{i}": i for i in range(len(vocab), VOCAB)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t3"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=SPECIAL_TOKENS[0],
                            mask_token=SPECIAL_TOKENS[1],
                            eos_token=SPECIAL_TOKENS[2]).save_pretrained(tmp_path)
    assert "mask_token_id" not in json.loads((tmp_path / "config.json").read_text())
    assert em.MaskedLMDenoiser(tmp_path).mask_token_id == MASK


def test_mask_token_unknown(tmp_path):
    ModernBertForMaskedLM(modernbert_config()).save_pretrained(tmp_path)
    with pytest.raises(em.UnsupportedModelError, match="mask_token_id"):
        em.MaskedLMDenoiser(tmp_path)
    assert em.MaskedLMDenoiser(tmp_path, mask_token_id=MASK).mask_token_id == MASK


def test_wraps_a_loaded_model():
    model = ModernBertForMaskedLM(modernbert_config(mask_token_id=MASK))
    denoiser = em.MaskedLMDenoiser(model, dtype=torch.bfloat16)
    assert denoiser.dtype == torch.bfloat16
    original, ids, masked = masked_batch()
    check_rules(denoiser.logits(ids), original, masked)


def test_not_a_masked_lm(tmp_path):
    GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2,
                               n_positions=32)).save_pretrained(tmp_path)
    with pytest.raises(em.UnsupportedModelError, match="not a masked LM"):
        em.MaskedLMDenoiser(tmp_path, mask_token_id=MASK)


@pytest.fixture
def remote_code_dir(tmp_path):
    """A tiny model whose config.json points at its own Python code (auto_map), LLaDA-style."""
    (tmp_path / "configuration_tiny_remote.py").write_text(REMOTE_CONFIG)
    (tmp_path / "modeling_tiny_remote.py").write_text(REMOTE_MODEL)
    package = f"tiny_remote_{tmp_path.name}"
    modules = {}
    for name in ("configuration_tiny_remote", "modeling_tiny_remote"):
        spec = importlib.util.spec_from_file_location(f"{package}.{name}", tmp_path / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[name]
        spec.loader.exec_module(modules[name])
    sys.modules[package] = type(sys)(package)
    modules["modeling_tiny_remote"].__package__ = package
    config = modules["configuration_tiny_remote"].TinyRemoteConfig()
    config.auto_map = {"AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
                       "AutoModel": "modeling_tiny_remote.TinyRemoteModel"}
    torch.manual_seed(0)
    modules["modeling_tiny_remote"].TinyRemoteModel(config).save_pretrained(tmp_path)
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith(package)]:
        del sys.modules[name]
    # transformers copies remote code into its modules cache, in a folder named after ours.
    shutil.rmtree(Path(HF_MODULES_CACHE) / "transformers_modules" / tmp_path.name,
                  ignore_errors=True)


def test_remote_code_needs_permission(remote_code_dir):
    with pytest.raises(em.RemoteCodeRequiredError, match="trust_remote_code=True"):
        em.MaskedLMDenoiser(remote_code_dir)
    with pytest.raises(em.RemoteCodeRequiredError):
        em.load_denoiser(remote_code_dir)
    denoiser = em.MaskedLMDenoiser(remote_code_dir, trust_remote_code=True)
    assert type(denoiser.model).__name__ == "TinyRemoteModel"
    assert denoiser.mask_token_id == MASK
    original, ids, masked = masked_batch()
    check_rules(denoiser.logits(ids), original, masked)


def test_missing_model_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(em.ModelNotFoundError, match="not a local directory"):
        em.MaskedLMDenoiser(tmp_path / "no-such-model")
    with pytest.raises(em.ModelNotFoundError, match="huggingface-cli download"):
        em.MaskedLMDenoiser("astdiffuse-tests/not-a-cached-model")
    with pytest.raises(em.ModelNotFoundError):
        em.load_denoiser("astdiffuse-tests/not-a-cached-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(em.ModelNotFoundError, match="without config.json"):
        em.MaskedLMDenoiser(tmp_path / "empty")
    assert time.monotonic() - start < 10  # offline: no network wait


def test_load_denoiser_picks_the_implementation(tmp_path, modernbert_dir):
    torch.manual_seed(0)
    model = em.AnchoredDiffusionModel(em.config_from_preset("tiny", VOCAB, mask_token_id=MASK))
    model.save_pretrained(tmp_path)
    anchored = em.load_denoiser(tmp_path)
    plain = em.load_denoiser(modernbert_dir)
    assert isinstance(anchored, em.AnchoredDiffusionModel)
    assert isinstance(plain, em.MaskedLMDenoiser)
    original, ids, masked = masked_batch()
    for denoiser in (anchored, plain):
        assert isinstance(denoiser, em.Denoiser)
        check_rules(denoiser.logits(ids), original, masked)
    check_rules(anchored.anchor_logits(ids), original, masked)
    assert plain.anchor_logits(ids) is None
