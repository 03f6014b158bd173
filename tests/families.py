"""Tiny checkpoints in the on-disk layout of the published diffusion code LLMs, built locally:
config.json with the published field names (model_type, architectures and auto_map as the hub
files have them; the modeling code auto_map names is never written), random weights under the
published safetensors key names, and a small byte-level BPE tokenizer whose special tokens are
the family's strings.

- `make_dream_checkpoint(dir, flavour="dream")`: Dream / Dream-Coder (Qwen2 names, q/k/v
  biases; `<|endoftext|>` is eos and pad, `<|mask|>` the mask).
- `make_dream_checkpoint(dir, flavour="diffucoder")`: DiffuCoder-Instruct, whose tokenizer pads
  with `<|dlm_pad|>` while config.json keeps pad_token_id = `<|endoftext|>` as published.
- `make_llada_checkpoint(dir)`: LLaDA 8B (OLMo-style config, `model.transformer.*` names;
  `<|endoftext|>` eos = pad, `<|startoftext|>` bos, `<|mdm_mask|>` the mask).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from .paths import EXAMPLES, ROOT

HIDDEN, LAYERS, HEADS, INTERMEDIATE = 64, 2, 4, 128
DREAM_KV_HEADS = 2


@dataclass(frozen=True)
class Dims:
    """A checkpoint's transformer shape; the tests use TINY, a GPU benchmark a published one."""

    hidden: int = HIDDEN
    layers: int = LAYERS
    heads: int = HEADS
    kv_heads: int = DREAM_KV_HEADS
    intermediate: int = INTERMEDIATE


TINY = Dims()
DREAM_7B = Dims(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944)  # Dream-v0 7B
BPE_VOCAB = 400
ROW_MULTIPLE = 32  # embedding rows are padded past the tokenizer, as Qwen's and LLaDA's are

DREAM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|beginoftext|>", "<|mask|>"]
LLADA_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<|mdm_mask|>"]


@lru_cache(maxsize=1)
def _bpe_json() -> str:
    """A byte-level BPE (vocabulary BPE_VOCAB) trained on a few of the repository's files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    files = [EXAMPLES / "sample.py", *sorted((ROOT / "engine" / "infill").glob("*.py"))[:4]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([f.read_text(encoding="utf-8") for f in files], trainer)
    return tokenizer.to_str()


def save_tokenizer(directory: Path, specials: list[str], **roles: str):
    """The BPE plus `specials` (ids after the BPE's, as in Qwen / LLaDA), saved as a
    PreTrainedTokenizerFast with `roles` (mask_token=..., eos_token=..., ...); returns it."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_bpe_json())
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **roles)
    tokenizer.save_pretrained(directory)
    return tokenizer


