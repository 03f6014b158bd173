"""The dual key/value cache of the native families (Dream, DiffuCoder, DreamOn, Open-dCoder,
CoDA, LLaDA), through transformers' own attention code.

A full pass runs the whole canvas and stores every layer's keys and values (after the rotary
rotation) in a `ContextCache`; a cached step runs only the positions whose states it needs (the
active span positions, and for the families whose logit i is read from hidden state i - 1, the
positions just before them) with their true positions, writes their fresh keys and values over
theirs, and attends to all L cached entries under the canvas' padding mask. Transformers' layers
do the attention (SDPA or eager, CPU or CUDA, spread by `device_map` or not): `_CacheWriter` is
the `Cache` they call with each layer's fresh keys and values.

Shapes: B rows, L positions, A active positions, T positions run, N wanted entries, V vocabulary.
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers.cache_utils import Cache

from .context_cache import (ContextCache, check_active, check_cache, check_want, key_mask,
                            share_cache, write_entries)


class _CacheWriter(Cache):
    """The `Cache` transformers' attention layers update once per layer and call. A full pass
    (`positions` None) records each layer's keys and values and attends with them as they are;
    a cached step scatters its T fresh entries into the record at `positions` [B, T] and attends
    to all L recorded ones."""

    def __init__(self, record: ContextCache, positions: torch.Tensor | None):
        try:
            super().__init__(layers=[])
        except TypeError:  # transformers 4: Cache() takes no layers
            super().__init__()
        self.record = record
        self.positions = positions

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        # LLaDA rotates in float32 and attends in the model's dtype: record what it attends with
        keys = key_states.to(value_states.dtype)
        if self.positions is None:
            self.record.keys[layer_idx] = keys
            self.record.values[layer_idx] = value_states
            return key_states, value_states
        cached_k, cached_v = self.record.keys[layer_idx], self.record.values[layer_idx]
        write_entries(cached_k, cached_v, self.positions, keys, value_states)
        return cached_k, cached_v

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.record.length

    def __len__(self) -> int:
        return len(self.record.keys)


def padding_bias(attention_mask: torch.Tensor | None, batch: int, length: int,
                 dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The additive key-padding mask [B, 1, 1, L] (0: attend, finfo.min: padding) transformers
    takes as a ready 4D mask, so its mask builder adds no causal part."""
    keep = torch.ones(batch, length, dtype=torch.bool, device=device) \
        if attention_mask is None else attention_mask.to(device).bool()
    bias = torch.zeros(batch, 1, 1, length, dtype=dtype, device=device)
    return bias.masked_fill(~keep[:, None, None, :], torch.finfo(dtype).min)


def run_positions(active: torch.Tensor, length: int, shift: bool) -> torch.Tensor:
    """The positions a cached step runs, [B, T] ascending: the active ones and, when logit i is
    read from hidden state i - 1 (`shift`), the ones just before them; a row with fewer repeats
    its last (the same token at the same position computes the same state twice)."""
    need = torch.zeros(active.shape[0], length, dtype=torch.bool, device=active.device)
    need.scatter_(1, active, True)
    if shift:
        need.scatter_(1, (active - 1).clamp_min(0), True)
    counts = need.sum(-1)
    width = int(counts.max())
    order = torch.argsort((~need).to(torch.int8), dim=-1, stable=True)[:, :width]
    valid = torch.arange(width, device=active.device).unsqueeze(0) < counts.unsqueeze(-1)
    return torch.where(valid, order, order.gather(1, (counts - 1).unsqueeze(-1)))


@functools.lru_cache(maxsize=None)
def _cache_argument(decoder_class: type) -> str:
    """The name a transformers decoder class takes its cache under: `cache` (5.x),
    `past_key_values` (4.x); read once per class, not every step."""
    parameters = inspect.signature(decoder_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def denoise_step(lm, input_ids: torch.Tensor, active: torch.Tensor,
                 attention_mask: torch.Tensor | None = None, cache: ContextCache | None = None,
                 want: torch.Tensor | None = None):
    """`NativeDiffusionLM.denoise_step`: (logits [B, A, V] or [N, V] with `want`, None, cache)
    under the SUBS rules; see the module docstring and `AnchoredDiffusionModel.denoise_step`
    for the contract."""
    device = lm.device
    input_ids = input_ids.to(device)
    active = check_active(input_ids, active)
    check_want(active, want)
    batch, length = input_ids.shape
    decoder = lm.model.model
    layers = int(lm.config.num_hidden_layers)
    bias = padding_bias(attention_mask, batch, length, lm.dtype, device)
    mask = key_mask(attention_mask)
    if cache is None:
        cache = ContextCache(keys=[None] * layers, values=[None] * layers, key_mask=mask,
                             length=length, batch_size=batch)
        positions = torch.arange(length, device=device).unsqueeze(0).expand(batch, -1)
        ids, writer, slot = input_ids, _CacheWriter(cache, None), None
    else:
        check_cache(cache, input_ids, layers, lm.dtype, attention_mask is not None, mask)
        positions = run_positions(active, length, lm.shift_logits)
        ids, writer = input_ids.gather(1, positions), _CacheWriter(cache, positions)
        slot = torch.zeros(batch, length, dtype=torch.long, device=device)
        slot.scatter_(1, positions, torch.arange(positions.shape[1], device=device)
                      .expand_as(positions))
    hidden = decoder(input_ids=ids, attention_mask=bias, position_ids=positions,
                     use_cache=False, **{_cache_argument(type(decoder)): writer}).last_hidden_state
    wanted = torch.ones_like(active, dtype=torch.bool) if want is None else want.to(device)
    rows, columns = wanted.nonzero(as_tuple=True)
    targets = active[rows, columns]
    sources = (targets - 1).clamp_min(0) if lm.shift_logits else targets
    if slot is not None:
        sources = slot[rows, sources]
    logits = lm.head_logits(hidden[rows.to(hidden.device), sources.to(hidden.device)])
    logits = _carry_visible(logits, input_ids[rows, targets].to(logits.device), lm.mask_token_id)
    if want is None:
        logits = logits.view(batch, active.shape[1], -1)
    return logits, None, cache


def _carry_visible(logits: torch.Tensor, tokens: torch.Tensor, mask_id: int) -> torch.Tensor:
    """SUBS at entries that hold a token (not the mask): exactly that token, one-hot."""
    visible = tokens != mask_id
    if not bool(visible.any()):
        return logits
    one_hot = torch.full_like(logits[visible], float("-inf"))
    one_hot.scatter_(-1, tokens[visible].unsqueeze(-1), 0.0)
    logits[visible] = one_hot
    return logits


def share_context(lm, cache: ContextCache, source: torch.Tensor, target: torch.Tensor,
                  attention_mask: torch.Tensor | None = None) -> ContextCache:
    """`engine.model.context_cache.share_cache` with the decoder's rotary frequencies."""
    rotary = lm.model.model.rotary_emb
    return share_cache(cache, source, target, attention_mask, rotary.inv_freq)
