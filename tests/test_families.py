"""Published diffusion code LLMs loaded natively (no remote code): family detection, tiny Dream /
DiffuCoder / LLaDA checkpoints in their on-disk layout (tests/families.py) against a direct
forward of the native transformers class, the logit shift, bidirectional attention, padding,
the infill engine and CLI end to end, and the errors of broken checkpoints."""

import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM, Qwen2ForCausalLM

import engine.model as em
from engine.cli import main
from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest
from engine.model.families import (FAMILIES, SAMPLING_DEFAULTS, UnsupportedLayoutError,
                                   detect_family, dream_config, llada_config)
from engine.model.native import NativeDiffusionLM, load_native

from .families import make_dream_checkpoint, make_llada_checkpoint
from .paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FLAVOURS = ("dream", "diffucoder", "llada")
SAMPLE = (EXAMPLES / "sample.py").read_text(encoding="utf-8")

DREAM = {"architectures": ["DreamModel"], "model_type": "Dream",
         "auto_map": {"AutoConfig": "configuration_dream.DreamConfig",
                      "AutoModel": "modeling_dream.DreamModel"}}
LLADA = {"architectures": ["LLaDAModelLM"], "model_type": "llada", "block_type": "llama",
         "d_model": 4096, "n_layers": 32, "n_heads": 32,
         "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                      "AutoModel": "modeling_llada.LLaDAModelLM",
                      "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"}}
LLADA_MOE = {"architectures": ["LLaDAMoEModelLM"], "model_type": "llada", "hidden_size": 2048,
             "num_hidden_layers": 16, "num_experts": 64, "num_experts_per_tok": 8,
             "expert_intermediate_size": 1024, "dense_intermediate_size": 8192}

# LLaDA -> Llama weight names, written out here from the research notes (independent of
# engine.model.families): per-block ff_out is the down projection, top-level ff_out the head.
LLADA_NAMES = [(r"model\.transformer\.wte\.", "model.embed_tokens."),
               (r"model\.transformer\.ln_f\.", "model.norm."),
               (r"model\.transformer\.ff_out\.", "lm_head."),
               (r"\.attn_norm\.", ".input_layernorm."),
               (r"\.ff_norm\.", ".post_attention_layernorm."),
               (r"\.q_proj\.", ".self_attn.q_proj."), (r"\.k_proj\.", ".self_attn.k_proj."),
               (r"\.v_proj\.", ".self_attn.v_proj."), (r"\.attn_out\.", ".self_attn.o_proj."),
               (r"\.ff_proj\.", ".mlp.gate_proj."), (r"\.up_proj\.", ".mlp.up_proj."),
               (r"\.ff_out\.", ".mlp.down_proj."),
               (r"model\.transformer\.blocks\.", "model.layers.")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {"dream": make_dream_checkpoint(root / "dream"),
            "diffucoder": make_dream_checkpoint(root / "diffucoder", "diffucoder", seed=1),
            "llada": make_llada_checkpoint(root / "llada", seed=2, shards=2)}


@pytest.fixture(scope="module")
def denoisers(checkpoints):
    return {name: em.load_denoiser(path) for name, path in checkpoints.items()}


def raw_config(path) -> dict:
    return json.loads((path / "config.json").read_text())


def llama_name(key: str) -> str:
    for pattern, target in LLADA_NAMES:
        key = re.sub(pattern, target, key)
    return key


def reference(path, causal: bool = False):
    """The native class built from the converted config and the renamed state dict."""
    config = raw_config(path)
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    if config["model_type"] == "llada":
        model = LlamaForCausalLM(llada_config(config))
        state = {llama_name(k): v for k, v in state.items()}
    else:
        model = Qwen2ForCausalLM(dream_config(config))
    model.load_state_dict(state, strict=True)
    if not causal:
        for module in model.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = False
    return model.eval()


@torch.no_grad()
def reference_logits(model, ids, attention=None):
    """Raw logits of a bidirectional forward: key-padding 4D additive mask, arange positions."""
    keep = torch.ones_like(ids, dtype=torch.bool) if attention is None else attention.bool()
    bias = torch.zeros(ids.shape[0], 1, 1, ids.shape[1]).masked_fill(
        ~keep[:, None, None, :], torch.finfo(torch.float32).min)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    return model(input_ids=ids, attention_mask=bias, position_ids=positions,
                 is_causal=False).logits


def random_ids(length=12, rows=2, seed=0, high=390):
    return torch.randint(0, high, (rows, length), generator=torch.Generator().manual_seed(seed))


# --- detection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config, family", [
    (DREAM, "dream"),
    ({"model_type": "dream"}, "dream"),
    ({"architectures": ["DreamModel"]}, "dream"),
    ({**DREAM, "mask_token_id": 151666, "pad_token_id": 151643}, "dream"),  # DiffuCoder
    (LLADA, "llada"),
    ({"architectures": ["LLaDAModelLM"], "block_type": "llama", "d_model": 8, "n_layers": 1,
      "n_heads": 1}, "llada"),
    ({"model_type": em.MODEL_TYPE}, "anchored"),
    ({"model_type": "modernbert", "architectures": ["ModernBertForMaskedLM"]}, "masked-lm"),
])
def test_detect_family(config, family):
    assert detect_family(config) == family


