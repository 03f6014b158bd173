"""Which kind of model a checkpoint holds, and how the published diffusion code LLMs map onto
native transformers classes, so they load without running their own code (trust_remote_code).

Families (`detect_family` reads config.json):
- "anchored": our `AnchoredDiffusionModel` (model_type "astdiffuse-anchored").
- "dream": Dream, Dream-Coder and DiffuCoder (model_type "Dream", architectures ["DreamModel"]).
  A Qwen2 network with bidirectional attention: config fields and weight names are Qwen2's, so
  the weights load into `Qwen2ForCausalLM` as they are. The logit at position i predicts token
  i + 1 (kept from the autoregressive initialisation): logits shift right by one.
- "llada": LLaDA 8B Base / Instruct / 1.5 (model_type "llada", architectures ["LLaDAModelLM"],
  block_type "llama"). An OLMo-style config over a Llama network with bidirectional attention:
  fields and weight names are renamed to `LlamaForCausalLM`'s; no logit shift. LLaDA-MoE (an
  expert layout) has no Llama equivalent and is refused.
- "masked-lm": a masked LM transformers knows natively (AutoModelForMaskedLM: ModernBERT, ...).
The native wrapper and the weight loading live in `engine.model.native`.
"""

from __future__ import annotations

import re

from transformers import LlamaConfig, LlamaForCausalLM, PretrainedConfig, Qwen2Config, \
    Qwen2ForCausalLM
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .adapter import UnsupportedModelError
from .configuration import MODEL_TYPE

FAMILIES = ("anchored", "dream", "llada", "masked-lm")
NATIVE_FAMILIES = ("dream", "llada")

# The published samplers' recommended settings, as `engine.infill.request.InfillOptions` fields:
# Dream / Dream-Coder / DiffuCoder READMEs: alg="entropy", temperature 0.2 (Dream-Coder 0.1),
# top_p 0.95; LLaDA's generate(): low-confidence remasking at temperature 0 (greedy).
SAMPLING_DEFAULTS = {
    "dream": {"order": "entropy", "temperature": 0.2, "top_p": 0.95},
    "llada": {"order": "confidence", "temperature": 0.0},
}
# Published mask token ids, used only when neither config.json nor the tokenizer names one.
DEFAULT_MASK_IDS = {"dream": 151666, "llada": 126336}
SHIFTED_FAMILIES = frozenset({"dream"})  # raw logit i predicts token i + 1

_DREAM_TYPES = {"dream"}
_LLADA_TYPES = {"llada"}
_LLADA_MOE_TYPES = {"lladamoe", "llada_moe", "llada-moe"}
_EXPECTED = ('"anchored" (model_type "astdiffuse-anchored"), "dream" (Dream / Dream-Coder / '
             'DiffuCoder: model_type "Dream"), "llada" (model_type "llada", block_type "llama") '
             'or "masked-lm" (a masked LM transformers knows, e.g. ModernBERT)')


class UnsupportedLayoutError(UnsupportedModelError):
    """A known family in a layout the native classes cannot reproduce (LLaDA-MoE, ...)."""


def detect_family(config: dict, family: str | None = None) -> str:
    """The family of a raw config.json dict: anchored, dream, llada or masked-lm.

    An explicit `family` skips detection (it must be one of `FAMILIES`). Raises
    `UnsupportedLayoutError` for a recognised family in a layout that cannot load natively
    (LLaDA-MoE) and `UnsupportedModelError` for anything else, naming what was found.
    """
    if family is not None:
        if family not in FAMILIES:
            raise UnsupportedModelError(f"unknown model family {family!r}; expected one of "
                                        f"{', '.join(FAMILIES)}")
        return family
    model_type = str(config.get("model_type") or "")
    architectures = [str(a) for a in config.get("architectures") or []]
    kind = model_type.lower()
    if model_type == MODEL_TYPE:
        return "anchored"
    if kind in _DREAM_TYPES or "DreamModel" in architectures:
        return "dream"
    if (kind in _LLADA_TYPES | _LLADA_MOE_TYPES or "LLaDAModelLM" in architectures
            or any(a.startswith("LLaDA") for a in architectures)):
        problems = llada_layout_problems(config)
        if problems:
            raise UnsupportedLayoutError(_llada_refusal(config, problems))
        return "llada"
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked-lm"
    raise UnsupportedModelError(
        f"cannot tell which kind of model this is (model_type {model_type or None!r}, "
        f"architectures {architectures or None}); expected {_EXPECTED}. Pass family=... to "
        "choose one; a model with its own code (auto_map) loads with trust_remote_code=True")


