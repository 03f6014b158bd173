"""Checkpoints in the on-disk layout each published diffusion code LLM's repository has, built
locally with random weights (tiny ones for the tests, published shapes for the benchmarks): config.json with the published field names (model_type, architectures and
auto_map as the hub files have them; the code auto_map names is never written), random weights
under the published safetensors names and sharding, and the tokenizer files as published (a
small byte-level BPE standing in for Qwen's / LLaDA's, special tokens at ids after it in the
published order).

| maker                       | layout                                                       |
|-----------------------------|--------------------------------------------------------------|
| make_dream_checkpoint(d)    | Dream / Dream-Coder: model_type Dream, Qwen2 names with q/k/v |
|                             | biases; slow DreamTokenizer (vocab.json + merges.txt,        |
|                             | tokenizer_config.json with auto_map), no tokenizer.json      |
| ... flavour="diffucoder"    | DiffuCoder-Instruct: as Dream plus <|dlm_pad|> (the pad role |
|                             | names it only when `pad_role=True`)                          |
| ... flavour="dreamon"       | DreamOn: as Dream plus <|expand|>                            |
| make_open_dcoder_checkpoint | Open-dCoder: model_type qwen2, tied embeddings (no lm_head), |
|                             | tokenizer.json with the mask <M> added, auto_map to its      |
|                             | modeling_qwen2.py                                            |
| make_coda_checkpoint        | CoDA: model_type CoDA, Qwen3 names with q_norm / k_norm,     |
|                             | head_dim, <|mask|> after Qwen3's added tokens                |
| make_llada_checkpoint       | LLaDA 8B: OLMo-style config, model.transformer.* names,      |
|                             | tokenizer.json (PreTrainedTokenizerFast)                     |

`tokenizer_reference(d)` is the `tokenizers.Tokenizer` the files were written from: a loader
that reads them right gives the same ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]  # the checkout (its examples/ and engine/)
EXAMPLES = ROOT / "examples"

HIDDEN, LAYERS, HEADS, INTERMEDIATE = 64, 2, 4, 128
DREAM_KV_HEADS = 2


@dataclass(frozen=True)
class Dims:
    """A checkpoint's transformer shape; the tests use TINY, the benchmarks a published one."""

    hidden: int = HIDDEN
    layers: int = LAYERS
    heads: int = HEADS
    kv_heads: int = DREAM_KV_HEADS
    intermediate: int = INTERMEDIATE
    head_dim: int | None = None  # Qwen3 (CoDA): explicit, may differ from hidden / heads


TINY = Dims()
DREAM_7B = Dims(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944)  # Dream-v0 7B
QWEN25_05B = Dims(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864)  # Open-dCoder
CODA_17B = Dims(hidden=2048, layers=28, heads=16, kv_heads=8, intermediate=6144, head_dim=128)
BPE_VOCAB = 400
ROW_MULTIPLE = 32  # embedding rows are padded past the tokenizer, as Qwen's and LLaDA's are

# Qwen2.5's added tokens in id order (151643 ...), shortened; each family appends its own.
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>",
                 "<|fim_middle|>", "<|fim_suffix|>", "<|file_sep|>"]
DREAM_SPECIALS = QWEN_SPECIALS + ["<|beginoftext|>", "<|mask|>"]
CODA_SPECIALS = QWEN_SPECIALS + ["<think>", "</think>", "<tool_response>", "</tool_response>",
                                 "<|mask|>"]
LLADA_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<|mdm_mask|>"]
QWEN_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@lru_cache(maxsize=1)
def _bpe_json() -> str:
    """A byte-level BPE (vocabulary BPE_VOCAB) with Qwen2's normalizer and pre-tokenizer,
    trained on a few of the repository's files."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, \
        trainers

    files = [EXAMPLES / "sample.py", *sorted((ROOT / "engine" / "infill").glob("*.py"))[:4]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([f.read_text(encoding="utf-8") for f in files], trainer)
    return tokenizer.to_str()


def tokenizer_reference(specials: list[str]):
    """The `tokenizers.Tokenizer` a checkpoint's tokenizer files are written from."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(_bpe_json())
    backend.add_special_tokens(specials)
    return backend


def _role(token: str | None):
    return token


