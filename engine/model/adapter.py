"""Loading denoisers for the sampler, offline only, all with one `logits(input_ids,
attention_mask)` interface: our anchored model; the published diffusion coders in native
transformers classes (`engine.model.native`, no remote code); any bidirectional masked LM
behind `MaskedLMDenoiser`. `load_denoiser` picks one by the checkpoint's family
(`engine.model.families.detect_family`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                          PretrainedConfig, PreTrainedModel)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..errors import AstdiffuseError
from .configuration import MODEL_TYPE
from .modeling import AnchoredDiffusionModel, apply_subs_parameterization

# Classes a remote-code model may register in its config's `auto_map`, in order of preference.
_REMOTE_AUTO_CLASSES = {"AutoModelForMaskedLM": AutoModelForMaskedLM, "AutoModel": AutoModel,
                        "AutoModelForCausalLM": AutoModelForCausalLM}


class ModelLoadError(AstdiffuseError):
    """A model could not be loaded as a denoiser."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """Neither a local model directory nor a model in the local Hugging Face cache."""

    def __init__(self, name: str, detail: str | None = None):
        self.name = name
        super().__init__(detail or (
            f"no model at {name!r}: it is not a local directory and not in the local Hugging Face "
            "cache (nothing is downloaded). Pass the directory of a saved model (config.json + "
            "*.safetensors), or download it first on a machine with network access, e.g. "
            f"`huggingface-cli download {name}`, and point HF_HOME at that cache"))


class RemoteCodeRequiredError(ModelLoadError):
    """The model needs its own modeling code (an `auto_map` in config.json) and is none of the
    families that load natively (Dream, LLaDA)."""

    def __init__(self, name: str, model_type: str | None):
        self.name = name
        self.model_type = model_type
        super().__init__(
            f"the model at {name!r} (model_type {model_type!r}) runs its own Python code from its "
            "directory (auto_map in config.json); astdiffuse does not run it unless you allow it: "
            "pass trust_remote_code=True (setting astdiffuse.trustRemoteCode / "
            "--trust-remote-code) if you trust that code")


class UnsupportedModelError(ModelLoadError):
    """The model is not a masked LM, or its mask token is unknown."""


@runtime_checkable
class Denoiser(Protocol):
    """What the sampler needs from a model; `AnchoredDiffusionModel` and `MaskedLMDenoiser`
    both provide it."""

    mask_token_id: int
    vocab_size: int
    device: torch.device
    dtype: torch.dtype

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               masked: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] -> [B, L, V]: mask token at -inf, visible tokens carried over."""

    def anchor_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      masked: torch.Tensor | None = None) -> torch.Tensor | None:
        """[B, L] -> [B, L, V], or None for a model without an anchor network."""


