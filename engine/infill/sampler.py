"""The masked-diffusion reverse process over a batch of canvases.

Each step the model predicts every still-masked position of the spans; a token is drawn per
position (temperature, top-p), and positions are unmasked in order of priority:
- confidence (probability of the drawn token), margin (top-1 minus top-2 probability) or
  entropy (negative entropy of the prediction), per `InfillOptions.order`;
- anchored order: a position whose predicted token is a keyword or identifier of the language
  (the anchor network's prediction when the model has one) counts double, and a position inside
  brackets opened before it in its span counts ANCHOR_DEPTH_DECAY**nesting as much, so the
  skeleton of the code (keywords, names, shallow tokens) settles before the details;
- the schedule unmasks ceil(masked / steps left) positions a step, plus every position whose
  probability exceeds `threshold` (Fast-dLLM parallel decoding), at least one;
- optional ReMDM-style remasking returns the least confident decoded tokens to the mask.
With a model that has `denoise_step` (our anchored model), only span positions are recomputed
between full passes that refresh the context's cached keys/values every `cache_refresh` steps,
and logits come only at span positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import AstdiffuseError
from ..model.modeling import gather_positions
from .request import InfillOptions
from .vocab import OTHER

ANCHOR_BOOST = 1.0  # a predicted keyword / identifier's priority is (1 + boost) times its own
ANCHOR_DEPTH_DECAY = 0.9  # AnchorTree's decay per level of bracket nesting
TOP_K = 64  # sampling looks at this many most likely tokens per position
REMASK_UNTIL = 0.75  # remasking only in this first share of the steps, so decoding converges


class InfillCancelled(AstdiffuseError):
    """The caller's cancellation flag was set; the run stopped between two steps."""


@dataclass
class SamplerState:
    """The batch being denoised; tensors live on the model's device."""

    ids: torch.Tensor  # long [B, L]
    attention_mask: torch.Tensor  # long [B, L]
    editable: torch.Tensor  # bool [B, L]: span positions
    masked: torch.Tensor  # bool [B, L]: positions still to decode
    logp: torch.Tensor  # float [B, L]: log-probability of each decoded span token
    steps: int = 0  # steps run so far (all calls)
    forward_passes: int = 0
    full_passes: int = 0


