"""The masked-diffusion reverse process over a batch of canvases.

Each step the model predicts every still-masked position of the spans; a token is drawn per
position from the tempered top-p distribution, and positions are unmasked in order of priority,
computed on that same distribution as the published samplers do (`engine.infill.orders`):
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
from .orders import ORDERS, draw, sampling_distribution
from .request import InfillOptions
from .vocab import OTHER

ANCHOR_BOOST = 1.0  # a predicted keyword / identifier's priority is (1 + boost) times its own
ANCHOR_DEPTH_DECAY = 0.9  # AnchorTree's decay per level of bracket nesting
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


@dataclass
class RowGroup:
    """Rows [start, stop) of a batch that belong to one request: its options, its own random
    stream and anchor table, its callbacks, and how much work it took part in. Several groups
    share each model call (the remote server's dynamic batching); every decision stays per
    group, so a request decodes as it would alone (up to float rounding of a wider batch)."""

    start: int
    stop: int | None  # None: to the last row
    options: InfillOptions
    generator: torch.Generator
    anchor_classes: torch.Tensor | None = None  # int8 [V] on the device (its language's table)
    on_step: Callable[[int, int, SamplerState], None] | None = None
    cancelled: Callable[[], bool] | None = None
    steps: int = 0  # steps this group had masks in (all runs)
    stopped: bool = False  # cancelled: its rows decode no further

    def rows(self, batch: int) -> slice:
        return slice(self.start, batch if self.stop is None else self.stop)


class DiffusionSampler:
    """Runs steps of the reverse process on a `SamplerState`: one model call a step for the
    whole batch, the decisions per `RowGroup` (one group over all rows by default)."""

    def __init__(self, model, options: InfillOptions | None = None, *,
                 anchor_classes: torch.Tensor | None = None,
                 bracket_delta: torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 on_step: Callable[[int, int, SamplerState], None] | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 groups: list[RowGroup] | None = None):
        if groups is None:
            if options is None:
                raise ValueError("DiffusionSampler needs options or groups")
            groups = [RowGroup(0, None, options, generator or torch.Generator(),
                               anchor_classes=anchor_classes, on_step=on_step,
                               cancelled=cancelled)]
        first = groups[0].options
        if any((g.options.use_cache, g.options.cache_refresh)
               != (first.use_cache, first.cache_refresh) for g in groups):
            raise ValueError("the groups of one batch must agree on use_cache and cache_refresh")
        self.model = model
        self.groups = groups
        self.options = first  # the batch-wide options: use_cache, cache_refresh
        self.bracket_delta = bracket_delta  # int8 [V] on the device, or None
        self.anchored = any(g.options.anchored for g in groups)
        self.cached = first.use_cache and hasattr(model, "denoise_step")
        self._cache = None  # kept across runs: a repair round continues on the same cache
        self._cache_rows = None  # the batch rows [R] the cache holds, ascending
        # Every row's context keys / values from its last full pass, also of rows that finished
        # since (the working cache drops them): a repair round that remasks a finished row
        # continues from it instead of a full pass. Only context entries are read from it;
        # the span entries are recomputed by every step.
        self._wide = None
        self._wide_rows = None
        self._since_refresh = 0  # steps since the cache was last built by a full pass

    def run(self, state: SamplerState, steps: int | list[int]) -> None:
        """Denoise until no position of `state.masked` is left, in about `steps` steps (one
        number, or one per group)."""
        active, valid = _active_positions(state.editable)
        if active.shape[1] == 0:
            return
        batch = state.ids.shape[0]
        plan = [steps] * len(self.groups) if isinstance(steps, int) else list(steps)
        steps_row = self._per_row(batch, plan, state.ids.device, torch.long)
        threshold = self._per_row(batch, [g.options.threshold for g in self.groups],
                                  state.ids.device, torch.float32)
        remask = self._per_row(batch, [g.options.remask for g in self.groups],
                               state.ids.device, torch.float32)
        slot_start = _slot_starts(state.editable, active)
        step = 0
        hard_cap = 4 * max(plan) + int(state.masked.sum()) + 1
        while bool(state.masked.any()):
            self._stop_cancelled(state)
            if not bool(state.masked.any()):
                break
            if step >= hard_cap:  # cannot happen without remasking; a guard, not a schedule
                break
            # Only rows with masks left run through the model: a finished request (or length
            # candidate) costs nothing while the others of its batch go on.
            rows = state.masked.any(-1).nonzero().squeeze(-1)
            cache = self._cache_for(rows, state)
            refresh = cache is None or self._since_refresh >= self.options.cache_refresh
            if cache is None and self.cached:
                cache = self._shared_context(state, active, rows)
                refresh = cache is None
            if refresh:
                self._since_refresh = 0
            want = state.masked.gather(1, active) & valid
            busy = [g for g in self.groups if bool(want[g.rows(batch)].any())]
            built = refresh or self._cache is None
            logits, anchor_logits, self._cache = self._predict(state, active, want, rows,
                                                               None if refresh else cache)
            self._cache_rows = rows
            if self.cached and built:
                self._keep_wide(self._cache, rows)
            self._since_refresh += 1
            state.forward_passes += 1
            state.full_passes += int(refresh or not self.cached)
            left = (steps_row - step).clamp_min(1)
            self._update(state, active, valid, want, slot_start, logits, anchor_logits,
                         steps_left=left, threshold=threshold,
                         remask=remask * (step < REMASK_UNTIL * steps_row))
            step += 1
            state.steps += 1
            for group, planned in zip(self.groups, plan):
                if group not in busy:
                    continue
                group.steps += 1
                if group.on_step is not None:
                    rows = state.masked[group.rows(batch)]
                    remaining = max(0, planned - step) if bool(rows.any()) else 0
                    group.on_step(group.steps, group.steps + remaining, state)

    def _per_row(self, batch: int, values: list, device, dtype) -> torch.Tensor:
        out = torch.empty(batch, dtype=dtype, device=device)
        for group, value in zip(self.groups, values):
            out[group.rows(batch)] = value
        return out

    def _stop_cancelled(self, state: SamplerState) -> None:
        """Freeze the rows of every group whose flag is set; InfillCancelled once all are."""
        batch = state.ids.shape[0]
        for group in stopped_groups(self.groups):
            state.masked[group.rows(batch)] = False

    def _cache_for(self, rows: torch.Tensor, state: SamplerState):
        """The cache for the batch's `rows` [R]: the last one, or the part of it those rows
        hold when some rows finished since, or (a repair round brought back a finished row) the
        part of the wide cache; None before the first pass."""
        for cache, cached_rows in ((self._cache, self._cache_rows),
                                   (self._wide, self._wide_rows)):
            if cache is None:
                continue
            if torch.equal(rows, cached_rows):
                return cache
            where = _where(cached_rows, rows)
            if where is not None:
                return self.model.select_cache(cache, where,
                                               attention_mask=state.attention_mask[rows])
        return None

    def _keep_wide(self, cache, rows: torch.Tensor) -> None:
        """Record a freshly built cache of `rows` in the wide cache: it becomes the wide cache
        when it holds every row the wide one does, else its rows are copied into it."""
        if self._wide is None or _where(rows, self._wide_rows) is not None:
            self._wide, self._wide_rows = cache, rows  # the first pass, or all its rows again
            return
        where = _where(self._wide_rows, rows)
        if where is None:  # rows the wide cache never had: not in one batch; start over
            self._wide, self._wide_rows = cache, rows
            return
        # The working cache is a copy (select_cache) whenever it holds fewer rows, so this
        # writes to no cache in use; the span entries it leaves stale are recomputed anyway.
        for wide, fresh in zip(self._wide.keys + self._wide.values, cache.keys + cache.values):
            wide.index_copy_(0, where.to(wide.device), fresh)

    def _shared_context(self, state: SamplerState, active: torch.Tensor, rows: torch.Tensor):
        """The first cache of `rows` when each group's rows hold the same context (its length
        candidates, samples) and nothing decoded yet: one full pass over each group's first
        row, its context keys and values moved to the other rows' positions (`share_context`),
        instead of a full pass over every row. None when rows differ or the model cannot
        share (then the step is a full pass over all `rows`)."""
        if rows.numel() == 1 or not hasattr(self.model, "share_context"):
            return None
        batch = state.ids.shape[0]
        caches = []
        for group in self.groups:
            span = group.rows(batch)
            mine = rows[(rows >= span.start) & (rows < span.stop)]
            if mine.numel() == 0:
                continue
            cache = self._share_within(state, active, mine)
            if cache is None:
                return None
            caches.append(cache)
        if len(caches) > 1 and not hasattr(self.model, "concat_caches"):
            return None
        return self.model.concat_caches(caches, attention_mask=state.attention_mask[rows]) \
            if len(caches) > 1 else caches[0]

    def _share_within(self, state: SamplerState, active: torch.Tensor, rows: torch.Tensor):
        ids, masked, editable = state.ids[rows], state.masked[rows], state.editable[rows]
        attention = state.attention_mask[rows]
        identical = bool((ids == ids[:1]).all())
        if not identical and not bool((masked == editable).all()):
            return None  # spans already decoded differently: each row's context must see its own
        context = attention.bool() & ~editable
        counts = context.sum(-1)
        if int(counts.min()) != int(counts.max()):
            return None
        positions = torch.stack([row.nonzero().squeeze(-1) for row in context])  # [R, C]
        tokens = ids.gather(1, positions)
        if not bool((tokens == tokens[:1]).all()):
            return None
        _, _, first = self.model.denoise_step(ids[:1], active[rows[:1]],
                                              attention_mask=attention[:1])
        state.forward_passes += 1
        state.full_passes += 1
        return self.model.share_context(first, positions[0], positions, attention_mask=attention)

    def _predict(self, state: SamplerState, active: torch.Tensor, want: torch.Tensor,
                 rows: torch.Tensor, cache):
        """Denoiser logits and anchor logits (or None) at the `want` [B, A] entries of `active`
        [B, A], packed [N, V], computed over `rows` only (every want entry lies in them), and
        the cache of those rows."""
        everything = rows.numel() == state.ids.shape[0]
        ids = state.ids if everything else state.ids[rows]
        attention = state.attention_mask if everything else state.attention_mask[rows]
        active, want = (active, want) if everything else (active[rows], want[rows])
        if self.cached:
            return self.model.denoise_step(ids, active, attention_mask=attention, cache=cache,
                                           want=want)
        if hasattr(self.model, "logits_at"):  # the LM head only where a token is wanted
            rows_, columns = want.nonzero(as_tuple=True)
            return self.model.logits_at(ids, attention, rows_, active[rows_, columns]), None, \
                None
        logits = self.model.logits(ids, attention_mask=attention)
        anchor = None
        if self.anchored and getattr(self.model, "has_anchor", False):
            anchor = self.model.anchor_logits(ids, attention_mask=attention)
        logits = gather_positions(logits, active, want)
        if anchor is not None:
            anchor = gather_positions(anchor, active, want)
        return logits, anchor, None

    @torch.no_grad()
    def _update(self, state: SamplerState, active: torch.Tensor, valid: torch.Tensor,
                masked: torch.Tensor, slot_start: torch.Tensor, logits: torch.Tensor,
                anchor_logits: torch.Tensor | None, steps_left: torch.Tensor,
                threshold: torch.Tensor, remask: torch.Tensor) -> None:
        """One step's decisions. masked [B, A]: the entries still masked; logits and
        anchor_logits [N, V]: the model's predictions there (N = masked.sum(), row-major, so
        each group's entries are one contiguous run); steps_left, threshold, remask [B]: per
        row."""
        # Only still-masked positions are drawn and ranked: [N, V] instead of [B, A, V].
        picked = logits.float()  # [N, V]
        ends = masked.sum(-1).cumsum(0).tolist()
        nesting = None
        if self.bracket_delta is not None and any(
                g.options.anchored and g.anchor_classes is not None for g in self.groups):
            nesting = _nesting(state, active, slot_start, self.bracket_delta)[masked]
        drawn_m, p_drawn_m, p_sampled_m, priority_m = [], [], [], []
        batch = masked.shape[0]
        for group in self.groups:
            rows = group.rows(batch)
            lo = ends[rows.start - 1] if rows.start else 0
            hi = ends[rows.stop - 1] if rows.stop else 0
            if hi <= lo:
                continue
            options = group.options
            # drawn, ordered and thresholded on the tempered top-p distribution, as the
            # published samplers do; the candidate's score keeps the model's own probability
            probs = sampling_distribution(picked[lo:hi], options.temperature, options.top_p)
            drawn = draw(probs, options.temperature, group.generator)
            p_sampled = probs.gather(-1, drawn.unsqueeze(-1)).squeeze(-1)
            priority = ORDERS[options.order](probs, p_sampled)
            p_drawn = torch.log_softmax(picked[lo:hi], dim=-1).gather(
                -1, drawn.unsqueeze(-1)).squeeze(-1)
            if options.anchored and group.anchor_classes is not None:
                predicted = drawn if anchor_logits is None else anchor_logits[lo:hi].argmax(-1)
                is_anchor = group.anchor_classes[predicted] != OTHER
                priority = priority * (1.0 + ANCHOR_BOOST * is_anchor)
                if nesting is not None:
                    priority = priority * ANCHOR_DEPTH_DECAY ** nesting[lo:hi]
            drawn_m.append(drawn)
            p_drawn_m.append(p_drawn)
            p_sampled_m.append(p_sampled)
            priority_m.append(priority)
        if not drawn_m:
            return
        drawn = torch.zeros(masked.shape, dtype=torch.long, device=masked.device)
        drawn[masked] = torch.cat(drawn_m)
        logp_drawn = torch.zeros(masked.shape, dtype=torch.float32, device=masked.device)
        logp_drawn[masked] = torch.cat(p_drawn_m)
        p_drawn = torch.zeros(masked.shape, dtype=torch.float32, device=masked.device)
        p_drawn[masked] = torch.cat(p_sampled_m)
        priority = torch.full(masked.shape, -math.inf, device=masked.device)
        priority[masked] = torch.cat(priority_m).float()

        count = masked.sum(-1)  # [B]
        quota = torch.ceil(count / steps_left).long()
        rank = priority.argsort(dim=-1, descending=True).argsort(dim=-1)  # rank of each position
        # strictly above the threshold, as Fast-dLLM: a threshold of 1 is off
        chosen = masked & ((rank < quota.unsqueeze(-1))
                           | (p_drawn > threshold.unsqueeze(-1)))
        chosen |= masked & (rank == 0)  # at least one per row with masks left
        positions = active[chosen]
        rows = torch.arange(active.shape[0], device=active.device).unsqueeze(-1).expand_as(active)
        rows = rows[chosen]
        state.ids[rows, positions] = drawn[chosen]
        state.logp[rows, positions] = logp_drawn[chosen].clamp_min(-1e4)
        state.masked[rows, positions] = False
        if bool((remask > 0).any()):
            self._remask(state, active, valid, chosen, remask)

    def _remask(self, state: SamplerState, active: torch.Tensor, valid: torch.Tensor,
                chosen: torch.Tensor, share: torch.Tensor) -> None:
        """Return the least confident earlier-decoded tokens of each row to the mask: about
        `share` [B] times as many as were just decoded, always fewer, so every step progresses."""
        decoded = valid & ~state.masked.gather(1, active) & ~chosen
        decoded &= torch.isfinite(state.logp.gather(1, active))
        new = chosen.sum(-1)
        budget = torch.minimum(torch.floor(new * share).long(), new - 1)
        logp = state.logp.gather(1, active).masked_fill(~decoded, math.inf)
        rank = logp.argsort(dim=-1).argsort(dim=-1)
        again = decoded & (rank < budget.clamp_min(0).unsqueeze(-1))
        rows = torch.arange(active.shape[0], device=active.device).unsqueeze(-1).expand_as(active)
        positions, rows = active[again], rows[again]
        state.masked[rows, positions] = True
        state.ids[rows, positions] = self.model.mask_token_id


def stopped_groups(groups: list[RowGroup]) -> list[RowGroup]:
    """Poll each group's cancellation flag; the groups stopped so far (their rows decode no
    further), or InfillCancelled once every group is."""
    for group in groups:
        if not group.stopped and group.cancelled is not None and group.cancelled():
            group.stopped = True
    if all(g.stopped for g in groups):
        raise InfillCancelled("infill cancelled")
    return [g for g in groups if g.stopped]


def _where(held: torch.Tensor, rows: torch.Tensor) -> torch.Tensor | None:
    """Indices into `held` [H] (ascending) of each of `rows` [R] (ascending); None unless every
    one of `rows` is held."""
    where = torch.searchsorted(held, rows)
    if not bool((where < held.numel()).all()) or not torch.equal(held[where], rows):
        return None
    return where


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
