"""Published diffusion code LLMs loaded natively (no remote code), one test set per family of
the table in engine.model.families: detection, tiny checkpoints in each family's published
on-disk layout (tests/families.py) against a direct forward of the native transformers class
under the family's conventions, their tokenizers as published, frames and special tokens, the
logit shift, bidirectional attention, padding, the engine and CLI end to end, and the errors of
broken checkpoints."""

import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

import engine.model as em
from engine.cli import main
from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest
from engine.infill.candidates import decode_row
from engine.model.families import (AUTHORS_ONLY, FAMILIES, SAMPLING_DEFAULTS, SPECS,
                                   UnsupportedLayoutError, checkpoint_by_name, detect_family,
                                   llada_config, qwen2_config, qwen3_config, sampling_for)
from engine.model.native import NativeDiffusionLM, load_native
from engine.model.tokenizer_files import load_published_tokenizer

from engine.benchmarks.published_layouts import (CODA_SPECIALS, LAYOUT_MAKERS, LLADA_SPECIALS,
                                                 QWEN_SPECIALS, dream_specials,
                                                 make_dream_checkpoint, make_llada_checkpoint,
                                                 tokenizer_reference)
from .paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FLAVOURS = tuple(LAYOUT_MAKERS)  # dream, diffucoder, dreamon, open-dcoder, coda, llada
SAMPLE = (EXAMPLES / "sample.py").read_text(encoding="utf-8")
# What each published layout must load as: family, native class, logit shift.
EXPECTED = {"dream": ("dream", Qwen2ForCausalLM, True),
            "diffucoder": ("diffucoder", Qwen2ForCausalLM, True),
            "dreamon": ("dreamon", Qwen2ForCausalLM, True),
            "open-dcoder": ("open-dcoder", Qwen2ForCausalLM, True),
            "coda": ("coda", Qwen3ForCausalLM, True),
            "llada": ("llada", LlamaForCausalLM, False)}
SPECIALS = {"dream": dream_specials("dream"), "diffucoder": dream_specials("diffucoder"),
            "dreamon": dream_specials("dreamon"), "open-dcoder": QWEN_SPECIALS + ["<M>"],
            "coda": CODA_SPECIALS, "llada": LLADA_SPECIALS}

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
LLADA2 = {"architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe",
          "auto_map": {"AutoConfig": "configuration_llada2_moe.LLaDA2MoeConfig",
                       "AutoModelForCausalLM": "modeling_llada2_moe.LLaDA2MoeModelLM"}}
QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
CODA = {"architectures": ["CoDALanguageModel"], "model_type": "CoDA"}

# LLaDA -> Llama weight names, written out here from the research notes (independent of
# engine.model.layouts): per-block ff_out is the down projection, top-level ff_out the head.
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
def denoisers(checkpoints):
    return {name: em.load_denoiser(path) for name, path in checkpoints.items()}


def raw_config(path) -> dict:
    return json.loads((path / "config.json").read_text())


def llama_name(key: str) -> str:
    for pattern, target in LLADA_NAMES:
        key = re.sub(pattern, target, key)
    return key


def reference(path, causal: bool = False):
    """The native class built from the converted config and the (renamed) state dict, tied
    when the checkpoint has no head."""
    config = raw_config(path)
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    kind = config["model_type"].lower()
    if kind == "llada":
        native = llada_config(config)
        state = {llama_name(k): v for k, v in state.items()}
        model_class = LlamaForCausalLM
    elif kind == "coda":
        native, model_class = qwen3_config(config), Qwen3ForCausalLM
    else:
        native, model_class = qwen2_config(config), Qwen2ForCausalLM
    native.tie_word_embeddings = "lm_head.weight" not in state
    model = model_class(native)
    model.load_state_dict(state, strict=not native.tie_word_embeddings)
    if native.tie_word_embeddings:
        model.lm_head.weight = model.get_input_embeddings().weight
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


# --- the table and detection -------------------------------------------------------------------