class DiffusionSampler:
    """Runs steps of the reverse process on a `SamplerState` with one model and one generator."""

    def __init__(self, model, options: InfillOptions, *, anchor_classes: torch.Tensor | None,
                 bracket_delta: torch.Tensor | None, generator: torch.Generator,
                 on_step: Callable[[int, int, SamplerState], None] | None = None,
                 cancelled: Callable[[], bool] | None = None):
        self.model = model
        self.options = options
        self.anchor_classes = anchor_classes  # int8 [V] on the device, or None
        self.bracket_delta = bracket_delta  # int8 [V] on the device, or None
        self.generator = generator
        self.on_step = on_step
        self.cancelled = cancelled
        self.cached = options.use_cache and hasattr(model, "denoise_step")
        self._cache = None  # kept across runs: a repair round continues on the same cache
        self._since_refresh = 0  # steps since the cache was last built by a full pass

    def run(self, state: SamplerState, steps: int) -> None:
        """Denoise until no position of `state.masked` is left, in about `steps` steps."""
        active, valid = _active_positions(state.editable)
        if active.shape[1] == 0:
            return
        slot_start = _slot_starts(state.editable, active)
        step = 0
        hard_cap = 4 * steps + int(state.masked.sum()) + 1
        while bool(state.masked.any()):
            if self.cancelled is not None and self.cancelled():
                raise InfillCancelled("infill cancelled")
            if step >= hard_cap:  # cannot happen without remasking; a guard, not a schedule
                break
            cache = self._cache
            refresh = cache is None or self._since_refresh >= self.options.cache_refresh
            if cache is None and self.cached:
                cache = self._shared_context(state, active)
                refresh = cache is None
            if refresh:
                self._since_refresh = 0
            want = state.masked.gather(1, active) & valid
            logits, anchor_logits, self._cache = self._predict(state, active, want,
                                                               None if refresh else cache)
            self._since_refresh += 1
            state.forward_passes += 1
            state.full_passes += int(refresh or not self.cached)
            self._update(state, active, valid, want, slot_start, logits, anchor_logits,
                         steps_left=max(1, steps - step), remask=step < REMASK_UNTIL * steps)
            step += 1
            state.steps += 1
            if self.on_step is not None:
                self.on_step(state.steps, state.steps + _remaining_estimate(state, steps - step),
                             state)

    def _shared_context(self, state: SamplerState, active: torch.Tensor):
        """The first cache of a batch whose rows hold the same context (length candidates,
        samples) and nothing decoded yet: one full pass over the first row, its context keys
        and values moved to each row's positions (`share_context`), instead of a full pass over
        every row. None when the rows differ or the model cannot share."""
        if state.ids.shape[0] == 1 or not hasattr(self.model, "share_context"):
            return None
        identical = bool((state.ids == state.ids[:1]).all())
        if not identical and not bool((state.masked == state.editable).all()):
            return None  # spans already decoded differently: each row's context must see its own
        context = state.attention_mask.bool() & ~state.editable
        counts = context.sum(-1)
        if int(counts.min()) != int(counts.max()):
            return None
        positions = torch.stack([row.nonzero().squeeze(-1) for row in context])  # [B, C]
        tokens = state.ids.gather(1, positions)
        if not bool((tokens == tokens[:1]).all()):
            return None
        _, _, first = self.model.denoise_step(state.ids[:1], active[:1],
                                              attention_mask=state.attention_mask[:1])
        state.forward_passes += 1
        state.full_passes += 1
        return self.model.share_context(first, positions[0], positions,
                                        attention_mask=state.attention_mask)

    def _predict(self, state: SamplerState, active: torch.Tensor, want: torch.Tensor, cache):
        """Denoiser logits and anchor logits (or None) at the `want` [B, A] entries of `active`
        [B, A], packed [N, V], and the cache."""
        if self.cached:
            return self.model.denoise_step(state.ids, active, attention_mask=state.attention_mask,
                                           cache=cache, want=want)
        logits = self.model.logits(state.ids, attention_mask=state.attention_mask)
        anchor = None
        if self.options.anchored and getattr(self.model, "has_anchor", False):
            anchor = self.model.anchor_logits(state.ids, attention_mask=state.attention_mask)
        logits = gather_positions(logits, active, want)
        if anchor is not None:
            anchor = gather_positions(anchor, active, want)
        return logits, anchor, None

    @torch.no_grad()
    def _update(self, state: SamplerState, active: torch.Tensor, valid: torch.Tensor,
                masked: torch.Tensor, slot_start: torch.Tensor, logits: torch.Tensor,
                anchor_logits: torch.Tensor | None, steps_left: int, remask: bool) -> None:
        """One step's decisions. masked [B, A]: the entries still masked; logits and
        anchor_logits [N, V]: the model's predictions there (N = masked.sum())."""
        options = self.options
        # Only still-masked positions are drawn and ranked: [N, V] instead of [B, A, V].
        picked = logits.float()  # [N, V]
        probs = torch.softmax(picked, dim=-1)
        drawn_m = self._draw(picked)  # [N]
        p_drawn_m = probs.gather(-1, drawn_m.unsqueeze(-1)).squeeze(-1)
        priority_m = self._confidence(probs, p_drawn_m)
        if options.anchored and self.anchor_classes is not None:
            predicted = drawn_m if anchor_logits is None else anchor_logits.argmax(-1)
            is_anchor = self.anchor_classes[predicted] != OTHER
            priority_m = priority_m * (1.0 + ANCHOR_BOOST * is_anchor)
            if self.bracket_delta is not None:
                nesting = _nesting(state, active, slot_start, self.bracket_delta)[masked]
                priority_m = priority_m * ANCHOR_DEPTH_DECAY ** nesting
        drawn = torch.zeros(masked.shape, dtype=torch.long, device=masked.device)
        drawn[masked] = drawn_m
        p_drawn = torch.zeros(masked.shape, dtype=torch.float32, device=masked.device)
        p_drawn[masked] = p_drawn_m
        priority = torch.full(masked.shape, -math.inf, device=masked.device)
        priority[masked] = priority_m.float()

        count = masked.sum(-1)  # [B]
        quota = torch.ceil(count / steps_left).long()
        rank = priority.argsort(dim=-1, descending=True).argsort(dim=-1)  # rank of each position
        chosen = masked & ((rank < quota.unsqueeze(-1)) | (p_drawn >= options.threshold))
        chosen |= masked & (rank == 0)  # at least one per row with masks left
        positions = active[chosen]
        rows = torch.arange(active.shape[0], device=active.device).unsqueeze(-1).expand_as(active)
        rows = rows[chosen]
        state.ids[rows, positions] = drawn[chosen]
        state.logp[rows, positions] = p_drawn[chosen].clamp_min(1e-12).log()
        state.masked[rows, positions] = False
        if remask and options.remask > 0:
            self._remask(state, active, valid, chosen)

    def _draw(self, logits: torch.Tensor) -> torch.Tensor:
        """A token per row [N] from logits [N, V] at the options' temperature; top-p is taken
        within the TOP_K most likely tokens (sorting the whole vocabulary every step costs more
        than a cached model step)."""
        temperature, top_p = self.options.temperature, self.options.top_p
        if temperature <= 0 or logits.shape[0] == 0:
            return logits.argmax(-1)
        top, order = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1)  # sorted, descending
        probs = torch.softmax(top / temperature, dim=-1)
        if top_p < 1.0:
            keep = probs.cumsum(-1) - probs < top_p  # the top token always stays
            probs = probs * keep
        choice = torch.multinomial(probs, 1, generator=self.generator)  # [N, 1]
        return order.gather(-1, choice).squeeze(-1)

    def _confidence(self, probs: torch.Tensor, p_drawn: torch.Tensor) -> torch.Tensor:
        order = self.options.order
        if order == "confidence":
            return p_drawn
        if order == "margin":
            top2 = probs.topk(2, dim=-1).values
            return top2[..., 0] - top2[..., 1]
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        return torch.exp(-entropy)  # in (0, 1], larger when the prediction is sharper

    def _remask(self, state: SamplerState, active: torch.Tensor, valid: torch.Tensor,
                chosen: torch.Tensor) -> None:
        """Return the least confident earlier-decoded tokens of each row to the mask: about
        `remask` times as many as were just decoded, always fewer, so every step progresses."""
        decoded = valid & ~state.masked.gather(1, active) & ~chosen
        decoded &= torch.isfinite(state.logp.gather(1, active))
        new = chosen.sum(-1)
        budget = torch.minimum(torch.floor(new * self.options.remask).long(), new - 1)
        logp = state.logp.gather(1, active).masked_fill(~decoded, math.inf)
        rank = logp.argsort(dim=-1).argsort(dim=-1)
        again = decoded & (rank < budget.clamp_min(0).unsqueeze(-1))
        rows = torch.arange(active.shape[0], device=active.device).unsqueeze(-1).expand_as(active)
        positions, rows = active[again], rows[again]
        state.masked[rows, positions] = True
        state.ids[rows, positions] = self.model.mask_token_id


