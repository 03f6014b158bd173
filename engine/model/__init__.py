"""The anchored masked-diffusion LM (config, model, loss, presets) and loading any masked LM as
a denoiser. Importing this package registers the model with transformers' Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .adapter import (Denoiser, MaskedLMDenoiser, ModelLoadError, ModelNotFoundError,
                      RemoteCodeRequiredError, UnsupportedModelError, load_denoiser,
                      load_model_and_tokenizer, save_model_and_tokenizer)
from .configuration import ANCHOR_FEEDS, MODEL_TYPE, AnchoredDiffusionConfig
from .families import FAMILIES, SAMPLING_DEFAULTS, UnsupportedLayoutError, detect_family
from .loss import LOSS_WEIGHTINGS, DiffusionLoss, masked_diffusion_loss
from .modeling import (AnchoredDiffusionModel, AnchoredDiffusionOutput, ContextCache,
                       apply_subs_parameterization)
from .native import NativeDiffusionLM, load_native
from .presets import PRESETS, UnknownPresetError, config_from_preset

AutoConfig.register(MODEL_TYPE, AnchoredDiffusionConfig, exist_ok=True)
AutoModel.register(AnchoredDiffusionConfig, AnchoredDiffusionModel, exist_ok=True)
AutoModelForMaskedLM.register(AnchoredDiffusionConfig, AnchoredDiffusionModel, exist_ok=True)

__all__ = [
    "ANCHOR_FEEDS", "FAMILIES", "LOSS_WEIGHTINGS", "MODEL_TYPE", "PRESETS", "SAMPLING_DEFAULTS",
    "AnchoredDiffusionConfig", "AnchoredDiffusionModel", "AnchoredDiffusionOutput",
    "apply_subs_parameterization", "config_from_preset", "ContextCache", "Denoiser",
    "detect_family", "DiffusionLoss", "load_denoiser", "load_model_and_tokenizer", "load_native",
    "masked_diffusion_loss", "MaskedLMDenoiser", "ModelLoadError", "ModelNotFoundError",
    "NativeDiffusionLM", "RemoteCodeRequiredError", "save_model_and_tokenizer",
    "UnknownPresetError", "UnsupportedLayoutError", "UnsupportedModelError",
]
