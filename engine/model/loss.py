"""The masked-diffusion training objective: the NELBO of the denoiser (MDLM, 1/t weight for the
linear schedule, or a plain per-token mean) plus the AnchorTree/ADLM anchor term."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_WEIGHTINGS = ("elbo", "mean")
IGNORE_INDEX = -100  # labels with this value take no part in the loss (transformers' convention)
MIN_T = 1e-3  # noise levels are clamped to this before taking 1/t


@dataclass
class DiffusionLoss:
    """Scalars of one batch: `loss = nelbo + anchor_loss`."""

    loss: torch.Tensor
    nelbo: torch.Tensor  # the denoiser's term
    anchor_loss: torch.Tensor  # the anchor network's term (0 without anchor weights)


def _token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         selected: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `logits` [B, L, V] against `labels` [B, L] at the `selected` [B, L]
    positions, in fp32; 0 elsewhere. Returns [B, L]."""
    per_token = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
    if selected.any():
        picked = F.cross_entropy(logits[selected].float(), labels[selected], reduction="none")
        per_token = per_token.masked_scatter(selected, picked)
    return per_token


def masked_diffusion_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    masked: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    anchor_logits: torch.Tensor | None = None,
    anchor_weights: torch.Tensor | None = None,
    loss_weighting: str = "elbo",
    mask_token_id: int | None = None,
) -> DiffusionLoss:
    """Masked-diffusion loss of one batch.

    logits [B, L, V]: the denoiser's logits (mask token at -inf); labels [B, L]: the original
    tokens (IGNORE_INDEX to leave a position out); masked [B, L] bool: the positions that were
    masked; attention_mask [B, L]: 1 for real tokens, 0 for padding; t [B]: noise level of each
    sample; anchor_logits [B, L, V] and anchor_weights [B, L] float: the anchor network's logits
    and the AnchorTree weight of each token (gamma * decay^(depth - d0) for keywords and
    identifiers, 0 otherwise).

    A position counts when it is masked, real (attention_mask 1) and has a label (not
    IGNORE_INDEX and not the mask token). With `loss_weighting="elbo"` (MDLM, linear
    schedule) each sample's cross-entropy is weighted by 1/t and the sum is divided by the
    number of real labelled tokens, so the result is the NELBO per token; when `t` is None, the
    fraction of those tokens that is masked stands in for it. With `"mean"` (TreeDiff schedule)
    it is the mean cross-entropy over counted positions. The anchor term gets the same weight
    and normaliser (ADLM: -(log p_denoiser + gamma * anchor_mask * log p_anchor) / t); in
    expectation both normalisers are "per masked token".
    """
    if loss_weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, not {loss_weighting!r}")
    eligible = labels != IGNORE_INDEX
    if mask_token_id is not None:
        eligible &= labels != mask_token_id
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    counted = eligible & masked.bool()
    safe_labels = labels.masked_fill(~counted, 0)

    if loss_weighting == "elbo":
        eligible_per_sample = eligible.sum(-1).float()  # [B]
        if t is None:
            t = counted.sum(-1).float() / eligible_per_sample.clamp_min(1.0)
        weight = 1.0 / t.float().to(logits.device).clamp_min(MIN_T)  # [B]
        weight = weight[:, None].expand(labels.shape)  # [B, L]
        normaliser = eligible_per_sample.sum().clamp_min(1.0)
    else:
        weight = torch.ones(labels.shape, dtype=torch.float32, device=logits.device)
        normaliser = counted.sum().float().clamp_min(1.0)

    denoiser_ce = _token_cross_entropy(logits, safe_labels, counted)  # [B, L]
    nelbo = (denoiser_ce * weight).sum() / normaliser
    if anchor_logits is not None and anchor_weights is not None:
        anchor_counted = counted & (anchor_weights > 0)
        anchor_ce = _token_cross_entropy(anchor_logits, safe_labels, anchor_counted)
        anchor_w = anchor_weights.float().masked_fill(~anchor_counted, 0.0)
        anchor_loss = (anchor_ce * anchor_w * weight).sum() / normaliser
    else:
        anchor_loss = torch.zeros((), dtype=torch.float32, device=logits.device)
    return DiffusionLoss(loss=nelbo + anchor_loss, nelbo=nelbo, anchor_loss=anchor_loss)