def test_detect_family_override_and_unknown():
    assert detect_family({"model_type": "gpt2"}, family="dream") == "dream"
    assert set(FAMILIES) == {"anchored", "dream", "llada", "masked-lm"}
    with pytest.raises(em.UnsupportedModelError, match="unknown model family 'qwen'"):
        detect_family(DREAM, family="qwen")
    with pytest.raises(em.UnsupportedModelError) as caught:
        detect_family({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    message = str(caught.value)
    for expected in ("'gpt2'", "GPT2LMHeadModel", "dream", "llada", "masked-lm", "anchored"):
        assert expected in message


def test_llada_moe_and_other_layouts_refused(tmp_path):
    with pytest.raises(UnsupportedLayoutError, match="mixture-of-experts.*num_experts"):
        detect_family(LLADA_MOE)
    with pytest.raises(UnsupportedLayoutError, match="block_type='sequential'"):
        detect_family({**LLADA, "block_type": "sequential"})
    with pytest.raises(UnsupportedLayoutError, match="alibi=True"):
        llada_config({**LLADA, "alibi": True})
    (tmp_path / "config.json").write_text(json.dumps({**LLADA_MOE, "auto_map": LLADA["auto_map"]}))
    for trust in (False, True):  # refused, not handed to its own code
        with pytest.raises(UnsupportedLayoutError, match="LLaDA-MoE"):
            em.load_denoiser(tmp_path, trust_remote_code=trust)


def test_unknown_remote_code_model_still_needs_permission(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "tiny-remote-dlm", "auto_map": {"AutoModel": "modeling_x.X"}}))
    with pytest.raises(em.RemoteCodeRequiredError, match="trust_remote_code=True"):
        em.load_denoiser(tmp_path)