def test_one_spec_per_family_and_every_table_derived():
    assert FAMILIES == tuple(spec.name for spec in SPECS)
    assert set(FAMILIES) == {"anchored", "dream", "diffucoder", "dreamon", "open-dcoder", "coda",
                             "llada", "masked-lm"}
    names = {f.name for f in dataclasses.fields(InfillOptions)}
    shorts = [c.short for s in SPECS for c in s.checkpoints]
    assert len(shorts) == len(set(shorts))  # pull's short names are unambiguous
    for spec in SPECS:
        for sampling in [spec.sampling] + [c.sampling for c in spec.checkpoints]:
            assert set(sampling) <= names
            InfillOptions(**sampling).check()
        assert spec.sampling == SAMPLING_DEFAULTS.get(spec.name, {})
        if spec.sampling:
            assert spec.sampling_source  # every default says where it comes from
        for checkpoint in spec.checkpoints:
            assert not checkpoint.sampling or checkpoint.source
    assert set(AUTHORS_ONLY) <= names


@pytest.mark.parametrize("config, tokens, has_mask, family", [
    (DREAM, set(), False, "dream"),
    ({"model_type": "dream"}, set(), False, "dream"),
    ({**DREAM, "mask_token_id": 151666}, {"<|dlm_pad|>"}, True, "diffucoder"),
    (DREAM, {"<|expand|>", "<|mask|>"}, True, "dreamon"),
    (QWEN2, {"<M>"}, True, "open-dcoder"),
    (CODA, set(), False, "coda"),
    (LLADA, set(), False, "llada"),
    ({"architectures": ["LLaDAModelLM"], "block_type": "llama", "d_model": 8, "n_layers": 1,
      "n_heads": 1}, set(), False, "llada"),
    ({"model_type": "illada", "architectures": ["ILLaDAForCausalLM"], "hidden_size": 64},
     set(), False, "llada"),
    ({"model_type": em.MODEL_TYPE}, set(), False, "anchored"),
    ({"model_type": "modernbert", "architectures": ["ModernBertForMaskedLM"]}, set(), True,
     "masked-lm"),
])
def test_detect_family(config, tokens, has_mask, family):
    assert detect_family(config, tokens=frozenset(tokens), has_mask_token=has_mask) == family


def test_detect_family_override_and_unknown():
    assert detect_family({"model_type": "gpt2"}, family="dream") == "dream"
    with pytest.raises(em.UnsupportedModelError, match="unknown model family 'qwen'"):
        detect_family(DREAM, family="qwen")
    with pytest.raises(em.UnsupportedModelError) as caught:
        detect_family({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    message = str(caught.value)
    for expected in ("'gpt2'", "GPT2LMHeadModel", *FAMILIES):
        assert expected in message
    # a plain Qwen2.5 (no mask token) is an autoregressive LM, not Open-dCoder: said so
    with pytest.raises(em.UnsupportedModelError, match="only when its tokenizer has a mask"):
        detect_family(QWEN2)


def test_moe_layouts_refused_natively_but_offered_their_own_code(tmp_path):
    with pytest.raises(UnsupportedLayoutError, match="mixture-of-experts.*num_experts"):
        detect_family(LLADA_MOE)
    with pytest.raises(UnsupportedLayoutError, match="llada2_moe.*trust_remote_code=True"):
        detect_family(LLADA2)
    with pytest.raises(UnsupportedLayoutError, match="block_type='sequential'"):
        detect_family({**LLADA, "block_type": "sequential"})
    with pytest.raises(UnsupportedLayoutError, match="alibi=True"):
        llada_config({**LLADA, "alibi": True})
    (tmp_path / "config.json").write_text(json.dumps({**LLADA_MOE, "auto_map": LLADA["auto_map"]}))
    with pytest.raises(UnsupportedLayoutError, match="trust_remote_code=True"):
        em.load_denoiser(tmp_path)
    # with permission it goes to its own code (absent here: a clear load error, not a refusal)
    with pytest.raises(em.ModelLoadError) as caught:
        em.load_denoiser(tmp_path, trust_remote_code=True)
    assert not isinstance(caught.value, UnsupportedLayoutError)


def test_unknown_remote_code_model_still_needs_permission(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "tiny-remote-dlm", "auto_map": {"AutoModel": "modeling_x.X"}}))
    with pytest.raises(em.RemoteCodeRequiredError, match="trust_remote_code=True"):
        em.load_denoiser(tmp_path)