# -- Dream / Dream-Coder / DiffuCoder -> Qwen2 ---------------------------------------------------

_DREAM_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                   "vocab_size")
_DROPPED = ("auto_map", "architectures", "model_type", "transformers_version", "_name_or_path")


def dream_config(config: dict) -> Qwen2Config:
    """A native `Qwen2Config` for a Dream-family config.json (mask_token_id kept as an extra)."""
    missing = [name for name in _DREAM_REQUIRED if config.get(name) is None]
    if missing:
        raise UnsupportedLayoutError(f"this Dream-family config.json lacks {', '.join(missing)}; "
                                     "it cannot be read as a Qwen2 network")
    fields = {k: v for k, v in config.items() if k not in _DROPPED}
    fields["num_key_value_heads"] = config.get("num_key_value_heads") or \
        config["num_attention_heads"]
    # Dream's attention never uses a sliding window, whatever the inherited Qwen fields say.
    fields.update(use_sliding_window=False, sliding_window=None, use_cache=False)
    fields.pop("layer_types", None)
    return Qwen2Config(**fields)


# -- LLaDA (OLMo-style config) -> Llama ----------------------------------------------------------

# LLaDA weight name -> Llama weight name. The per-block `ff_out` is the MLP's down projection,
# the top-level `transformer.ff_out` the LM head; `ff_proj` is the gate (SiLU) branch.
_LLADA_RENAMES = [(re.compile(pattern), target) for pattern, target in (
    (r"model\.transformer\.wte\.weight", "model.embed_tokens.weight"),
    (r"model\.transformer\.ln_f\.weight", "model.norm.weight"),
    (r"model\.transformer\.ff_out\.weight", "lm_head.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.attn_norm\.weight",
     r"model.layers.\1.input_layernorm.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.ff_norm\.weight",
     r"model.layers.\1.post_attention_layernorm.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.([qkv])_proj\.(weight|bias)",
     r"model.layers.\1.self_attn.\2_proj.\3"),
    (r"model\.transformer\.blocks\.(\d+)\.attn_out\.(weight|bias)",
     r"model.layers.\1.self_attn.o_proj.\2"),
    (r"model\.transformer\.blocks\.(\d+)\.ff_proj\.(weight|bias)",
     r"model.layers.\1.mlp.gate_proj.\2"),
    (r"model\.transformer\.blocks\.(\d+)\.up_proj\.(weight|bias)",
     r"model.layers.\1.mlp.up_proj.\2"),
    (r"model\.transformer\.blocks\.(\d+)\.ff_out\.(weight|bias)",
     r"model.layers.\1.mlp.down_proj.\2"),
)]
_LLADA_REQUIRED = ("d_model", "n_layers", "n_heads")


def llada_key(key: str) -> str:
    """The `LlamaForCausalLM` name of a LLaDA weight (an unknown name comes back unchanged)."""
    for pattern, target in _LLADA_RENAMES:
        if pattern.fullmatch(key):
            return pattern.sub(target, key)
    return key


