"""Dream-family and LLaDA checkpoints in native transformers classes, as denoisers.

`load_native` builds `Qwen2ForCausalLM` / `LlamaForCausalLM` on the meta device and fills it
one tensor at a time from the checkpoint's safetensors files (renaming LLaDA's weights), so
loading never holds two copies of the weights. `NativeDiffusionLM` runs it with bidirectional
attention (every layer's `is_causal` off, an explicit key-padding 4D mask and positions) and
the family's logit convention, behind the same interface as `MaskedLMDenoiser`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import AstdiffuseError
from . import native_cache
from .adapter import ModelLoadError, UnsupportedModelError
from .context_cache import ContextCache, concat_caches, select_cache
from .families import family_spec, native_spec, sampling_for
from .modeling import apply_subs_parameterization

_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # saved by some old checkpoints, recomputed here
_ATTENTION = ("sdpa", "eager")
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5


class NativeDiffusionLM:
    """A published diffusion LM (Dream family, LLaDA) in a native transformers class, with the
    `Denoiser` interface: `logits(input_ids, attention_mask, masked)` -> [B, L, V] under the SUBS
    rules, `anchor_logits` -> None.

    `vocab_size` is the number of embedding rows; when the tokenizer is smaller
    (`usable_vocab`), the rows past it (padding of the embedding matrix) are never predicted.
    `sampling_defaults` holds the family's recommended `InfillOptions` fields.
    """

    has_anchor = False

    def __init__(self, model: nn.Module, *, family: str, mask_token_id: int,
                 usable_vocab: int | None = None, device_map: dict | None = None,
                 name: str | None = None, tokenizer=None):
        self.model = model.eval()
        self.tokenizer = tokenizer  # the published tokenizer it was loaded with (or None)
        self.config = model.config
        self.family = family
        self.spec = family_spec(family)
        self.shift_logits = self.spec.shift
        self.vocab_size = int(model.config.vocab_size)
        self.mask_token_id = int(mask_token_id)
        self.usable_vocab = usable_vocab if usable_vocab and usable_vocab < self.vocab_size \
            else None
        self.device_map = device_map
        self.sampling_defaults, self.sampling_source = sampling_for(family, name)
        make_bidirectional(model)
        if getattr(model.config, "rope_full_precision", False):
            rotate_in_float32(model)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> "NativeDiffusionLM":
        """Move (and cast the parameters of) the model; a model spread over devices by
        `device_map` stays where it is. Returns self."""
        if self.device_map is not None:
            return self
        if device is not None:
            self.model.to(device)
        if dtype is not None:  # parameters only: rotary frequencies stay float32
            for param in self.model.parameters():
                if param.is_floating_point():
                    param.data = param.data.to(dtype)
        return self

    @torch.no_grad()
    def forward_logits(self, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] -> [B, L, V]: the network's logits in this project's convention (logit i
        predicts token i: Dream's are shifted right by one), before the SUBS rules."""
        output = self.model(**bidirectional_inputs(input_ids.to(self.device), attention_mask,
                                                   self.dtype))
        logits = output.logits[..., :self.vocab_size]
        if self.shift_logits:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return self._mask_unusable(logits)

    def _mask_unusable(self, logits: torch.Tensor) -> torch.Tensor:
        """-inf for the embedding rows past the tokenizer (padding of the matrix)."""
        if self.usable_vocab is None:
            return logits
        unusable = torch.arange(self.vocab_size, device=logits.device) >= self.usable_vocab
        return logits.masked_fill(unusable, float("-inf"))

    @torch.no_grad()
    def logits_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """[N, V] logits at the masked positions (rows[i], columns[i]) only, under the SUBS
        rules: the network runs over the whole canvas, but the LM head (a 150k-row matmul
        per position for the Qwen families) only where a token is wanted. Equal to
        `logits(...)[rows, columns]` at masked positions."""
        hidden = self.model.model(**bidirectional_inputs(
            input_ids.to(self.device), attention_mask, self.dtype)).last_hidden_state
        rows, columns = rows.to(hidden.device), columns.to(hidden.device)
        source = (columns - 1).clamp_min(0) if self.shift_logits else columns
        return self.head_logits(hidden[rows, source])

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states [N, H] -> float32 logits [N, V] as at a masked position: the
        embedding rows past the tokenizer and the mask token at -inf (SUBS)."""
        head = self.model.get_output_embeddings()
        logits = head(hidden.to(head.weight.device))[..., :self.vocab_size]
        logits = self._mask_unusable(logits.float())
        logits[:, self.mask_token_id] = float("-inf")  # SUBS: the mask is never predicted
        return logits

    @torch.no_grad()
    def denoise_step(self, input_ids: torch.Tensor, active: torch.Tensor,
                     attention_mask: torch.Tensor | None = None,
                     cache: ContextCache | None = None, want: torch.Tensor | None = None):
        """One sampler step with the dual cache (`engine.model.native_cache`): cache None runs
        the whole canvas and builds the cache; a cache runs only the active positions (and
        those whose hidden state a shifted family reads their logits from). Returns (logits
        [B, A, V] or [N, V] at the `want` entries, None, the cache)."""
        return native_cache.denoise_step(self, input_ids, active, attention_mask, cache, want)

    @torch.no_grad()
    def share_context(self, cache: ContextCache, source: torch.Tensor, target: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> ContextCache:
        """One row's cache moved to rows holding the same context at other positions."""
        return native_cache.share_context(self, cache, source, target, attention_mask)

    def select_cache(self, cache: ContextCache, rows: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> ContextCache:
        return select_cache(cache, rows, attention_mask)

    def concat_caches(self, caches: list[ContextCache],
                      attention_mask: torch.Tensor | None = None) -> ContextCache:
        return concat_caches(caches, attention_mask)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               masked: torch.Tensor | None = None) -> torch.Tensor:
        """The model's logits [B, L, V] for input_ids [B, L], with the mask token at -inf and the
        visible (not masked, not mask token) positions carrying their input token over."""
        logits = self.forward_logits(input_ids, attention_mask)
        input_ids = input_ids.to(logits.device)
        is_mask = input_ids == self.mask_token_id
        masked = is_mask if masked is None else masked.to(logits.device).bool() | is_mask
        return apply_subs_parameterization(logits, input_ids, masked, self.mask_token_id)

    def anchor_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      masked: torch.Tensor | None = None) -> None:
        """None: these models have no anchor network."""
        return None

    def __repr__(self) -> str:
        return (f"NativeDiffusionLM(family={self.family!r}, {type(self.model).__name__}, "
                f"vocab={self.vocab_size}, mask={self.mask_token_id}, device={self.device}, "
                f"dtype={self.dtype})")


