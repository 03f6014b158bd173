"""The anchored masked-diffusion LM (config, model, loss, presets) and loading any masked LM as
a denoiser. Importing this package registers the model with transformers' Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .adapter import (Denoiser, MaskedLMDenoiser, ModelLoadError, ModelNotFoundError,
                      RemoteCodeRequiredError, UnsupportedModelError, load_denoiser,
                      load_model_and_tokenizer, save_model_and_tokenizer)
from .configuration import ANCHOR_FEEDS, MODEL_TYPE, AnchoredDiffusionConfig
from .loss import LOSS_WEIGHTINGS, DiffusionLoss, masked_diffusion_loss
from .modeling import (AnchoredDiffusionModel, AnchoredDiffusionOutput, ContextCache,
                       apply_subs_parameterization)
from .presets import PRESETS, UnknownPresetError, config_from_preset

AutoConfig.register(MODEL_TYPE, AnchoredDiffusionConfig, exist_ok=True)
AutoModel.register(AnchoredDiffusionConfig, AnchoredDiffusionModel, exist_ok=True)
AutoModelForMaskedLM.register(AnchoredDiffusionConfig, AnchoredDiffusionModel, exist_ok=True)

__all__ = [
    "ANCHOR_FEEDS", "LOSS_WEIGHTINGS", "MODEL_TYPE", "PRESETS", "AnchoredDiffusionConfig",
    "AnchoredDiffusionModel", "AnchoredDiffusionOutput", "ContextCache", "Denoiser",
    "DiffusionLoss", "MaskedLMDenoiser", "ModelLoadError", "ModelNotFoundError",
    "RemoteCodeRequiredError", "UnknownPresetError", "UnsupportedModelError",
    "apply_subs_parameterization", "config_from_preset", "load_denoiser",
    "load_model_and_tokenizer", "masked_diffusion_loss", "save_model_and_tokenizer",
]