def test_known_checkpoints_and_their_sampling():
    spec, checkpoint = checkpoint_by_name("dream-coder-7b-instruct")
    assert (spec.name, checkpoint.repo) == ("dream", "Dream-org/Dream-Coder-v0-Instruct-7B")
    assert checkpoint_by_name("/models/Dream-Coder-v0-Instruct-7B/")[1] is checkpoint
    assert checkpoint_by_name(
        "/h/hub/models--Dream-org--Dream-Coder-v0-Instruct-7B/snapshots/abc")[1] is checkpoint
    assert checkpoint_by_name("my-model") is None
    assert sampling_for("dream", "Dream-org/Dream-Coder-v0-Instruct-7B")[0]["temperature"] == 0.1
    assert sampling_for("dream", "somewhere/else")[0]["temperature"] == 0.2
    assert sampling_for("diffucoder", "apple/DiffuCoder-7B-Instruct")[0]["temperature"] == 0.3
    assert sampling_for("dreamon")[0]["top_p"] == 0.9


# --- the tiny checkpoints against the native classes --------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_published_tokenizer_gives_the_published_ids(flavour, checkpoints):
    path = checkpoints[flavour]
    if flavour in ("dream", "diffucoder", "dreamon"):  # the slow DreamTokenizer's files only
        assert not (path / "tokenizer.json").exists() and (path / "merges.txt").is_file()
        assert "auto_map" in json.loads((path / "tokenizer_config.json").read_text())
    tokenizer = load_published_tokenizer(path)
    expected = tokenizer_reference(SPECIALS[flavour])
    text = SAMPLE + "\nnaïve = 'héllo'  # \t tabs\r\n" + "".join(SPECIALS[flavour][:3])
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == expected.encode(
        text, add_special_tokens=False).ids
    for token in SPECIALS[flavour]:
        assert tokenizer.convert_tokens_to_ids(token) == expected.token_to_id(token)
    assert tokenizer.decode(expected.encode(SAMPLE).ids) == SAMPLE


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_loads_natively_with_the_family_logit_convention(flavour, checkpoints, denoisers):
    path, denoiser = checkpoints[flavour], denoisers[flavour]
    config = raw_config(path)
    family, model_class, shifted = EXPECTED[flavour]
    assert "auto_map" in config and not list(path.glob("*.py"))  # no code to run, none needed
    assert isinstance(denoiser, NativeDiffusionLM) and isinstance(denoiser, em.Denoiser)
    assert (denoiser.family, denoiser.shift_logits) == (family, shifted)
    assert type(denoiser.model) is model_class
    mask = config.get("mask_token_id") or load_published_tokenizer(path).mask_token_id
    assert denoiser.mask_token_id == mask
    assert denoiser.vocab_size == config.get("vocab_size", config.get("embedding_size"))
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
    # Explicit shift: wrapper position i is raw position i - 1 for shifted families.
    source = torch.arange(ids.shape[1]) - (1 if shifted else 0)
    expected = raw[:, source.clamp_min(0)]
    keep = torch.ones(denoiser.vocab_size, dtype=torch.bool)
    keep[denoiser.mask_token_id] = False
    keep[usable:] = False
    assert (logits[masked][:, keep] - expected[masked][:, keep]).abs().max() <= 1e-4
    assert torch.isinf(logits[masked][:, ~keep]).all()
    assert torch.equal(logits[~masked].argmax(-1), ids[~masked])  # SUBS: visible carried over
    assert (logits[~masked].softmax(-1).max(-1).values == 1).all()
    unshifted = denoiser.forward_logits(ids)
    assert (unshifted[..., :usable] - expected[..., :usable]).abs().max() <= 1e-4
    if shifted:
        torch.testing.assert_close(unshifted[:, 5, :usable], raw[:, 4, :usable])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_logits_at_the_wanted_positions_only(flavour, denoisers):
    """The LM head only at masked positions: the same logits as the full pass there."""
    denoiser = denoisers[flavour]
    ids = random_ids(seed=9, rows=2, length=14)
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[0, 0:3] = masked[1, 5:11] = True  # position 0 too: shifted families read row 0
    ids = ids.masked_fill(masked, denoiser.mask_token_id)
    attention = torch.ones_like(ids)
    attention[0, 12:] = 0
    full = denoiser.logits(ids, attention_mask=attention, masked=masked)
    rows, columns = masked.nonzero(as_tuple=True)
    packed = denoiser.logits_at(ids, attention, rows, columns)
    usable = denoiser.usable_vocab
    torch.testing.assert_close(packed[:, :usable], full[rows, columns][:, :usable], rtol=1e-5,
                               atol=1e-5)
    assert torch.isinf(packed[:, denoiser.mask_token_id]).all()


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