def bidirectional_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                         dtype: torch.dtype) -> dict:
    """Keyword arguments for a transformers decoder so every position attends both ways: a
    key-padding-only 4D additive mask (no all-masked query rows: 0 attend, finfo.min masked)
    and explicit positions, so neither transformers' mask builder nor SDPA adds a causal
    mask."""
    batch, length = input_ids.shape
    device = input_ids.device
    bias = native_cache.padding_bias(attention_mask, batch, length, dtype, device)
    positions = torch.arange(length, device=device).unsqueeze(0).expand(batch, -1)
    return {"input_ids": input_ids, "attention_mask": bias, "position_ids": positions,
            "use_cache": False}


def make_bidirectional(model: nn.Module) -> None:
    """Every attention of `model` attends both ways: config.is_causal (transformers >= 5.2) and
    each module's is_causal flag (what sdpa / flash attention read when no mask is given)."""
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


def rotate_in_float32(model: nn.Module) -> None:
    """Rotary embeddings as OLMo's `rope_full_precision` computes them (LLaDA): cos / sin and
    the rotation of q and k in float32, the result cast back to the model's dtype. The rotary
    module returns float32 cos / sin (q * cos then promotes to float32), and the attention
    function registered under `_ROPE32` casts q and k back before attending."""
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding"):
            module.register_forward_hook(_float32_rotary, with_kwargs=True)
    base = model.config._attn_implementation
    model.config._attn_implementation = _register_rope32(base)


