"""The dual key/value cache both kinds of model keep between sampler steps (Fast-dLLM's): the
record itself and what does not depend on the network (row selection, stacking, checks, the
rotary move of a cached key to another position).

Shapes: B rows, L positions, N key/value heads, D head size, A active positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ContextCache:
    """Keys and values of every position from a model's last full pass (`denoise_step` with no
    cache), so that later steps recompute only their active positions.

    Approximate: a step overwrites the entries of its active positions with fresh ones, but those
    of the context were computed from what the active positions held when the cache was built.
    As active tokens change (get unmasked), the context's keys and values in every layer after
    the first go stale, until a full pass builds a new cache.
    """

    keys: list[torch.Tensor]  # per layer: [B, N, L, D], after the rotary rotation (each on its
    #   layer's device when the model is spread over several)
    values: list[torch.Tensor]  # per layer, same order: [B, N, L, D]
    key_mask: torch.Tensor | None  # [B, 1, 1, L] bool (True: attend), None without padding
    length: int  # L
    batch_size: int  # B


def key_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The attention's key mask [B, 1, 1, L] bool (True: attend) for attention_mask [B, L];
    None when nothing is padding."""
    if attention_mask is None or bool(attention_mask.bool().all()):
        return None
    keys = attention_mask.bool()
    keys = keys | ~keys.any(-1, keepdim=True)  # an all-padding row attends everywhere
    return keys[:, None, None, :]