def test_llada_rotates_q_and_k_in_float32(checkpoints):
    """rope_full_precision (published true): in bf16, q and k are rotated in float32 and cast
    back, as OLMo's RotaryEmbedding does; the attention sees exactly that."""
    from transformers.models.llama.modeling_llama import rotate_half

    denoiser = em.load_denoiser(checkpoints["llada"], dtype=torch.bfloat16)
    attention = denoiser.model.model.layers[0].self_attn
    seen = {}
    attention.q_proj.register_forward_hook(lambda m, a, out: seen.update(q=out))
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = denoiser.model.config._attn_implementation
    assert name.startswith("astdiffuse_rope32_")
    inner = ALL_ATTENTION_FUNCTIONS[name]

    def spy(module, query, key, value, *args, **kwargs):
        if module is attention:
            seen["rotated"] = query
        return inner(module, query, key, value, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS[name] = spy
    try:
        ids = random_ids(rows=1, seed=8)
        denoiser.forward_logits(ids)
    finally:
        ALL_ATTENTION_FUNCTIONS[name] = inner
    heads, dim = attention.config.num_attention_heads, attention.head_dim
    q = seen["q"].view(1, ids.shape[1], heads, dim).transpose(1, 2)
    positions = torch.arange(ids.shape[1])[None]
    cos, sin = denoiser.model.model.rotary_emb.forward(q.float(), positions)
    full = ((q.float() * cos[:, None]) + rotate_half(q.float()) * sin[:, None]).to(q.dtype)
    # rotated in float32; the attention function casts it back before attending
    assert seen["rotated"].dtype == torch.float32
    assert torch.equal(seen["rotated"].to(q.dtype), full)
    half = (q * cos[:, None].to(q.dtype)) + rotate_half(q) * sin[:, None].to(q.dtype)
    assert not torch.equal(seen["rotated"].to(q.dtype), half)  # what a bf16 rotation would have given


# --- frames and special tokens -----------------------------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_canvas_frame_as_trained(flavour, checkpoints):
    engine = InfillEngine.load(checkpoints[flavour], device="cpu")
    tokenizer = engine.tokenizer
    start = {"dream": "<|beginoftext|>", "diffucoder": "<|beginoftext|>",
             "dreamon": "<|beginoftext|>", "llada": "<|startoftext|>"}.get(flavour)
    end = "<|endoftext|>" if flavour == "dreamon" else None
    ids = lambda token: [] if token is None else [tokenizer.token_id(token)]  # noqa: E731
    assert (tokenizer.frame_start, tokenizer.frame_end) == (ids(start), ids(end))
    from engine.infill.canvas import build_canvas
    from engine.syntax import SourceDocument, masked_spans

    doc = SourceDocument(SAMPLE[:200], "python")  # a hole at the very start of the file
    spans = masked_spans(doc, [(0, 10)], "node")
    canvas = build_canvas(doc, spans, tokenizer, budget=128, length_count=1)
    row = canvas.input_ids[0].tolist()
    assert row[:len(ids(start))] == ids(start)
    assert canvas.slots[0][0][0] == len(ids(start))  # the mask run follows the frame
    assert row[len(row) - len(ids(end)):] == ids(end) or not ids(end)


def test_no_special_token_reaches_the_text(tmp_path):
    """DiffuCoder whose tokenizer config does not call <|dlm_pad|> its pad: still an end token;
    any other special token the model writes is dropped, never written into the file."""
    path = make_dream_checkpoint(tmp_path / "diffucoder", "diffucoder", pad_role=False)
    engine = InfillEngine.load(path, device="cpu")
    tokenizer = engine.tokenizer
    assert tokenizer.tokenizer.pad_token == "<|endoftext|>"
    dlm_pad = tokenizer.token_id("<|dlm_pad|>")
    assert dlm_pad in tokenizer.end_ids
    from engine.infill.canvas import build_canvas
    from engine.syntax import SourceDocument, masked_spans

    text = "x = compute()\ny = 2\n"
    doc = SourceDocument(text, "python")
    canvas = build_canvas(doc, masked_spans(doc, [(0, 13)], "node"), tokenizer, budget=64,
                          length_count=1, lengths=[8])
    start, length = canvas.slots[0][0]
    written = tokenizer.encode("x")[0].tolist() + [tokenizer.token_id("<|im_start|>")] + \
        tokenizer.encode(" = 1")[0].tolist() + [dlm_pad, dlm_pad]
    ids = canvas.input_ids.clone()
    ids[0, start:start + len(written)] = torch.tensor(written)
    decoded = decode_row(canvas, ids, 0, tokenizer)
    assert decoded.texts == ["x = 1"]
    for flavour in SPECIALS:
        for token in SPECIALS[flavour]:
            assert token not in decoded.texts[0]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_infill_engine_end_to_end(flavour, checkpoints):
    engine = InfillEngine.load(checkpoints[flavour], device="cpu")
    assert isinstance(engine.model, NativeDiffusionLM)
    cursor = SAMPLE.encode().index(b"return self.price")
    result = engine.infill(InfillRequest(
        text=SAMPLE, language="python", ranges=[ByteRange(cursor, cursor)],
        options=engine.default_options(steps=2, repair_rounds=1, length_candidates=2)))
    assert result.candidates and result.steps >= 2
    specials = [t for t in SPECIALS[flavour]]
    for candidate in result.candidates:
        assert candidate.text.startswith('"""A small inventory')
        for edit in candidate.spans:
            assert not any(token in edit.new_text for token in specials), edit.new_text


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cli_infill(flavour, checkpoints, capsys):
    assert SAMPLE.splitlines()[19].strip() == "restocked = 0"
    code = main(["infill", "examples/sample.py", "--lines", "20:20", "--model",
                 str(checkpoints[flavour]), "--json", "--steps", "2", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out)
    assert code in (0, 1)  # random weights: a valid candidate is luck
    assert out["candidates"] and out["model"] == str(checkpoints[flavour])
    for candidate in out["candidates"]:
        for edit in candidate["spans"]:
            assert not any(token in edit["new_text"] for token in SPECIALS[flavour])


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
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = json.loads((path / name).read_text())
        del data["mask_token"]
        (path / name).write_text(json.dumps(data))
    # no role names it: the family's mask token string, looked up in the vocabulary
    assert em.load_denoiser(path).mask_token_id == mask
    data = json.loads((path / "tokenizer_config.json").read_text())
    data["added_tokens_decoder"][str(mask)]["content"] = "<|other|>"
    (path / "tokenizer_config.json").write_text(json.dumps(data))
    # Dream's published id 151666 is past this tiny vocabulary: refused before any weight loads.
    with pytest.raises(em.UnsupportedModelError, match="no usable mask token id.*151666"):
        em.load_denoiser(path)


def test_family_defaults_reach_the_engine(checkpoints):
    engine = InfillEngine.load(checkpoints["dream"], device="cpu")
    assert engine.sampling_defaults["order"] == "entropy"
    options = engine.default_options(seed=3)
    assert (options.order, options.temperature, options.seed) == ("entropy", 0.2, 3)
    assert engine.default_options(temperature=0.7).temperature == 0.7


def test_the_docs_tables_are_the_family_table():
    """README's checkpoint table and docs/real-models.md's family table are generated from the
    specs (`python -m engine models --markdown ...`); these copies must not drift."""
    from engine.model.families import checkpoints_table, families_table

    from .paths import ROOT

    assert checkpoints_table() in (ROOT / "README.md").read_text(encoding="utf-8")
    assert families_table() in (ROOT / "docs" / "real-models.md").read_text(encoding="utf-8")