# --- the tiny checkpoints against the native classes --------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_loads_natively_with_the_family_logit_convention(flavour, checkpoints, denoisers):
    path, denoiser = checkpoints[flavour], denoisers[flavour]
    config = raw_config(path)
    assert "auto_map" in config and not list(path.glob("*.py"))  # no code to run, none needed
    assert isinstance(denoiser, NativeDiffusionLM) and isinstance(denoiser, em.Denoiser)
    family = "llada" if flavour == "llada" else "dream"
    assert (denoiser.family, denoiser.shift_logits) == (family, family == "dream")
    assert type(denoiser.model) is (LlamaForCausalLM if family == "llada" else Qwen2ForCausalLM)
    assert denoiser.mask_token_id == config["mask_token_id"]
    assert denoiser.vocab_size == config["vocab_size"]
    assert denoiser.device == torch.device("cpu") and denoiser.dtype == torch.float32
    assert denoiser.anchor_logits(random_ids()) is None
    usable = denoiser.usable_vocab
    assert usable is not None and usable < denoiser.vocab_size  # embedding rows past the tokenizer

    ids = random_ids(seed=3)
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[:, 3:9] = True
    ids = ids.masked_fill(masked, denoiser.mask_token_id)
    raw = reference_logits(reference(path), ids)
    logits = denoiser.logits(ids, masked=masked)
    # Explicit shift: wrapper position i is raw position i - 1 for Dream, i for LLaDA.
    source = torch.arange(ids.shape[1]) - (1 if family == "dream" else 0)
    expected = raw[:, source.clamp_min(0)]
    keep = torch.ones(denoiser.vocab_size, dtype=torch.bool)
    keep[denoiser.mask_token_id] = False
    keep[usable:] = False
    torch.testing.assert_close(logits[masked][:, keep], expected[masked][:, keep])
    assert torch.isinf(logits[masked][:, ~keep]).all()
    assert torch.equal(logits[~masked].argmax(-1), ids[~masked])  # SUBS: visible carried over
    assert (logits[~masked].softmax(-1).max(-1).values == 1).all()
    unshifted = denoiser.forward_logits(ids)
    torch.testing.assert_close(unshifted[..., :usable], expected[..., :usable])
    if family == "dream":
        torch.testing.assert_close(unshifted[:, 5, :usable], raw[:, 4, :usable])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_attention_is_bidirectional(flavour, checkpoints, denoisers):
    denoiser = denoisers[flavour]
    ids = random_ids(seed=4)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 7) % 390
    first = denoiser.forward_logits(ids)[:, 0, :denoiser.usable_vocab]
    first_changed = denoiser.forward_logits(changed)[:, 0, :denoiser.usable_vocab]
    assert (first - first_changed).abs().max() > 1e-3
    causal = reference(checkpoints[flavour], causal=True)
    with torch.no_grad():
        assert torch.equal(causal(ids).logits[:, 0], causal(changed).logits[:, 0])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_right_padding_leaves_real_positions_alone(flavour, denoisers):
    denoiser = denoisers[flavour]
    row = random_ids(length=9, rows=1, seed=5)
    padded = torch.cat([row, torch.full((1, 5), 1)], dim=1)
    batch = torch.cat([padded, random_ids(length=14, rows=1, seed=6)])
    attention = torch.ones_like(batch)
    attention[0, 9:] = 0
    alone = denoiser.forward_logits(row)
    together = denoiser.forward_logits(batch, attention)
    usable = denoiser.usable_vocab
    torch.testing.assert_close(together[:1, :9, :usable], alone[..., :usable], rtol=1e-4,
                               atol=1e-4)