def _config_dict(name: str) -> tuple[str, dict]:
    """The local path (or cached hub id) and raw config.json of `name`; never downloads."""
    path = Path(name).expanduser()
    if path.is_file():
        raise ModelNotFoundError(name, f"{name!r} is a file; pass the directory the model was "
                                       "saved to (the one holding config.json)")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(name, f"{name!r} is a directory without config.json; pass "
                                           "the directory a model was saved to (save_pretrained)")
        try:
            config, _ = PretrainedConfig.get_config_dict(str(path), local_files_only=True)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot read {path / 'config.json'}: {err}") from err
        return str(path), config
    try:
        config, _ = PretrainedConfig.get_config_dict(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(name) from err
    return name, config


def _mask_token_from_tokenizer(source: str) -> int | None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tokenizer.mask_token_id


class MaskedLMDenoiser:
    """Any bidirectional masked LM as the denoiser, with the anchored model's inference interface.

    `model` is a loaded `PreTrainedModel` or the name of one: a local directory, or a hub id
    already in the local cache (`local_files_only=True`: a missing one raises
    `ModelNotFoundError` at once, never a network wait). Weights load from safetensors only.
    Models with their own code load only with `trust_remote_code=True`, otherwise
    `RemoteCodeRequiredError` (`load_denoiser` loads LLaDA, Dream and DiffuCoder natively
    instead, without their code). The mask token comes from
    `mask_token_id`, else the model config's `mask_token_id`, else the tokenizer saved beside it.
    `shift_logits` (default: on for Dream-type models) moves logits right by one position for
    models whose position i predicts token i + 1.
    """

    def __init__(self, model: str | Path | PreTrainedModel, *, mask_token_id: int | None = None,
                 trust_remote_code: bool = False, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, shift_logits: bool | None = None):
        source = None
        if isinstance(model, PreTrainedModel):
            self.model = model
        else:
            source, config = _config_dict(str(model))
            model_type = config.get("model_type")
            needs_remote_code = "auto_map" in config and model_type not in CONFIG_MAPPING
            if needs_remote_code and not trust_remote_code:
                raise RemoteCodeRequiredError(str(model), model_type)
            auto_class = AutoModelForMaskedLM
            if needs_remote_code:
                auto_map = config["auto_map"]
                auto_class = next((cls for key, cls in _REMOTE_AUTO_CLASSES.items()
                                   if key in auto_map), None)
                if auto_class is None:
                    raise UnsupportedModelError(
                        f"the model at {str(model)!r} registers none of "
                        f"{', '.join(_REMOTE_AUTO_CLASSES)} in its auto_map; it cannot serve as a "
                        "denoiser")
            load_kwargs = dict(local_files_only=True, use_safetensors=True,
                               trust_remote_code=trust_remote_code)
            if dtype is not None:
                load_kwargs["dtype"] = dtype
            try:
                self.model = auto_class.from_pretrained(source, **load_kwargs)
            except ValueError as err:
                if "Unrecognized configuration class" in str(err):
                    raise UnsupportedModelError(
                        f"the model at {str(model)!r} (model_type {model_type!r}) is not a masked "
                        "LM (no AutoModelForMaskedLM class); use a bidirectional masked LM such "
                        "as ModernBERT, or a Dream / DiffuCoder / LLaDA checkpoint through "
                        "load_denoiser") from err
                raise
            except OSError as err:
                raise ModelNotFoundError(str(model)) from err
        if device is not None or dtype is not None:
            self.model.to(device=device, dtype=dtype)
        self.model.eval()
        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.vocab_size = int(text_config.vocab_size)
        if mask_token_id is None:
            mask_token_id = getattr(text_config, "mask_token_id", None)
        if mask_token_id is None and source is not None:
            mask_token_id = _mask_token_from_tokenizer(source)
        if mask_token_id is None or not 0 <= int(mask_token_id) < self.vocab_size:
            raise UnsupportedModelError(
                f"no usable mask token id for this model (got {mask_token_id!r}, vocabulary "
                f"{self.vocab_size}); pass mask_token_id=..., or save a tokenizer with a mask "
                "token beside the model")
        self.mask_token_id = int(mask_token_id)
        if shift_logits is None:  # a shifted family's own code (trust_remote_code) is still so
            from .families import SPECS

            shifted = {kind for spec in SPECS if spec.shift for kind in spec.model_types}
            shift_logits = str(getattr(config, "model_type", "")).lower() in shifted
        self.shift_logits = bool(shift_logits)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    has_anchor = False

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               masked: torch.Tensor | None = None) -> torch.Tensor:
        """The model's logits [B, L, V] for input_ids [B, L], with the mask token at -inf and the
        visible (not masked, not mask token) positions carrying their input token over."""
        input_ids = input_ids.to(self.device)
        inputs = {"input_ids": input_ids}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask.to(self.device)
        output = self.model(**inputs)
        logits = output.logits if hasattr(output, "logits") else output[0]
        logits = logits[..., :self.vocab_size]
        if self.shift_logits:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        is_mask = input_ids == self.mask_token_id
        masked = is_mask if masked is None else masked.to(self.device).bool() | is_mask
        return apply_subs_parameterization(logits, input_ids, masked, self.mask_token_id)

    def anchor_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      masked: torch.Tensor | None = None) -> None:
        """None: a plain masked LM has no anchor network."""
        return None