def check_active(input_ids: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """active [B, A] as long on input_ids' device; ValueError if not positions of it."""
    batch, length = input_ids.shape
    if active.dim() != 2 or active.shape[0] != batch:
        raise ValueError(f"active must be a [B, A] tensor of positions with B = {batch}, "
                         f"not of shape {tuple(active.shape)}")
    if active.dtype.is_floating_point or active.dtype == torch.bool:
        raise ValueError(f"active must hold integer positions, not {active.dtype}")
    active = active.to(device=input_ids.device, dtype=torch.long)
    outside = (active < 0) | (active >= length)
    if bool(outside.any()):
        raise ValueError(f"active position {int(active[outside][0])} is outside the "
                         f"sequence of {length} tokens (0..{length - 1})")
    return active


def check_want(active: torch.Tensor, want: torch.Tensor | None) -> None:
    if want is not None and want.shape != active.shape:
        raise ValueError(f"want must have active's shape {tuple(active.shape)}, not "
                         f"{tuple(want.shape)}")


def check_cache(cache: ContextCache, input_ids: torch.Tensor, layers: int, dtype: torch.dtype,
                given_mask: bool, mask: torch.Tensor | None) -> None:
    """ValueError if `cache` was not built for this batch, a model of `layers` layers in
    `dtype`, or this padding (`mask`, from the attention_mask given, if `given_mask`)."""
    batch, length = input_ids.shape
    if (cache.batch_size, cache.length) != (batch, length):
        raise ValueError(f"the cache was built for {cache.batch_size} sequence(s) of "
                         f"{cache.length} tokens, not {batch} of {length}; rebuild the cache "
                         "(cache=None)")
    if len(cache.keys) != layers or len(cache.values) != layers:
        raise ValueError(f"the cache holds {len(cache.keys)} layers, this model has "
                         f"{layers}; rebuild the cache (cache=None)")
    if layers and cache.values[0].dtype != dtype:
        raise ValueError(f"the cache is {cache.values[0].dtype}, the model {dtype}; rebuild "
                         "the cache (cache=None)")
    # Without an attention_mask the caller means "the padding the cache was built with".
    same = (mask is None and cache.key_mask is None) or (
        mask is not None and cache.key_mask is not None
        and torch.equal(mask.to(cache.key_mask.device), cache.key_mask))
    if given_mask and not same:
        raise ValueError("attention_mask differs from the one the cache was built with; "
                         "rebuild the cache (cache=None)")


def select_cache(cache: ContextCache, rows: torch.Tensor,
                 attention_mask: torch.Tensor | None = None) -> ContextCache:
    """A copy of the entries of `rows` [R] of `cache`, for steps that run only those rows (the
    others finished); attention_mask [R, L] of those rows."""
    def pick(tensors):
        return [t.index_select(0, rows.to(t.device)) for t in tensors]

    return ContextCache(keys=pick(cache.keys), values=pick(cache.values),
                        key_mask=key_mask(attention_mask), length=cache.length,
                        batch_size=int(rows.numel()))


def concat_caches(caches: list[ContextCache],
                  attention_mask: torch.Tensor | None = None) -> ContextCache:
    """Caches of the same length stacked row-wise (several requests' canvases in one batch);
    attention_mask [sum B, L] of all their rows."""
    if len({c.length for c in caches}) != 1:
        raise ValueError("caches of different lengths cannot be stacked; pad the rows first")
    if len(caches) == 1:
        return caches[0]
    return ContextCache(keys=[torch.cat(k) for k in zip(*(c.keys for c in caches))],
                        values=[torch.cat(v) for v in zip(*(c.values for c in caches))],
                        key_mask=key_mask(attention_mask), length=caches[0].length,
                        batch_size=sum(c.batch_size for c in caches))


def write_entries(keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
                  fresh_keys: torch.Tensor, fresh_values: torch.Tensor) -> None:
    """Write fresh entries [B, N, T, D] over one layer's cached keys and values [B, N, L, D] at
    positions [B, T], in place. A repeated position gets the same key and value twice (the same
    token at the same position), so whichever write lands is the same."""
    index = positions.to(keys.device)[:, None, :, None].expand(-1, keys.shape[1], -1,
                                                               keys.shape[3])
    keys.scatter_(2, index, fresh_keys.to(device=keys.device, dtype=keys.dtype))
    values.scatter_(2, index, fresh_values.to(device=values.device, dtype=values.dtype))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The GPT-NeoX halves layout's rotation partner of x [..., D]: (-second, first)."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def move_keys(x: torch.Tensor, shift: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Keys x [B, N, T, D] already rotated for their positions (halves layout, frequencies
    `inv_freq` [D/2]) moved by shift [B, T] positions: rotary rotations compose, so a key at
    position p becomes the key at p + shift (computed in float32, returned in x's dtype)."""
    angles = shift.float().to(x.device).unsqueeze(-1) * inv_freq.float().to(x.device)
    angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [B, 1, T, D]
    x32 = x.float()
    return (x32 * angles.cos() + rotate_half(x32) * angles.sin()).to(x.dtype)


def share_cache(cache: ContextCache, source: torch.Tensor, target: torch.Tensor,
                attention_mask: torch.Tensor | None, inv_freq: torch.Tensor) -> ContextCache:
    """A cache for B rows that hold the same context tokens as the one row of `cache`, at other
    positions (the rows of a canvas whose spans have other lengths).

    source [C]: the context positions in the cached row; target [B, C]: the same tokens'
    positions in each new row; attention_mask [B, L] of the new rows. Keys move to their new
    positions (exact rotary shift); the entries of every other position are zero, left to the
    next `denoise_step`, which must compute them all. Approximate like any cache: a row's
    context saw the cached row's spans, not its own."""
    batch, count = target.shape
    if source.shape != (count,) or cache.batch_size != 1:
        raise ValueError("share_context takes a one-row cache, source [C] and target [B, C]")
    length = int(attention_mask.shape[1]) if attention_mask is not None else cache.length
    if count and int(target.max()) >= length:
        raise ValueError(f"target position {int(target.max())} is outside {length} tokens")
    keys, values = [], []
    for old_k, old_v in zip(cache.keys, cache.values):
        src, dst = source.to(old_k.device), target.to(old_k.device)
        shape = (batch, old_k.shape[1], length, old_k.shape[3])
        new_k, new_v = old_k.new_zeros(shape), old_v.new_zeros(shape)
        moved = move_keys(old_k[:, :, src].expand(batch, -1, -1, -1),
                          dst - src.unsqueeze(0), inv_freq)
        write_entries(new_k, new_v, dst, moved, old_v[:, :, src].expand(batch, -1, -1, -1))
        keys.append(new_k)
        values.append(new_v)
    mask = key_mask(attention_mask.to(target.device) if attention_mask is not None else None)
    return ContextCache(keys=keys, values=values, key_mask=mask, length=length,
                        batch_size=batch)
