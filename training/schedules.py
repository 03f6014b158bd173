"""Noise schedules: the per-sample masking rate t of each example in a batch, given the step.

t is both the share of tokens a strategy masks and the t of the loss's 1/t weight (MDLM NELBO).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _uniforms(batch_size: int, rng: np.random.Generator, antithetic: bool) -> np.ndarray:
    """float64 [B] in [0, 1): i.i.d., or one shared offset u0 spread as (u0 + i/B) mod 1 so the
    batch covers [0, 1) evenly (low-discrepancy; lowers the variance of the batch's loss)."""
    if batch_size < 0:
        raise ValueError(f"batch_size must be >= 0, not {batch_size}")
    if not antithetic:
        return rng.random(batch_size)
    u0 = rng.random()
    return np.mod(u0 + np.arange(batch_size) / max(batch_size, 1), 1.0)


@dataclass(frozen=True)
class TreeDiffSchedule:
    """TreeDiff: a base rate eps_t cosine-annealed from eps_start to eps_end over total_steps;
    each sample's rate is P_mask = (1 - eps_t) * U(0, 1) + eps_t, so P_mask lies in [eps_t, 1)."""

    total_steps: int  # steps over which eps_t anneals; later steps keep eps_end
    eps_start: float = 0.1  # eps_t at step 0 (TreeDiff)
    eps_end: float = 0.001  # eps_t at step total_steps and after (TreeDiff)
    antithetic: bool = False  # spread U over the batch as in LinearSchedule (TreeDiff: i.i.d.)

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, not {self.total_steps}")
        if not 0.0 < self.eps_end <= self.eps_start <= 1.0:
            raise ValueError("need 0 < eps_end <= eps_start <= 1")

    def eps(self, step: int) -> float:
        """eps_t = eps_end + (eps_start - eps_end) * (1 + cos(pi * step / total_steps)) / 2."""
        progress = min(max(step, 0), self.total_steps) / self.total_steps
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.eps_end + (self.eps_start - self.eps_end) * cosine

    def rates(self, step: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """float64 [B]: each sample's masking rate t (also its 1/t loss weight's t)."""
        eps = self.eps(step)
        return (1.0 - eps) * _uniforms(batch_size, rng, self.antithetic) + eps


@dataclass(frozen=True)
class LinearSchedule:
    """MDLM / LLaDA: t ~ U(eps, 1) with the linear schedule alpha_t = 1 - t, independent of the
    step; antithetic sampling gives t_i = eps + (1 - eps) * ((u0 + i/B) mod 1)."""

    eps: float = 1e-3  # smallest rate; keeps the 1/t loss weight bounded by 1/eps
    antithetic: bool = True  # low-discrepancy t's across the batch (MDLM's default)

    def __post_init__(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"eps must lie in (0, 1), not {self.eps}")

    def rates(self, step: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """float64 [B]: each sample's masking rate t in [eps, 1); `step` is unused."""
        del step
        return self.eps + (1.0 - self.eps) * _uniforms(batch_size, rng, self.antithetic)


def loss_weights(rates: np.ndarray) -> np.ndarray:
    """float64 [B]: the 1/t weight of the masked-diffusion loss of each sample (linear schedule)."""
    rates = np.asarray(rates, dtype=np.float64)
    if (rates <= 0).any():
        raise ValueError("rates must be positive to weight the loss by 1/t")
    return 1.0 / rates