def save_tokenizer_files(directory: Path, specials: list[str], *, slow: bool,
                         tokenizer_class: str, auto_map: dict | None = None,
                         **roles: str | None) -> int:
    """Write the tokenizer files as a Qwen-family repository publishes them: vocab.json +
    merges.txt + tokenizer_config.json (added_tokens_decoder with the published ids, roles,
    auto_map) + special_tokens_map.json, and tokenizer.json unless `slow`. Returns the number of
    tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    backend = tokenizer_reference(specials)
    data = json.loads(backend.to_str())
    model = data["model"]
    (directory / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                          encoding="utf-8")
    if not slow:
        backend.save(str(directory / "tokenizer.json"))
    base = BPE_VOCAB
    decoder = {str(backend.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False,
                                             "rstrip": False, "single_word": False,
                                             "special": True} for t in specials}
    config = {"add_prefix_space": False, "added_tokens_decoder": decoder,
              "additional_special_tokens": [t for t in specials if t.startswith("<|im")],
              "clean_up_tokenization_spaces": False, "errors": "replace",
              "model_max_length": 131072, "split_special_tokens": False,
              "tokenizer_class": tokenizer_class, "unk_token": None}
    config.update({k: v for k, v in roles.items()})
    if auto_map:
        config["auto_map"] = auto_map
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special_map = {k: {"content": v, "lstrip": False, "normalized": False, "rstrip": False,
                       "single_word": False} for k, v in roles.items() if v is not None}
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    assert backend.token_to_id(specials[0]) == base
    return backend.get_vocab_size()


def _rows(tokens: int) -> int:
    return -(-tokens // ROW_MULTIPLE) * ROW_MULTIPLE


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


def _qwen_tensors(dims: Dims, rows: int, rand, *, bias: bool, qk_norm: bool,
                  lm_head: bool) -> dict[str, torch.Tensor]:
    """Qwen2 / Qwen3 weight names (transformers' own, which these repositories keep)."""
    head = dims.head_dim or dims.hidden // dims.heads
    tensors = {"model.embed_tokens.weight": rand((rows, dims.hidden))}
    for n in range(dims.layers):
        layer = f"model.layers.{n}"
        for name, out in (("q", dims.heads * head), ("k", dims.kv_heads * head),
                          ("v", dims.kv_heads * head)):
            tensors[f"{layer}.self_attn.{name}_proj.weight"] = rand((out, dims.hidden))
            if bias:
                tensors[f"{layer}.self_attn.{name}_proj.bias"] = rand((out,))
        if qk_norm:
            tensors[f"{layer}.self_attn.q_norm.weight"] = rand((head,), norm=True)
            tensors[f"{layer}.self_attn.k_norm.weight"] = rand((head,), norm=True)
        tensors[f"{layer}.self_attn.o_proj.weight"] = rand((dims.hidden, dims.heads * head))
        tensors[f"{layer}.mlp.gate_proj.weight"] = rand((dims.intermediate, dims.hidden))
        tensors[f"{layer}.mlp.up_proj.weight"] = rand((dims.intermediate, dims.hidden))
        tensors[f"{layer}.mlp.down_proj.weight"] = rand((dims.hidden, dims.intermediate))
        tensors[f"{layer}.input_layernorm.weight"] = rand((dims.hidden,), norm=True)
        tensors[f"{layer}.post_attention_layernorm.weight"] = rand((dims.hidden,), norm=True)
    tensors["model.norm.weight"] = rand((dims.hidden,), norm=True)
    if lm_head:
        tensors["lm_head.weight"] = rand((rows, dims.hidden))
    return tensors


def _rand(seed: int, dims: Dims, dtype: torch.dtype, device: str):
    generator = torch.Generator(device=device).manual_seed(seed)
    std = 0.15 if dims == TINY else 0.02  # a large one: the published initializer_range

    def rand(shape, norm: bool = False) -> torch.Tensor:
        return _random(shape, generator, norm, std).to(dtype)

    return rand


DREAM_FLAVOURS = ("dream", "diffucoder", "dreamon")


def dream_specials(flavour: str) -> list[str]:
    return DREAM_SPECIALS + {"dream": [], "diffucoder": ["<|dlm_pad|>"],
                             "dreamon": ["<|expand|>"]}[flavour]


def make_dream_checkpoint(directory, flavour: str = "dream", *, seed: int = 0,
                          shards: int = 1, dims: Dims = TINY, dtype: torch.dtype = torch.float32,
                          device: str = "cpu", pad_role: bool = True,
                          rows: int | None = None) -> Path:
    """A tiny Dream / Dream-Coder ("dream"), DiffuCoder-Instruct ("diffucoder") or DreamOn
    ("dreamon") checkpoint with the slow DreamTokenizer's files; `dims`, `dtype` and `device`
    (where the random weights are drawn) make a large one for a benchmark, `rows` its embedding
    rows (Qwen2.5's 151936: the published LM head cost). `pad_role=False`: DiffuCoder's
    tokenizer config does not name <|dlm_pad|> as its pad token."""
    if flavour not in DREAM_FLAVOURS:
        raise ValueError(f"flavour {flavour!r}: one of {DREAM_FLAVOURS}")
    directory = Path(directory)
    specials = dream_specials(flavour)
    pad = "<|dlm_pad|>" if flavour == "diffucoder" and pad_role else "<|endoftext|>"
    tokens = save_tokenizer_files(
        directory, specials, slow=True, tokenizer_class="DreamTokenizer",
        auto_map={"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        bos_token="<|beginoftext|>", eos_token="<|endoftext|>", pad_token=pad,
        mask_token="<|mask|>")
    reference = tokenizer_reference(specials)
    rows, eos = rows or _rows(tokens), reference.token_to_id("<|endoftext|>")
    config = {
        "architectures": ["DreamModel"],
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig",
                     "AutoModel": "modeling_dream.DreamModel"},
        "bos_token_id": reference.token_to_id("<|beginoftext|>"),
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": dims.hidden,
        "initializer_range": 0.02,
        "intermediate_size": dims.intermediate,
        "mask_token_id": reference.token_to_id("<|mask|>"),
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
    tensors = _qwen_tensors(dims, rows, _rand(seed, dims, dtype, device), bias=True,
                            qk_norm=False, lm_head=True)
    _save(directory, {k: v.cpu() for k, v in tensors.items()}, shards)
    return directory


def make_open_dcoder_checkpoint(directory, *, seed: int = 0, dims: Dims = TINY,
                                dtype: torch.dtype = torch.float32, device: str = "cpu",
                                rows: int | None = None) -> Path:
    """A tiny Open-dCoder checkpoint: Qwen2.5-Coder's plain qwen2 config as Open-dLLM's upload
    script leaves it (auto_map to its own modeling_qwen2.py, no mask_token_id), tied embeddings
    (no lm_head.weight), and a tokenizer.json with the mask <M> added after Qwen's tokens.
    `rows`: embedding rows (Qwen2.5's 151936 for a benchmark at the published cost)."""
    directory = Path(directory)
    specials = QWEN_SPECIALS + ["<M>"]
    tokens = save_tokenizer_files(directory, specials, slow=False,
                                  tokenizer_class="Qwen2Tokenizer", bos_token=None,
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  mask_token="<M>")
    rows = rows or _rows(tokens)
    eos = tokenizer_reference(specials).token_to_id("<|endoftext|>")
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {"AutoModelForCausalLM": "modeling_qwen2.Qwen2ForCausalLM"},
        "bos_token_id": eos, "eos_token_id": eos, "hidden_act": "silu",
        "hidden_size": dims.hidden, "initializer_range": 0.02,
        "intermediate_size": dims.intermediate, "max_position_embeddings": 32768,
        "max_window_layers": dims.layers, "model_type": "qwen2",
        "num_attention_heads": dims.heads, "num_hidden_layers": dims.layers,
        "num_key_value_heads": dims.kv_heads, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": str(dtype).removeprefix("torch."), "transformers_version": "4.46.1",
        "trust_remote_code": True, "use_cache": True, "use_sliding_window": False,
        "vocab_size": rows,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    tensors = _qwen_tensors(dims, rows, _rand(seed, dims, dtype, device), bias=True,
                            qk_norm=False, lm_head=False)
    _save(directory, {k: v.cpu() for k, v in tensors.items()}, 1)
    return directory


def make_coda_checkpoint(directory, *, seed: int = 0, dims: Dims = Dims(head_dim=32),
                         dtype: torch.dtype = torch.float32, device: str = "cpu",
                         shards: int = 2, rows: int | None = None) -> Path:
    """A tiny CoDA checkpoint: model_type CoDA, Qwen3 weight names with q_norm / k_norm and an
    explicit head_dim (larger than hidden / heads, as Qwen3-1.7B's), no tie_word_embeddings in
    config.json, <|mask|> after Qwen3's added tokens; bos = eos = <|im_end|>. `rows`: embedding
    rows (Qwen3's 151936 for a benchmark)."""
    directory = Path(directory)
    specials = CODA_SPECIALS
    tokens = save_tokenizer_files(directory, specials, slow=False,
                                  tokenizer_class="Qwen2Tokenizer", bos_token=None,
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  mask_token="<|mask|>")
    reference = tokenizer_reference(specials)
    rows = rows or _rows(tokens)
    config = {
        "architectures": ["CoDALanguageModel"],
        "attention_kernel": "flash_attention",
        "auto_map": {"AutoConfig": "model_config.CoDAConfig",
                     "AutoModel": "modeling_coda.CoDALanguageModel"},
        "head_dim": dims.head_dim, "hidden_act": "silu", "hidden_size": dims.hidden,
        "intermediate_size": dims.intermediate,
        "mask_token_id": reference.token_to_id("<|mask|>"),
        "max_position_embeddings": 40960, "model_type": "CoDA",
        "num_attention_heads": dims.heads, "num_hidden_layers": dims.layers,
        "num_key_value_heads": dims.kv_heads,
        "pad_token_id": reference.token_to_id("<|endoftext|>"), "rms_norm_eps": 1e-06,
        "rope_scaling": None, "rope_theta": 1000000, "torch_dtype": "float32",
        "transformers_version": "4.47.1", "vocab_size": rows,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    tensors = _qwen_tensors(dims, rows, _rand(seed, dims, dtype, device), bias=False,
                            qk_norm=True, lm_head=True)
    _save(directory, {k: v.cpu() for k, v in tensors.items()}, shards)
    return directory


def make_llada_checkpoint(directory, *, seed: int = 0, shards: int = 1,
                          weight_tying: bool = False) -> Path:
    """A tiny LLaDA-8B-layout checkpoint (`model.transformer.*` weight names, tokenizer.json)."""
    directory = Path(directory)
    tokens = save_tokenizer_files(directory, LLADA_SPECIALS, slow=False,
                                  tokenizer_class="PreTrainedTokenizerFast",
                                  bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", mask_token="<|mdm_mask|>")
    reference = tokenizer_reference(LLADA_SPECIALS)
    rows = _rows(tokens)
    eos = reference.token_to_id("<|endoftext|>")
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
        "eos_token_id": eos,
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
        "mask_token_id": reference.token_to_id("<|mdm_mask|>"),
        "max_sequence_length": 4096,
        "mlp_hidden_size": INTERMEDIATE,
        "mlp_ratio": 4,
        "model_type": "llada",
        "multi_query_attention": None,
        "n_heads": HEADS,
        "n_kv_heads": HEADS,
        "n_layers": LAYERS,
        "pad_token_id": eos,
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


# name -> (maker, kwargs): every published layout the tests build
LAYOUT_MAKERS = {
    "dream": (make_dream_checkpoint, {"flavour": "dream"}),
    "diffucoder": (make_dream_checkpoint, {"flavour": "diffucoder", "seed": 1}),
    "dreamon": (make_dream_checkpoint, {"flavour": "dreamon", "seed": 3}),
    "open-dcoder": (make_open_dcoder_checkpoint, {"seed": 4}),
    "coda": (make_coda_checkpoint, {"seed": 5}),
    "llada": (make_llada_checkpoint, {"seed": 2, "shards": 2}),
}


# name -> (layout, dims, embedding rows): the published shapes the benchmarks build
# (`python -m engine.bench --shape NAME`), random weights in the layout of the family that
# publishes that size
SHAPES = {
    "tiny": ("dream", TINY, None),  # the tests' size: the benchmark's own test
    "qwen2.5-0.5b": ("open-dcoder", QWEN25_05B, 151936),  # Open-dCoder 0.5B
    "qwen3-1.7b": ("coda", CODA_17B, 151936),  # CoDA 1.7B
    "dream-7b": ("dream", DREAM_7B, 152064),  # Dream-v0 / Dream-Coder / DiffuCoder 7B
}


def make_shape_checkpoint(name: str, directory, *, layout: str | None = None,
                          dtype: torch.dtype = torch.bfloat16, device: str = "cpu") -> Path:
    """A random-weight checkpoint of the published shape `name` (`SHAPES`), in its family's
    layout or in `layout` ("dream", "open-dcoder" or "coda"; Dream's layout at Qwen2.5-0.5B's
    shape is Open-dCoder's size with Dream's tokenizer and untied head)."""
    if name not in SHAPES:
        raise ValueError(f"shape {name!r}: one of {', '.join(SHAPES)}")
    default, dims, rows = SHAPES[name]
    layout = layout or default
    kwargs = dict(dims=dims, dtype=dtype, device=device, rows=rows)
    if layout in DREAM_FLAVOURS:
        return make_dream_checkpoint(directory, layout, **kwargs)
    if layout == "open-dcoder":
        return make_open_dcoder_checkpoint(directory, **kwargs)
    if layout == "coda":
        return make_coda_checkpoint(directory, **kwargs)
    raise ValueError(f"layout {layout!r}: dream, diffucoder, dreamon, open-dcoder or coda")


def make_checkpoint(name: str, directory) -> Path:
    maker, kwargs = LAYOUT_MAKERS[name]
    return maker(directory, **kwargs)
