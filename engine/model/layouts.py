"""How the published checkpoints' config.json files and weight names map onto native
transformers classes: Qwen2 (Dream, Dream-Coder, DiffuCoder, DreamOn, Open-dCoder), Qwen3 with
q/k norms (CoDA) and Llama (LLaDA's OLMo-style config and `model.transformer.*` names).

A layout is (native class, config.json -> native config, checkpoint name -> native name); the
family table (`engine.model.families`) names one per family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from transformers import (LlamaConfig, LlamaForCausalLM, PretrainedConfig, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

from .adapter import UnsupportedModelError


class UnsupportedLayoutError(UnsupportedModelError):
    """A known family in a layout the native classes cannot reproduce (LLaDA-MoE, ...)."""


@dataclass(frozen=True)
class Layout:
    """A native transformers class and how a published checkpoint is read into it."""

    name: str
    model_class: type
    native_config: Callable[[dict], PretrainedConfig]
    rename: Callable[[str], str]


def _same(key: str) -> str:
    return key


_QWEN_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "vocab_size")
_DROPPED = ("auto_map", "architectures", "model_type", "transformers_version", "_name_or_path",
            "trust_remote_code")


def _qwen_fields(config: dict, what: str) -> dict:
    missing = [name for name in _QWEN_REQUIRED if config.get(name) is None]
    if missing:
        raise UnsupportedLayoutError(f"this {what} config.json lacks {', '.join(missing)}; it "
                                     "cannot be read as a Qwen network")
    fields = {k: v for k, v in config.items() if k not in _DROPPED}
    fields["num_key_value_heads"] = config.get("num_key_value_heads") or \
        config["num_attention_heads"]
    # Diffusion LMs attend to the whole canvas: never a sliding window, whatever the inherited
    # Qwen fields say; no generation cache.
    fields.update(use_sliding_window=False, sliding_window=None, use_cache=False)
    fields.pop("layer_types", None)
    return fields


def qwen2_config(config: dict) -> Qwen2Config:
    """A native `Qwen2Config` for a Dream-family or Open-dCoder config.json (extra fields such as
    mask_token_id are kept)."""
    return Qwen2Config(**_qwen_fields(config, "Qwen2-style"))


def qwen3_config(config: dict) -> Qwen3Config:
    """A native `Qwen3Config` (q/k RMSNorm over each head, explicit head_dim) for CoDA's
    config.json."""
    fields = _qwen_fields(config, "Qwen3-style")
    fields.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])
    fields.setdefault("attention_bias", False)
    fields.pop("attention_kernel", None)  # CoDA's choice of kernel, not a network field
    return Qwen3Config(**fields)


# dream_config: the name this mapping had when only Dream used it
dream_config = qwen2_config
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
LLADA_MOE_TYPES = {"lladamoe", "llada_moe", "llada-moe", "llada2_moe"}


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
    if experts or model_type in LLADA_MOE_TYPES or any("moe" in a.lower() for a in architectures):
        return [f"it is a mixture-of-experts model (LLaDA-MoE: {', '.join(experts) or 'MoE'}), "
                "which has no dense Llama equivalent"]
    if "d_model" not in config and config.get("hidden_size") is not None:
        return []  # iLLaDA: a Llama config under transformers' own field names
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
    if "d_model" not in config:  # iLLaDA: transformers' Llama field names already
        fields = {k: v for k, v in config.items() if k not in _DROPPED}
        fields.update(use_cache=False, attention_dropout=0.0)
        native = LlamaConfig(**fields)
        native.mask_token_id = config.get("mask_token_id")
        native.rope_full_precision = bool(config.get("rope_full_precision", False))
        return native
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
    # OLMo's RotaryEmbedding rotates q and k in float32 and casts back (LLaDA publishes true)
    native.rope_full_precision = bool(config.get("rope_full_precision", True))
    return native


LAYOUTS = {layout.name: layout for layout in (
    Layout("qwen2", Qwen2ForCausalLM, qwen2_config, _same),
    Layout("qwen3", Qwen3ForCausalLM, qwen3_config, _same),
    Layout("llada", LlamaForCausalLM, llada_config, llada_key),
)}