def _active_positions(editable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Span positions of each row, [B, A] ascending, shorter rows padded by repeating their
    first position, and which entries are real [B, A] bool."""
    counts = editable.sum(-1)
    width = int(counts.max())
    order = torch.argsort((~editable).to(torch.int8), dim=-1, stable=True)[:, :width]
    valid = torch.arange(width, device=editable.device).unsqueeze(0) < counts.unsqueeze(-1)
    active = torch.where(valid, order, order[:, :1])
    return active, valid


def _slot_starts(editable: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """For each active entry, the index (in active coordinates) where its span slot starts."""
    starts = torch.zeros_like(editable)
    starts[:, 0] = editable[:, 0]
    starts[:, 1:] = editable[:, 1:] & ~editable[:, :-1]
    is_start = starts.gather(1, active)
    index = torch.arange(active.shape[1], device=active.device).expand_as(active)
    return torch.cummax(torch.where(is_start, index, torch.zeros_like(index)), dim=1).values


def _nesting(state: SamplerState, active: torch.Tensor, slot_start: torch.Tensor,
             bracket_delta: torch.Tensor) -> torch.Tensor:
    """Brackets left open before each active position by the decoded tokens of its span."""
    known = ~state.masked.gather(1, active)
    delta = bracket_delta[state.ids.gather(1, active)].long() * known
    before = delta.cumsum(-1) - delta
    base = before.gather(1, slot_start)
    return (before - base).clamp_min(0).float()


def _remaining_estimate(state: SamplerState, steps_left: int) -> int:
    return max(0, steps_left) if bool(state.masked.any()) else 0