def _rows(tokenizer) -> int:
    return -(-len(tokenizer) // ROW_MULTIPLE) * ROW_MULTIPLE


def _random(shape, generator, norm: bool = False, std: float = 0.15) -> torch.Tensor:
    """float32 random weights on the generator's device; RMSNorm weights (`norm`) near 1."""
    out = torch.randn(shape, generator=generator, device=generator.device)
    return 1.0 + 0.1 * out if norm else std * out


def _save(directory: Path, tensors: dict[str, torch.Tensor], shards: int) -> None:
    """model.safetensors, or `shards` files with model.safetensors.index.json as the hub has."""
    names = list(tensors)
    if shards <= 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map, size = {}, -(-len(names) // shards)
    for index in range(shards):
        file = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        part = {name: tensors[name] for name in names[index * size:(index + 1) * size]}
        save_file(part, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def make_dream_checkpoint(directory, flavour: str = "dream", *, seed: int = 0,
                          shards: int = 1, dims: Dims = TINY, dtype: torch.dtype = torch.float32,
                          device: str = "cpu") -> Path:
    """A tiny Dream (flavour "dream") or DiffuCoder-Instruct ("diffucoder") checkpoint; `dims`,
    `dtype` and `device` (where the random weights are drawn) make a large one for a benchmark."""
    if flavour not in ("dream", "diffucoder"):
        raise ValueError(f"flavour {flavour!r}: dream or diffucoder")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = DREAM_SPECIALS + (["<|dlm_pad|>"] if flavour == "diffucoder" else [])
    pad = "<|dlm_pad|>" if flavour == "diffucoder" else "<|endoftext|>"
    tokenizer = save_tokenizer(directory, specials, eos_token="<|endoftext|>", pad_token=pad,
                               mask_token="<|mask|>")
    rows, eos = _rows(tokenizer), tokenizer.eos_token_id
    config = {
        "architectures": ["DreamModel"],
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig",
                     "AutoModel": "modeling_dream.DreamModel"},
        "bos_token_id": eos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": dims.hidden,
        "initializer_range": 0.02,
        "intermediate_size": dims.intermediate,
        "mask_token_id": tokenizer.mask_token_id,
        "max_position_embeddings": 2048,
        "max_window_layers": dims.layers,
        "model_type": "Dream",
        "num_attention_heads": dims.heads,
        "num_hidden_layers": dims.layers,
        "num_key_value_heads": dims.kv_heads,
        # DiffuCoder's config.json keeps <|endoftext|> as pad; its tokenizer pads with <|dlm_pad|>
        "pad_token_id": eos,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": str(dtype).removeprefix("torch."),  # published: bfloat16
        "transformers_version": "4.51.3",
        "use_cache": False,
        "use_mrope": False,
        "use_sliding_window": False,
        "vocab_size": rows,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator(device=device).manual_seed(seed)

    std = 0.15 if dims == TINY else 0.02  # a large one: the published initializer_range

    def rand(shape, norm: bool = False) -> torch.Tensor:
        return _random(shape, generator, norm, std).to(dtype)

    head = dims.hidden // dims.heads
    tensors = {"model.embed_tokens.weight": rand((rows, dims.hidden))}
    for n in range(dims.layers):
        layer = f"model.layers.{n}"
        for name, out in (("q", dims.heads * head), ("k", dims.kv_heads * head),
                          ("v", dims.kv_heads * head)):
            tensors[f"{layer}.self_attn.{name}_proj.weight"] = rand((out, dims.hidden))
            tensors[f"{layer}.self_attn.{name}_proj.bias"] = rand((out,))
        tensors[f"{layer}.self_attn.o_proj.weight"] = rand((dims.hidden, dims.hidden))
        tensors[f"{layer}.mlp.gate_proj.weight"] = rand((dims.intermediate, dims.hidden))
        tensors[f"{layer}.mlp.up_proj.weight"] = rand((dims.intermediate, dims.hidden))
        tensors[f"{layer}.mlp.down_proj.weight"] = rand((dims.hidden, dims.intermediate))
        tensors[f"{layer}.input_layernorm.weight"] = rand((dims.hidden,), norm=True)
        tensors[f"{layer}.post_attention_layernorm.weight"] = rand((dims.hidden,), norm=True)
    tensors["model.norm.weight"] = rand((dims.hidden,), norm=True)
    tensors["lm_head.weight"] = rand((rows, dims.hidden))
    _save(directory, {k: v.cpu() for k, v in tensors.items()}, shards)
    return directory


def make_llada_checkpoint(directory, *, seed: int = 0, shards: int = 1,
                          weight_tying: bool = False) -> Path:
    """A tiny LLaDA-8B-layout checkpoint (`model.transformer.*` weight names)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tokenizer(directory, LLADA_SPECIALS, bos_token="<|startoftext|>",
                               eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                               mask_token="<|mdm_mask|>")
    rows = _rows(tokenizer)
    config = {
        "activation_type": "silu",
        "alibi": False,
        "alibi_bias_max": 8.0,
        "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0,
        "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True,
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModel": "modeling_llada.LLaDAModelLM",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
        "bias_for_layer_norm": False,
        "block_group_size": 1,
        "block_type": "llama",
        "d_model": HIDDEN,
        "embedding_dropout": 0.0,
        "embedding_size": rows,
        "eos_token_id": tokenizer.eos_token_id,
        "flash_attention": False,
        "include_bias": False,
        "include_qkv_bias": False,
        "init_cutoff_factor": None,
        "init_device": "meta",
        "init_fn": "mitchell",
        "init_std": 0.02,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "mask_token_id": tokenizer.mask_token_id,
        "max_sequence_length": 4096,
        "mlp_hidden_size": INTERMEDIATE,
        "mlp_ratio": 4,
        "model_type": "llada",
        "multi_query_attention": None,
        "n_heads": HEADS,
        "n_kv_heads": HEADS,
        "n_layers": LAYERS,
        "pad_token_id": tokenizer.pad_token_id,
        "precision": "amp_bf16",
        "residual_dropout": 0.0,
        "rms_norm_eps": 1e-05,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": 500000.0,
        "scale_logits": False,
        "torch_dtype": "float32",  # the published file says bfloat16; these weights are float32
        "transformers_version": "4.46.3",
        "use_cache": False,
        "vocab_size": rows,
        "weight_tying": weight_tying,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator().manual_seed(seed)
    tensors = {"model.transformer.wte.weight": _random((rows, HIDDEN), generator)}
    for n in range(LAYERS):
        block = f"model.transformer.blocks.{n}"
        tensors[f"{block}.attn_norm.weight"] = _random((HIDDEN,), generator, norm=True)
        for name in ("q_proj", "k_proj", "v_proj", "attn_out"):
            tensors[f"{block}.{name}.weight"] = _random((HIDDEN, HIDDEN), generator)
        tensors[f"{block}.ff_norm.weight"] = _random((HIDDEN,), generator, norm=True)
        tensors[f"{block}.ff_proj.weight"] = _random((INTERMEDIATE, HIDDEN), generator)
        tensors[f"{block}.up_proj.weight"] = _random((INTERMEDIATE, HIDDEN), generator)
        tensors[f"{block}.ff_out.weight"] = _random((HIDDEN, INTERMEDIATE), generator)
    tensors["model.transformer.ln_f.weight"] = _random((HIDDEN,), generator, norm=True)
    if not weight_tying:
        tensors["model.transformer.ff_out.weight"] = _random((rows, HIDDEN), generator)
    _save(directory, tensors, shards)
    return directory