def load_denoiser(name: str | Path, *, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, trust_remote_code: bool = False,
                  mask_token_id: int | None = None, family: str | None = None,
                  device_map: str | dict | None = None) -> Denoiser:
    """The denoiser saved at `name` (a directory, or a hub id already in the local cache).

    By the family `detect_family` reads from config.json and the tokenizer files (the table in
    `engine.model.families`), or `family` when given:
    - "anchored": our `AnchoredDiffusionModel`;
    - a native family (Dream, DiffuCoder, DreamOn, Open-dCoder, CoDA, LLaDA): a
      `NativeDiffusionLM` over transformers' Qwen2 / Qwen3 / Llama class, no remote code (their
      `auto_map` is ignored); `device_map="auto"` spreads it over GPUs and CPU (accelerate);
    - "masked-lm": a `MaskedLMDenoiser`;
    - any other model with an `auto_map`, and the LLaDA-MoE / LLaDA 2.x layouts that have no
      native equivalent: its own code through `MaskedLMDenoiser`, only with
      `trust_remote_code=True` (`RemoteCodeRequiredError` / `UnsupportedLayoutError` otherwise).
    Anything else raises `UnsupportedModelError` naming what was found and what is expected.
    """
    from .families import UnsupportedLayoutError, detect_family, family_spec
    from .tokenizer_files import published_tokens

    source, config = _config_dict(str(name))
    directory = _local_dir(source)
    tokens, has_mask = published_tokens(directory)
    try:
        found = detect_family(config, family, tokens=tokens, has_mask_token=has_mask)
    except UnsupportedLayoutError:
        if not (trust_remote_code and "auto_map" in config):
            raise
        found = "remote-code"
    except UnsupportedModelError:
        if family is not None or "auto_map" not in config:
            raise
        found = "remote-code"
    if found != "remote-code" and family_spec(found).native:
        from .native import load_native

        return load_native(directory, config, found, device=device, dtype=dtype,
                           device_map=device_map, mask_token_id=mask_token_id, name=str(name))
    if found != "anchored":
        if mask_token_id is None and found == "remote-code" and \
                config.get("mask_token_id") is None:  # (MaskedLMDenoiser reads config's)
            from .families import REMOTE_MASK_IDS

            mask_token_id = REMOTE_MASK_IDS.get(str(config.get("model_type") or "").lower())
        return MaskedLMDenoiser(name, mask_token_id=mask_token_id, device=device, dtype=dtype,
                                trust_remote_code=trust_remote_code)
    model = AnchoredDiffusionModel.from_pretrained(source, local_files_only=True,
                                                   use_safetensors=True)
    return model.to(device=device, dtype=dtype).eval()


def _local_dir(source: str) -> Path:
    """The directory holding `source`'s files: itself, or its snapshot in the local hub cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from transformers.utils import cached_file

    try:
        config = cached_file(source, "config.json", local_files_only=True)
    except OSError as err:
        raise ModelNotFoundError(source) from err
    if config is None:
        raise ModelNotFoundError(source)
    return Path(config).parent


def save_model_and_tokenizer(model: AnchoredDiffusionModel, tokenizer,
                             directory: str | Path) -> Path:
    """Save `model` (config.json + model.safetensors) and `tokenizer` (a transformers tokenizer or
    a `tokenizers.Tokenizer`, as tokenizer.json) into `directory`; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else len(tokenizer)
    if vocab > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab} tokens but the model only "
                         f"{model.config.vocab_size}; build the model for this tokenizer")
    model.save_pretrained(directory, safe_serialization=True)
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(directory)
    else:
        tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def load_model_and_tokenizer(directory: str | Path, device: str | torch.device = "cpu",
                             dtype: torch.dtype | None = None):
    """(model, tokenizer) saved by `save_model_and_tokenizer`: the model in eval mode on `device`
    in `dtype` (default: as saved), loaded from safetensors only."""
    from ..tokens import load_tokenizer

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(str(directory), f"no saved model in {directory} (config.json is "
                                                 "missing); train one or pass its directory")
    model = AnchoredDiffusionModel.from_pretrained(directory, local_files_only=True,
                                                   use_safetensors=True)
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = load_tokenizer(directory)
    if tokenizer.mask_token_id != model.config.mask_token_id:
        raise ModelLoadError(
            f"the tokenizer in {directory} has mask token id {tokenizer.mask_token_id} but the "
            f"model expects {model.config.mask_token_id}; save the model with the tokenizer it "
            "was trained with")
    return model, tokenizer
