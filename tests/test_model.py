"""The anchored masked-diffusion LM: save/load, the SUBS rules, the loss, attention, presets, and a
tiny model that overfits a few sequences."""

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedTokenizerFast

import engine.model as em
from engine.tokens import SPECIAL_TOKENS

VOCAB = 64
MASK = 1


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_model(seed: int = 0, **overrides) -> em.AnchoredDiffusionModel:
    torch.manual_seed(seed)
    config = em.config_from_preset("tiny", VOCAB, **overrides)
    return em.AnchoredDiffusionModel(config).eval()


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Random non-special token ids [B, L]."""
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def with_masks(ids: torch.Tensor, every: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[:, 1::every] = True
    return ids.masked_fill(masked, MASK), masked


@pytest.fixture(scope="module")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with the astdiffuse special tokens at ids 0, 1, 2."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(["def f(x):\n    return x + 1\n"] * 20, trainer=trainer)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=SPECIAL_TOKENS[0],
                                   mask_token=SPECIAL_TOKENS[1], eos_token=SPECIAL_TOKENS[2])


# --- configuration, presets, save and load ------------------------------------------------------

def test_config_round_trip(tmp_path):
    config = em.config_from_preset("tiny", VOCAB, anchor_feed="logits", use_anchor=False,
                                   tie_word_embeddings=False, mask_token_id=5)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, em.AnchoredDiffusionConfig)
    expected = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
    assert {k: v for k, v in loaded.to_dict().items() if k != "_name_or_path"} == expected
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "astdiffuse-anchored"
    assert (loaded.anchor_feed, loaded.use_anchor, loaded.mask_token_id) == ("logits", False, 5)


def test_config_rejects_bad_arguments():
    with pytest.raises(ValueError, match="anchor_feed"):
        em.AnchoredDiffusionConfig(anchor_feed="both")
    with pytest.raises(ValueError, match="multiple"):
        em.AnchoredDiffusionConfig(hidden_size=65, num_attention_heads=4)
    with pytest.raises(ValueError, match="mask_token_id"):
        em.AnchoredDiffusionConfig(vocab_size=10, mask_token_id=10)


def test_presets():
    tiny = em.config_from_preset("tiny", 300)
    assert (tiny.hidden_size, tiny.num_anchor_layers, tiny.num_denoiser_layers) == (64, 2, 1)
    assert tiny.vocab_size == 300
    small = em.config_from_preset("small", 8192)
    assert small.num_denoiser_layers < small.num_anchor_layers
    count = sum(p.numel() for p in em.AnchoredDiffusionModel(small).parameters())
    assert 8e6 <= count <= 12e6
    with pytest.raises(em.UnknownPresetError, match="tiny, small"):
        em.config_from_preset("huge", 8192)
    with pytest.raises(ValueError, match="hiden_size"):
        em.config_from_preset("tiny", 8192, hiden_size=32)


@pytest.mark.parametrize("overrides", [
    dict(anchor_feed="hidden"),
    dict(anchor_feed="logits", tie_word_embeddings=False),
    dict(use_anchor=False),
], ids=["hidden-tied", "logits-untied", "mdlm"])
def test_save_load_round_trip(tmp_path, tiny_tokenizer, overrides):
    torch.manual_seed(0)
    config = em.config_from_preset("tiny", len(tiny_tokenizer), **overrides)
    model = em.AnchoredDiffusionModel(config).eval()
    em.save_model_and_tokenizer(model, tiny_tokenizer, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]

    ids, _ = with_masks(torch.randint(3, len(tiny_tokenizer), (2, 12)))
    expected = model(ids)
    direct = em.AnchoredDiffusionModel.from_pretrained(tmp_path).eval()
    auto = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    loaded, tokenizer = em.load_model_and_tokenizer(tmp_path, device="cpu")
    assert isinstance(auto, em.AnchoredDiffusionModel)
    assert tokenizer.mask_token_id == MASK
    for other in (direct, auto, loaded):
        out = other(ids)
        assert torch.equal(out.logits, expected.logits)
        if expected.anchor_logits is None:
            assert out.anchor_logits is None
        else:
            assert torch.equal(out.anchor_logits, expected.anchor_logits)


def test_load_missing_directory(tmp_path):
    with pytest.raises(em.ModelNotFoundError):
        em.load_model_and_tokenizer(tmp_path / "nothing")


# --- the SUBS rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("feed", ["hidden", "logits"])
def test_mask_token_never_predicted_and_visible_tokens_carried_over(feed):
    model = tiny_model(anchor_feed=feed)
    original = tokens(3, 20)
    ids, masked = with_masks(original)
    out = model(ids)
    for logits in (out.logits, out.anchor_logits):
        assert logits.shape == (3, 20, VOCAB)
        probs = logits.softmax(-1)
        assert torch.all(probs[..., MASK] == 0)
        assert torch.all(torch.isneginf(logits[..., MASK]))
        visible = probs[~masked]  # [n, V]
        assert torch.equal(visible.argmax(-1), original[~masked])
        assert torch.all(visible.max(-1).values == 1.0)
        assert torch.all((visible == 0) | (visible == 1))
        assert torch.all(probs[masked].max(-1).values < 1.0)  # real predictions where masked
    assert torch.equal(model.logits(ids), out.logits)
    assert torch.equal(model.anchor_logits(ids), out.anchor_logits)


def test_explicit_masked_positions_are_predicted():
    model = tiny_model()
    ids = tokens(1, 10)
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[0, 4] = True  # predict position 4 although its token is visible
    probs = model.logits(ids, masked=masked).softmax(-1)
    assert probs[0, 4].max() < 1.0
    assert probs[0, 5, ids[0, 5]] == 1.0


def test_mdlm_baseline_has_no_anchor():
    model = tiny_model(use_anchor=False)
    assert not model.has_anchor
    ids, _ = with_masks(tokens(2, 10))
    assert model(ids).anchor_logits is None
    assert model.anchor_logits(ids) is None
    assert model.config.num_hidden_layers == len(model.denoiser_layers) == 3


# --- the loss ------------------------------------------------------------------------------

def test_loss_ignores_unmasked_positions():
    model = tiny_model()
    labels = tokens(2, 12)
    ids, masked = with_masks(labels)
    base = model(ids, labels=labels, loss_weighting="mean").loss
    changed = labels.clone()
    changed[~masked] = (changed[~masked] + 1 - 3) % (VOCAB - 3) + 3
    assert torch.equal(model(ids, labels=changed, loss_weighting="mean").loss, base)
    changed = labels.clone()
    changed[masked] = (changed[masked] + 1 - 3) % (VOCAB - 3) + 3
    assert not torch.equal(model(ids, labels=changed, loss_weighting="mean").loss, base)


def test_elbo_and_mean_weighting():
    model = tiny_model(use_anchor=False)
    labels = tokens(2, 12)
    ids, masked = with_masks(labels)
    out = model(ids, labels=labels, loss_weighting="mean")
    ce = torch.nn.functional.cross_entropy(out.logits[masked], labels[masked], reduction="none")
    assert torch.allclose(out.loss, ce.mean())
    t = torch.tensor([0.25, 0.5])
    elbo = model(ids, labels=labels, t=t, loss_weighting="elbo").loss
    per_token = torch.zeros(labels.shape).masked_scatter(masked, ce)
    expected = (per_token.sum(-1) / t).sum() / labels.numel()
    assert torch.allclose(elbo, expected)
    halved = model(ids, labels=labels, t=t / 2, loss_weighting="elbo").loss
    assert torch.allclose(halved, 2 * elbo)
    # Without t, the masked fraction (4/12 here) stands in for it.
    implied = model(ids, labels=labels, loss_weighting="elbo").loss
    assert torch.allclose(implied, ce.sum() * 3 / labels.numel())
    with pytest.raises(ValueError, match="loss_weighting"):
        model(ids, labels=labels, loss_weighting="sum")


def test_loss_skips_padding_and_ignored_labels():
    model = tiny_model()
    labels = tokens(2, 12)
    ids, masked = with_masks(labels)
    base = model(ids, labels=labels, loss_weighting="mean").loss
    ignored = labels.clone()
    ignored[0, 1] = -100
    keep = masked.clone()
    keep[0, 1] = False
    out = model(ids, labels=ignored, loss_weighting="mean")
    ce = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    assert torch.allclose(out.loss, ce) and not torch.allclose(out.loss, base)


def test_anchor_term():
    labels = tokens(2, 12)
    ids, masked = with_masks(labels)
    weights = torch.zeros(2, 12)
    weights[:, 1] = 1.0  # an anchor at one masked position per row
    weights[:, 0] = 5.0  # and one at a visible position, which must not count

    plain = tiny_model(use_anchor=False)(ids, labels=labels, anchor_weights=weights)
    assert plain.anchor_loss == 0 and torch.equal(plain.loss, plain.nelbo)
    anchored = tiny_model()
    no_weights = anchored(ids, labels=labels)
    assert no_weights.anchor_loss == 0 and torch.equal(no_weights.loss, no_weights.nelbo)

    out = anchored(ids, labels=labels, anchor_weights=weights, loss_weighting="mean")
    assert out.anchor_loss > 0
    assert torch.allclose(out.loss, out.nelbo + out.anchor_loss)
    anchor_ce = torch.nn.functional.cross_entropy(out.anchor_logits[:, 1], labels[:, 1],
                                                  reduction="sum")
    assert torch.allclose(out.anchor_loss, anchor_ce / masked.sum())
    doubled = anchored(ids, labels=labels, anchor_weights=2 * weights, loss_weighting="mean")
    assert torch.allclose(doubled.anchor_loss, 2 * out.anchor_loss)
    assert torch.equal(doubled.nelbo, out.nelbo)


@pytest.mark.parametrize("feed", ["hidden", "logits"])
def test_forward_backward(feed):
    model = tiny_model(anchor_feed=feed).train()
    labels = tokens(2, 12)
    ids, _ = with_masks(labels)
    out = model(ids, labels=labels, t=torch.tensor([0.3, 0.6]),
                anchor_weights=torch.ones(2, 12))
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["anchor_layers.0.attn.qkv.weight"].abs().sum() > 0
    assert grads["denoiser_layers.0.mlp.fc_in.weight"].abs().sum() > 0
    if feed == "logits":
        assert grads["anchor_to_hidden.weight"].abs().sum() > 0


def test_bfloat16_forward():
    # dtype-agnostic code: the same path runs in bf16 (on CUDA in practice; CPU here).
    model = tiny_model().to(torch.bfloat16)
    labels = tokens(2, 12)
    ids, _ = with_masks(labels)
    out = model(ids, labels=labels, anchor_weights=torch.ones(2, 12))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    assert torch.all(out.logits.float().softmax(-1)[..., MASK] == 0)


# --- attention ----------------------------------------------------------------------------------

def test_attention_is_bidirectional():
    model = tiny_model()
    ids, _ = with_masks(tokens(1, 12))
    ids[0, 0] = MASK
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] - 3 + 1) % (VOCAB - 3) + 3
    assert not torch.allclose(model.logits(ids)[0, 0], model.logits(changed)[0, 0])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_does_not_change_real_positions(side):
    model = tiny_model()
    ids, _ = with_masks(tokens(1, 9))
    pad = torch.zeros(1, 5, dtype=torch.long)
    padded = torch.cat([ids, pad] if side == "right" else [pad, ids], dim=1)
    attention = (torch.arange(14) < 9) if side == "right" else (torch.arange(14) >= 5)
    real = slice(0, 9) if side == "right" else slice(5, 14)
    out = model.logits(padded, attention_mask=attention[None].long())
    # Rotary positions are relative, so even left padding leaves real positions unchanged.
    assert torch.allclose(out[0, real], model.logits(ids)[0], atol=1e-5)
    garbage = padded.clone()
    garbage[0, ~attention] = 7  # what the padding holds does not matter
    assert torch.allclose(model.logits(garbage, attention_mask=attention[None].long())[0, real],
                          out[0, real], atol=1e-5)


def test_too_long_sequence_is_refused():
    model = tiny_model(max_position_embeddings=16)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(tokens(1, 17))


# --- learning ---------------------------------------------------------------------------------

@pytest.mark.parametrize("use_anchor", [True, False], ids=["anchored", "mdlm"])
def test_tiny_model_overfits_four_sequences(use_anchor):
    """500 AdamW steps on 4 fixed sequences of 16 tokens with random masks (linear schedule)
    cut the loss under fixed evaluation masks by more than 4x (seeds 0-2 gave 5x to 29x)."""
    generator = torch.Generator().manual_seed(0)
    model = tiny_model(use_anchor=use_anchor).train()
    sequences = torch.randint(3, VOCAB, (4, 16), generator=generator)
    anchor_weights = torch.zeros(4, 16)
    anchor_weights[:, ::2] = 1.0

    def corrupt(t: torch.Tensor, gen: torch.Generator):
        labels = sequences.repeat(len(t) // 4, 1)
        masked = torch.rand(labels.shape, generator=gen) < t[:, None]
        masked[:, 0] |= ~masked.any(-1)
        return labels.masked_fill(masked, MASK), labels

    eval_ids, eval_labels = corrupt(torch.tensor([0.15, 0.3, 0.5, 0.7, 0.9]).repeat_interleave(4),
                                    torch.Generator().manual_seed(123))

    def evaluate() -> float:
        with torch.no_grad():
            return model(eval_ids, labels=eval_labels, loss_weighting="mean").nelbo.item()

    initial = evaluate()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(500):
        t = torch.rand(16, generator=generator) * 0.95 + 0.05
        ids, labels = corrupt(t, generator)
        out = model(ids, labels=labels, t=t, loss_weighting="mean",
                    anchor_weights=anchor_weights.repeat(4, 1) if use_anchor else None)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    final = evaluate()
    assert final < initial / 4, (initial, final)
