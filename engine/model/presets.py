"""Named model sizes: `tiny` for tests, `small` the default shipped model, `base` for a GPU run.
Parameter counts are in docs/model.md."""

from __future__ import annotations

import inspect

from ..errors import AstdiffuseError
from .configuration import AnchoredDiffusionConfig

PRESETS: dict[str, dict] = {
    # For tests: trains in seconds on a CPU.
    "tiny": dict(hidden_size=64, num_anchor_layers=2, num_denoiser_layers=1,
                 num_attention_heads=4, intermediate_size=256, max_position_embeddings=512),
    # The default model: 10.5 M parameters at vocabulary 8192 (8.4 M with anchor_feed="hidden").
    "small": dict(hidden_size=256, num_anchor_layers=6, num_denoiser_layers=2,
                  num_attention_heads=4, intermediate_size=1024, max_position_embeddings=1024),
    # A larger model for a GPU run: 46 M parameters at vocabulary 8192.
    "base": dict(hidden_size=512, num_anchor_layers=8, num_denoiser_layers=4,
                 num_attention_heads=8, intermediate_size=2048, max_position_embeddings=2048),
}


class UnknownPresetError(AstdiffuseError, ValueError):
    """The preset name is not one of `PRESETS`."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")


def config_from_preset(name: str, vocab_size: int, **overrides) -> AnchoredDiffusionConfig:
    """The config of preset `name` for a tokenizer of `vocab_size` tokens; `overrides` replace
    any `AnchoredDiffusionConfig` argument (e.g. `use_anchor=False`, `mask_token_id=...`)."""
    if name not in PRESETS:
        raise UnknownPresetError(name)
    known = set(inspect.signature(AnchoredDiffusionConfig.__init__).parameters) - {"self",
                                                                                   "kwargs"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config argument(s) {', '.join(unknown)}; "
                         f"AnchoredDiffusionConfig takes: {', '.join(sorted(known))}")
    return AnchoredDiffusionConfig(**{**PRESETS[name], "vocab_size": vocab_size, **overrides})