def test_eager_attention_matches_sdpa(checkpoints, denoisers):
    path = checkpoints["dream"]
    eager = load_native(path, raw_config(path), "dream", attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"
    ids = random_ids(seed=7)
    attention = torch.ones_like(ids)
    attention[1, 8:] = 0
    usable = eager.usable_vocab
    torch.testing.assert_close(eager.forward_logits(ids, attention)[..., :usable],
                               denoisers["dream"].forward_logits(ids, attention)[..., :usable],
                               rtol=1e-4, atol=1e-4)


def test_tied_llada_and_dtype(tmp_path):
    path = make_llada_checkpoint(tmp_path / "tied", weight_tying=True)
    denoiser = em.load_denoiser(path, dtype=torch.bfloat16)
    assert denoiser.dtype == torch.bfloat16
    assert denoiser.model.lm_head.weight is denoiser.model.get_input_embeddings().weight
    assert denoiser.model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.isfinite(denoiser.forward_logits(random_ids())[..., :denoiser.usable_vocab]).all()


def test_sampling_defaults_are_infill_options():
    names = {f.name for f in dataclasses.fields(InfillOptions)}
    assert SAMPLING_DEFAULTS["dream"] == {"order": "entropy", "temperature": 0.2, "top_p": 0.95}
    assert SAMPLING_DEFAULTS["llada"] == {"order": "confidence", "temperature": 0.0}
    for defaults in SAMPLING_DEFAULTS.values():
        assert set(defaults) <= names
        InfillOptions(**defaults).check()


# --- end to end ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_infill_engine_end_to_end(flavour, checkpoints):
    engine = InfillEngine.load(checkpoints[flavour], device="cpu")
    assert isinstance(engine.model, NativeDiffusionLM)
    tokenizer = engine.tokenizer.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") in engine.tokenizer.end_ids
    if flavour == "diffucoder":
        assert tokenizer.convert_tokens_to_ids("<|dlm_pad|>") in engine.tokenizer.end_ids
    cursor = SAMPLE.encode().index(b"return self.price")
    result = engine.infill(InfillRequest(
        text=SAMPLE, language="python", ranges=[ByteRange(cursor, cursor)],
        options=InfillOptions(steps=2, repair_rounds=1, length_candidates=2,
                              **engine.model.sampling_defaults)))
    assert result.candidates and result.steps >= 2
    assert all(c.text.startswith('"""A small inventory') for c in result.candidates)


def test_cli_infill(checkpoints, capsys):
    assert SAMPLE.splitlines()[19].strip() == "restocked = 0"
    code = main(["infill", "examples/sample.py", "--lines", "20:20", "--model",
                 str(checkpoints["llada"]), "--json", "--steps", "2", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out)
    assert code in (0, 1)  # random weights: a valid candidate is luck
    assert out["candidates"] and out["model"] == str(checkpoints["llada"])


# --- broken checkpoints ------------------------------------------------------------------------

def rewrite(path, change):
    file = path / "model.safetensors"
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


def test_missing_weights(tmp_path):
    path = make_dream_checkpoint(tmp_path / "dream")
    rewrite(path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(em.ModelLoadError, match=r"1 missing \(model\.layers\.1\.mlp\.up_proj"):
        em.load_denoiser(path)


def test_wrong_key_names(tmp_path):
    path = make_llada_checkpoint(tmp_path / "llada")
    rewrite(path, lambda t: t.update({"model.transformer.embed.weight":
                                      t.pop("model.transformer.wte.weight")}))
    with pytest.raises(em.ModelLoadError) as caught:
        em.load_denoiser(path)
    message = str(caught.value)
    assert "missing (model.embed_tokens.weight)" in message
    assert "unexpected (model.transformer.embed.weight)" in message and "llada" in message


def test_shape_mismatch_and_no_weights(tmp_path):
    path = make_dream_checkpoint(tmp_path / "dream")
    rewrite(path, lambda t: t.update({"model.norm.weight": torch.ones(32)}))
    with pytest.raises(em.ModelLoadError, match="shape"):
        em.load_denoiser(path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(em.ModelLoadError, match="no safetensors.*pytorch_model.bin"):
        em.load_denoiser(path)


def test_device_map(checkpoints):
    """device_map="auto" goes through accelerate (a dev dependency): on a machine without a GPU
    everything lands on the CPU and the logits are those of a plain load."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        with pytest.raises(em.ModelLoadError, match="pip install accelerate"):
            em.load_denoiser(checkpoints["dream"], device_map="auto")
        return
    plain = em.load_denoiser(checkpoints["dream"], device="cpu")
    mapped = em.load_denoiser(checkpoints["dream"], device_map="auto")
    ids = torch.randint(5, 300, (1, 20), generator=torch.Generator().manual_seed(0))
    ids[0, 5:9] = plain.mask_token_id
    torch.testing.assert_close(mapped.logits(ids.to(mapped.device)).cpu(), plain.logits(ids),
                               atol=1e-5, rtol=1e-5)


def test_mask_token_from_tokenizer_or_refused(tmp_path):
    path = make_dream_checkpoint(tmp_path / "dream")
    config = raw_config(path)
    mask = config.pop("mask_token_id")
    (path / "config.json").write_text(json.dumps(config))
    assert em.load_denoiser(path).mask_token_id == mask  # from the tokenizer saved beside it
    assert em.load_denoiser(path, mask_token_id=3).mask_token_id == 3
    tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    del tokenizer_config["mask_token"]
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    # Dream's published id 151666 is past this tiny vocabulary: refused before any weight loads.
    with pytest.raises(em.UnsupportedModelError, match="no usable mask token id.*151666"):
        em.load_denoiser(path)


def test_family_defaults_reach_the_engine(checkpoints):
    engine = InfillEngine.load(checkpoints["dream"], device="cpu")
    assert engine.sampling_defaults["order"] == "entropy"
    options = engine.default_options(seed=3)
    assert (options.order, options.temperature, options.seed) == ("entropy", 0.2, 3)
    assert engine.default_options(temperature=0.7).temperature == 0.7