def _float32_rotary(module, args, kwargs, output):
    states = args[0] if args else kwargs["x"]
    if states.dtype == torch.float32:
        return output
    positions = args[1] if len(args) > 1 else kwargs.get("position_ids")
    return module.forward(states.float(), positions)


def _register_rope32(base: str) -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = _ROPE32 + base
    if name not in ALL_ATTENTION_FUNCTIONS:
        if base == "eager":
            from transformers.models.llama.modeling_llama import eager_attention_forward as inner
        else:
            inner = ALL_ATTENTION_FUNCTIONS[base]

        def attend(module, query, key, value, *args, **kwargs):
            return inner(module, query.to(value.dtype), key.to(value.dtype), value, *args,
                         **kwargs)

        AttentionInterface.register(name, attend)
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


_ROPE32 = "astdiffuse_rope32_"


def load_native(source: str | Path, config: dict, family: str, *,
                device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                device_map: str | dict | None = None, mask_token_id: int | None = None,
                attn_implementation: str = "sdpa", name: str | None = None
                ) -> NativeDiffusionLM:
    """Load the checkpoint in `source` (a directory) of a native `family` ("dream" or "llada";
    `config` is its raw config.json) as a `NativeDiffusionLM`, without remote code.

    The model is built on the meta device and its weights stream in one tensor at a time, cast
    to `dtype` (default: config.json's torch_dtype, else float32) on `device` (default: cpu).
    `device_map="auto"` (or an accelerate device map) spreads it over the GPUs and the CPU and
    needs the `accelerate` package. Wrong or missing weights raise `ModelLoadError`, as does a
    model that does not fit on the GPU.
    """
    if attn_implementation not in _ATTENTION:
        raise ModelLoadError(f"attn_implementation {attn_implementation!r}: use one of "
                             f"{', '.join(_ATTENTION)} (flash attention cannot take the "
                             "padding mask these models need)")
    model_class, native_config, rename = native_spec(family, config)
    source = Path(source)
    dtype = dtype or _config_dtype(config)
    device = torch.device(device if device is not None else "cpu")
    native_config._attn_implementation = attn_implementation
    native_config.is_causal = False
    files = weight_files(source)
    names = _checkpoint_names(files, rename)
    tokenizer = _tokenizer(source)  # before the weights: a missing mask id fails fast
    mask = _mask_token(mask_token_id, config, tokenizer, source, family,
                       int(native_config.vocab_size))
    # Tied or not as the weights say: Qwen2.5-0.5B (Open-dCoder) publishes no lm_head, CoDA's
    # config.json leaves tie_word_embeddings to its code's default.
    tied = "lm_head.weight" not in names
    native_config.tie_word_embeddings = tied
    with torch.device("meta"):
        model = model_class(native_config)
    _check_names(model, names, tied, family, source)
    placement = _placement(model, device, device_map, dtype)
    if device.type == "cuda" and placement is None:
        _check_fits(files, names, dtype, device)
    try:
        _fill(model, files, names, dtype, device, placement)
    except (_OUT_OF_MEMORY, MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not isinstance(err, _OUT_OF_MEMORY) \
                and "can't allocate memory" not in str(err):
            raise
        raise ModelLoadError(
            f"the model in {source} does not fit in {device}'s free memory in {dtype}: try "
            "device_map='auto' (spreads it over GPU and CPU; needs accelerate), a smaller dtype "
            "(bfloat16) or the CPU") from err
    if tied:
        model.lm_head.weight = model.get_input_embeddings().weight
    _rebuild_buffers(model, native_config, device)
    model.requires_grad_(False)
    if placement is not None:
        from accelerate import dispatch_model

        model = dispatch_model(model, device_map=placement)
    model.config.mask_token_id = mask
    return NativeDiffusionLM(model, family=family, mask_token_id=mask,
                             usable_vocab=len(tokenizer) if tokenizer is not None else None,
                             device_map=placement, name=name or str(source),
                             tokenizer=tokenizer)


# -- files and names -----------------------------------------------------------------------------

def weight_files(source: Path) -> list[Path]:
    """The checkpoint's safetensors files: the shards of model.safetensors.index.json, else
    model.safetensors, else every *.safetensors in the directory."""
    index = source / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelLoadError(f"cannot read {index}: {err}") from err
        files = [source / name for name in sorted(set(weight_map.values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise ModelLoadError(f"{index} lists shards that are not there: "
                                 f"{', '.join(absent[:5])}; the download is incomplete")
        return files
    if (source / "model.safetensors").is_file():
        return [source / "model.safetensors"]
    files = sorted(source.glob("*.safetensors"))
    if files:
        return files
    others = sorted(p.name for p in source.glob("*.bin")) + sorted(
        p.name for p in source.glob("*.pt"))
    raise ModelLoadError(f"no safetensors weights in {source}" + (
        f" (found {', '.join(others[:3])}: pickle files are never loaded; convert them to "
        "safetensors)" if others else "; download the model's *.safetensors files"))


def _checkpoint_names(files: list[Path], rename) -> dict[str, tuple[Path, str]]:
    """native name -> (file, checkpoint name), from the safetensors headers only."""
    from safetensors import safe_open

    names: dict[str, tuple[Path, str]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                keys = list(handle.keys())
        except Exception as err:  # a truncated or foreign file: safetensors raises its own type
            raise ModelLoadError(f"cannot read {file}: {err}") from err
        for key in keys:
            if not key.endswith(_IGNORED_SUFFIXES):
                names[rename(key)] = (file, key)
    return names


def _check_names(model: nn.Module, names: dict, tied: bool, family: str, source: Path) -> None:
    expected = set(model.state_dict())
    if tied:
        expected.discard("lm_head.weight")
        names.pop("lm_head.weight", None)
    missing = sorted(expected - set(names))
    unexpected = sorted(names[n][1] for n in set(names) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:4])}"
                         f"{', ...' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}"
                         f"{', ...' if len(unexpected) > 4 else ''})")
        raise ModelLoadError(
            f"the weights in {source} do not match the {family} layout ({type(model).__name__}): "
            f"{'; '.join(parts)}. The files are incomplete, or this is not a {family} checkpoint "
            "(pass family=... if the detection was wrong)")


# -- placement and loading -----------------------------------------------------------------------

def _placement(model: nn.Module, device: torch.device, device_map, dtype) -> dict | None:
    """An accelerate device map {module name: device} for device_map, else None."""
    if device_map is None:
        return None
    try:
        from accelerate import infer_auto_device_map
    except ImportError:
        raise ModelLoadError("device_map needs the accelerate package (pip install accelerate); "
                             "or load the whole model on one device (device='cuda' or 'cpu', "
                             "a smaller dtype)") from None
    if device_map == "auto":
        device_map = infer_auto_device_map(
            model, no_split_module_classes=getattr(model, "_no_split_modules", None) or [],
            dtype=dtype)
    if not isinstance(device_map, dict):
        raise ModelLoadError(f"device_map={device_map!r}: use 'auto' or a dict of module name "
                             "-> device")
    if any(str(where) == "disk" for where in device_map.values()):
        raise ModelLoadError("the model does not fit in GPU and CPU memory together (the device "
                             "map offloads to disk, which astdiffuse does not do); use a smaller "
                             "dtype or a machine with more memory")
    return dict(device_map)


def _device_of(name: str, placement: dict | None, device: torch.device) -> torch.device:
    if placement is None:
        return device
    best, where = -1, None
    for module, target in placement.items():
        if module == "" or name == module or name.startswith(module + "."):
            if len(module) > best:
                best, where = len(module), target
    if where is None:
        return device
    return torch.device("cuda", where) if isinstance(where, int) else torch.device(where)


def _check_fits(files, names: dict, dtype: torch.dtype, device: torch.device) -> None:
    """ModelLoadError before loading when the weights exceed the GPU's free memory."""
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            wanted = {key for path, key in names.values() if path == file}
            for key in wanted:
                count = 1
                for size in handle.get_slice(key).get_shape():
                    count *= size
                total += count
    need = total * torch.empty((), dtype=dtype).element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if need > free:
        raise ModelLoadError(
            f"the model needs {need / 2**30:.1f} GiB in {dtype} but {device} has "
            f"{free / 2**30:.1f} GiB free: try device_map='auto' (spreads it over GPU and CPU; "
            "needs accelerate), a smaller dtype (bfloat16) or the CPU")


def _fill(model: nn.Module, files, names: dict, dtype: torch.dtype, device: torch.device,
          placement: dict | None) -> None:
    """Assign every parameter from the checkpoint, one tensor at a time."""
    from safetensors import safe_open

    by_file: dict[Path, list[tuple[str, str]]] = {}
    for native, (file, key) in names.items():
        by_file.setdefault(file, []).append((native, key))
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for native, key in by_file.get(file, []):
                module_name, _, leaf = native.rpartition(".")
                module = model.get_submodule(module_name)
                current = module._parameters.get(leaf)
                if current is None:  # a persistent buffer (none in Qwen2 / Llama today)
                    current = module._buffers[leaf]
                tensor = handle.get_tensor(key)
                if tuple(tensor.shape) != tuple(current.shape):
                    raise ModelLoadError(
                        f"weight {key} in {file.name} has shape {tuple(tensor.shape)} but the "
                        f"model built from config.json expects {tuple(current.shape)} for "
                        f"{native}; config.json does not match the weights")
                target = _device_of(native, placement, device)
                tensor = tensor.to(device=target,
                                   dtype=dtype if tensor.is_floating_point() else None)
                if leaf in module._parameters:
                    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
                else:
                    module._buffers[leaf] = tensor
                del tensor


def _rebuild_buffers(model: nn.Module, config, device: torch.device) -> None:
    """Recompute the non-persistent buffers the meta device left empty (rotary frequencies)."""
    for name, module in list(model.named_modules()):
        if any(b is not None and b.is_meta for b in module._buffers.values()):
            if not name.endswith("rotary_emb"):
                raise ModelLoadError(f"cannot initialise buffers of {name} "
                                     f"({type(module).__name__}) after a meta-device build")
            parent_name, _, leaf = name.rpartition(".")
            rebuilt = type(module)(config=config)
            where = next((p.device for p in model.parameters() if not p.is_meta), device)
            setattr(model.get_submodule(parent_name) if parent_name else model, leaf,
                    rebuilt.to(where))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelLoadError(f"these tensors were never loaded: {', '.join(left[:5])}")


# -- small readers -------------------------------------------------------------------------------

def _config_dtype(config: dict) -> torch.dtype:
    name = config.get("torch_dtype") or config.get("dtype")
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) and value.is_floating_point else torch.float32


def _tokenizer(source: Path):
    """The tokenizer published beside the model (never its own code), or None when there are
    no tokenizer files (the engine says so later)."""
    from .tokenizer_files import has_tokenizer_files, load_published_tokenizer

    if not has_tokenizer_files(source):
        return None
    try:
        return load_published_tokenizer(source)
    except AstdiffuseError as err:
        raise ModelLoadError(str(err)) from err


def _mask_token(explicit: int | None, config: dict, tokenizer, source: Path, family: str,
                rows: int) -> int:
    """The mask id: the caller's, else config.json's, else the tokenizer's, else the family's
    published one."""
    spec = family_spec(family)
    mask = explicit if explicit is not None else config.get("mask_token_id")
    if mask is None:
        mask = getattr(tokenizer, "mask_token_id", None)
    if mask is None and tokenizer is not None and spec.mask_token is not None:
        mask = tokenizer.backend_tokenizer.token_to_id(spec.mask_token)  # None if absent
    if mask is None:
        mask = spec.mask_ids_by_type.get(str(config.get("model_type") or "").lower(),
                                         spec.mask_id)
    if mask is None or not 0 <= int(mask) < rows:
        raise UnsupportedModelError(
            f"no usable mask token id for the {family} model in {source} (got {mask!r}, "
            f"{rows} embedding rows); pass mask_token_id=...")
    return int(mask)