def llada_layout_problems(config: dict) -> list[str]:
    """Why a LLaDA config cannot be read as a Llama network (empty: it can)."""
    model_type = str(config.get("model_type") or "").lower()
    architectures = [str(a) for a in config.get("architectures") or []]
    experts = sorted(k for k in config if "expert" in k.lower() or k.lower().startswith("moe"))
    if experts or model_type in _LLADA_MOE_TYPES or any("moe" in a.lower() for a in architectures):
        return [f"it is a mixture-of-experts model (LLaDA-MoE: {', '.join(experts) or 'MoE'}), "
                "which has no dense Llama equivalent"]
    problems = [f"{name} is missing" for name in _LLADA_REQUIRED if config.get(name) is None]
    if str(config.get("block_type")).lower() != "llama":
        problems.append(f"block_type={config.get('block_type')!r} (only 'llama' blocks map to "
                        "Llama)")
    expected = {"layer_norm_type": "rms", "activation_type": "silu"}
    for name, value in expected.items():
        if str(config.get(name, value)).lower() != value:
            problems.append(f"{name}={config.get(name)!r} (only {value!r} maps to Llama)")
    for name, default in (("rope", True), ("layer_norm_with_affine", True)):
        if not config.get(name, default):
            problems.append(f"{name}={config.get(name)!r}")
    for name in ("alibi", "attention_layer_norm", "input_emb_norm", "scale_logits",
                 "bias_for_layer_norm"):
        if config.get(name):
            problems.append(f"{name}={config.get(name)!r}")
    if config.get("clip_qkv") is not None:
        problems.append(f"clip_qkv={config.get('clip_qkv')!r}")
    return problems


def _llada_refusal(config: dict, problems: list[str]) -> str:
    return (f"this LLaDA-style model (model_type {config.get('model_type')!r}, architectures "
            f"{config.get('architectures')}) cannot load natively: {'; '.join(problems)}. "
            "Supported: dense LLaDA 8B / 1.5 (block_type 'llama', RMSNorm, SiLU, RoPE)")


def llada_config(config: dict) -> LlamaConfig:
    """A native `LlamaConfig` for a LLaDA config.json (mask_token_id kept as an extra)."""
    problems = llada_layout_problems(config)
    if problems:
        raise UnsupportedLayoutError(_llada_refusal(config, problems))
    d_model, heads = int(config["d_model"]), int(config["n_heads"])
    kv_heads = config.get("n_kv_heads") or (1 if config.get("multi_query_attention") else heads)
    intermediate = config.get("mlp_hidden_size") or int(config.get("mlp_ratio", 4) * d_model)
    rows = config.get("embedding_size") or config.get("vocab_size")
    if rows is None:
        raise UnsupportedLayoutError("this LLaDA config.json has neither embedding_size nor "
                                     "vocab_size")
    bias = bool(config.get("include_bias", False))
    native = LlamaConfig(
        vocab_size=int(rows), hidden_size=d_model, intermediate_size=int(intermediate),
        num_hidden_layers=int(config["n_layers"]), num_attention_heads=heads,
        num_key_value_heads=int(kv_heads), hidden_act="silu",
        max_position_embeddings=int(config.get("max_sequence_length") or 4096),
        rms_norm_eps=float(config.get("rms_norm_eps") or 1e-5),
        rope_theta=float(config.get("rope_theta") or 10000.0),
        tie_word_embeddings=bool(config.get("weight_tying", False)),
        attention_bias=bias or bool(config.get("include_qkv_bias", False)), mlp_bias=bias,
        attention_dropout=0.0, use_cache=False, pad_token_id=config.get("pad_token_id"),
        bos_token_id=config.get("bos_token_id"), eos_token_id=config.get("eos_token_id"))
    native.mask_token_id = config.get("mask_token_id")
    return native


# -- both ----------------------------------------------------------------------------------------

def native_spec(family: str, config: dict) -> tuple[type, PretrainedConfig, callable]:
    """(model class, native config, checkpoint name -> native name) of a native family."""
    if family == "dream":
        return Qwen2ForCausalLM, dream_config(config), _same
    if family == "llada":
        return LlamaForCausalLM, llada_config(config), llada_key
    raise UnsupportedModelError(f"family {family!r} has no native loader; native families: "
                                f"{', '.join(NATIVE_FAMILIES)}")


def _same(key: str) -> str:
    return key
