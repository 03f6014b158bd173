"""The anchored masked-diffusion LM: an anchor network that predicts salient tokens first and a
denoiser that fills in the rest from its output (AnCoder/ADLM), or the plain MDLM baseline.

Shapes: B batch, L sequence length, V vocabulary, H hidden size, N heads, D = H / N head size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import AnchoredDiffusionConfig
from .context_cache import (ContextCache, check_active, check_cache, check_want, concat_caches,
                            key_mask, move_keys, rotate_half, select_cache, share_cache,
                            write_entries)
from .loss import masked_diffusion_loss

try:  # transformers 5: init functions that leave weights loaded from a checkpoint alone
    from transformers import initialization as init
except ImportError:  # transformers 4
    from torch.nn import init


def apply_subs_parameterization(logits: torch.Tensor, input_ids: torch.Tensor,
                                masked: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """MDLM's SUBS rules on raw logits [B, L, V] (returns a new [B, L, V] tensor).

    The mask token gets logit -inf everywhere, so it is never predicted. A position that is
    not `masked` [B, L] carries its input token over: logit 0 for `input_ids` [B, L] and -inf
    for every other token, so softmax there is exactly one-hot and argmax is the input token.
    """
    vocab = logits.shape[-1]
    is_mask_column = torch.arange(vocab, device=logits.device) == mask_token_id  # [V]
    visible = ~masked.bool()
    out = logits.masked_fill(is_mask_column, float("-inf"))
    kept = out.gather(-1, input_ids.unsqueeze(-1))  # [B, L, 1]
    out = out.masked_fill(visible.unsqueeze(-1), float("-inf"))
    kept = kept.masked_fill(visible.unsqueeze(-1), 0.0)
    return out.scatter(-1, input_ids.unsqueeze(-1), kept)


def rotary_cos_sin(length: int, head_size: int, theta: float, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary embeddings for positions 0..length-1, each [L, D], computed in fp32
    and cast to `dtype`."""
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32),
                         _inv_freq(head_size, theta, device))
    angles = torch.cat([angles, angles], dim=-1)  # [L, D]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x [B, N, L, D] by position (GPT-NeoX halves layout)."""
    return x * cos + rotate_half(x) * sin


def rotate_by(x: torch.Tensor, shift: torch.Tensor, head_size: int, theta: float) -> torch.Tensor:
    """Keys x [B, N, T, D] already rotated for their positions, moved by shift [B, T] positions:
    rotary rotations compose, so a key at position p becomes exactly the key at p + shift."""
    return move_keys(x, shift, _inv_freq(head_size, theta, x.device))


def _inv_freq(head_size: int, theta: float, device: torch.device) -> torch.Tensor:
    return 1.0 / theta ** (torch.arange(0, head_size, 2, device=device,
                                        dtype=torch.float32) / head_size)  # [D/2]


def gather_positions(x: torch.Tensor, positions: torch.Tensor,
                     want: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of x [B, L, ...] at positions [B, A] -> [B, A, ...]; with want [B, A] bool, only
    those entries, packed -> [N, ...] (N = want.sum(), row-major order)."""
    index = positions.view(*positions.shape, *(1,) * (x.dim() - 2))
    out = x.gather(1, index.expand(*positions.shape, *x.shape[2:]))
    return out if want is None else out[want]


class AnchoredDiffusionRMSNorm(nn.Module):
    """RMS norm over the last dimension, computed in fp32 so bf16 activations stay stable."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., H] -> [..., H] in x's dtype."""
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


class AnchoredDiffusionAttention(nn.Module):
    """Bidirectional multi-head self-attention with rotary positions and key padding."""

    def __init__(self, config: AnchoredDiffusionConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.out_proj.is_residual_projection = True
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None,
                kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, H]; cos, sin [T, D] (or [B, 1, T, D] for `positions`); key_mask [B, 1, 1, L]
        bool (True: attend) -> [B, T, H].

        kv_cache: this block's (keys, values) of a `ContextCache`, each [B, N, L, D], written in
        place. Without `positions` (T == L, a full pass) the fresh keys and values fill it. With
        `positions` [B, T] (the active pass) they overwrite the cache at those positions and the
        T queries attend to all L cached keys and values.
        """
        batch, length, hidden = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_size)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, N, T, D]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv_cache is not None:
            keys, values = kv_cache
            if positions is None:
                keys.copy_(k)
                values.copy_(v)
            else:
                write_entries(keys, values, positions, k, v)
                k, v = keys, values
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=False,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, hidden))


class AnchoredDiffusionMLP(nn.Module):
    """Position-wise GELU feed-forward."""

    def __init__(self, config: AnchoredDiffusionConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.fc_out = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.fc_out.is_residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, H] -> [B, L, H]."""
        return self.fc_out(F.gelu(self.fc_in(x), approximate="tanh"))


class AnchoredDiffusionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: AnchoredDiffusionConfig):
        super().__init__()
        self.attn_norm = AnchoredDiffusionRMSNorm(config.hidden_size, config.norm_eps)
        self.attn = AnchoredDiffusionAttention(config)
        self.mlp_norm = AnchoredDiffusionRMSNorm(config.hidden_size, config.norm_eps)
        self.mlp = AnchoredDiffusionMLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None,
                kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, H] -> [B, T, H]; `kv_cache` and `positions` as in the attention."""
        attended = self.attn(self.attn_norm(x), cos, sin, key_mask, kv_cache, positions)
        x = x + self.dropout(attended)
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


@dataclass
class AnchoredDiffusionOutput(ModelOutput):
    """What `AnchoredDiffusionModel.forward` returns; the losses only when labels are given."""

    loss: torch.FloatTensor | None = None  # nelbo + anchor_loss, scalar
    logits: torch.FloatTensor | None = None  # [B, L, V] denoiser, SUBS rules applied
    anchor_logits: torch.FloatTensor | None = None  # [B, L, V] anchor network, or None
    nelbo: torch.FloatTensor | None = None  # the denoiser's masked-diffusion term, scalar
    anchor_loss: torch.FloatTensor | None = None  # the anchor term, scalar


class AnchoredDiffusionModel(PreTrainedModel):
    """Anchored masked-diffusion LM (see `AnchoredDiffusionConfig` for the two layouts).

    Training: `forward(input_ids, labels=..., t=..., anchor_weights=...)` returns the loss.
    Inference: `logits(input_ids, attention_mask)` and `anchor_logits(...)`, the interface
    `engine.model.adapter.MaskedLMDenoiser` shares.
    Sampling: `denoise_step(input_ids, active, cache=...)` recomputes only the active positions
    against a `ContextCache` of the others' keys and values.
    """

    config_class = AnchoredDiffusionConfig
    _no_split_modules = ["AnchoredDiffusionBlock"]
    _supports_sdpa = True
    supports_gradient_checkpointing = False

    def __init__(self, config: AnchoredDiffusionConfig):
        super().__init__(config)
        tied = config.tie_word_embeddings
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        anchor_layers = config.num_anchor_layers if config.use_anchor else 0
        denoiser_layers = config.num_hidden_layers - anchor_layers
        self.anchor_layers = nn.ModuleList(
            AnchoredDiffusionBlock(config) for _ in range(anchor_layers))
        if config.use_anchor:
            self.anchor_norm = AnchoredDiffusionRMSNorm(config.hidden_size, config.norm_eps)
            if not tied:
                self.anchor_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            if config.anchor_feed == "logits":
                self.anchor_to_hidden = nn.Linear(config.vocab_size, config.hidden_size,
                                                  bias=False)
        self.denoiser_layers = nn.ModuleList(
            AnchoredDiffusionBlock(config) for _ in range(denoiser_layers))
        self.norm = AnchoredDiffusionRMSNorm(config.hidden_size, config.norm_eps)
        if not tied:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):  # GPT-2: keep the stream's scale
                std = std / math.sqrt(2 * self.config.num_hidden_layers)
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, AnchoredDiffusionRMSNorm):
            init.ones_(module.weight)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def has_anchor(self) -> bool:
        return bool(self.config.use_anchor)

    def _head(self, hidden: torch.Tensor, head_name: str) -> torch.Tensor:
        """hidden [B, L, H] -> raw logits [B, L, V] through `head_name` or the tied embedding."""
        head = getattr(self, head_name, None)
        return head(hidden) if head is not None else F.linear(hidden, self.embed_tokens.weight)

    def _prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 masked: torch.Tensor | None):
        """Masked positions [B, L] bool, rotary cos/sin [L, D] and the key mask [B, 1, 1, L]."""
        length = input_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {length} tokens is longer than this model's "
                             f"max_position_embeddings ({self.config.max_position_embeddings}); "
                             "use a shorter context window")
        # A mask token is always a position to predict, whatever `masked` says.
        is_mask = input_ids == self.config.mask_token_id
        masked = is_mask if masked is None else masked.bool() | is_mask
        dtype = self.embed_tokens.weight.dtype
        head_size = self.config.hidden_size // self.config.num_attention_heads
        cos, sin = rotary_cos_sin(length, head_size, self.config.rope_theta, input_ids.device,
                                  dtype)
        return masked, cos, sin, key_mask(attention_mask)

    def _run_blocks(self, blocks: nn.ModuleList, first: int, hidden: torch.Tensor,
                    cos: torch.Tensor, sin: torch.Tensor, key_mask: torch.Tensor | None,
                    cache: ContextCache | None, positions: torch.Tensor | None) -> torch.Tensor:
        """hidden [B, T, H] through `blocks`, whose slots in `cache` start at block `first`."""
        for i, block in enumerate(blocks, start=first):
            slot = None if cache is None else (cache.keys[i], cache.values[i])
            hidden = block(hidden, cos, sin, key_mask, slot, positions)
        return hidden

    def _anchor_stage(self, input_ids, masked, cos, sin, key_mask, cache=None, positions=None,
                      keep=None, want=None):
        """The anchor network: hidden states [B, T, H] for the denoiser and the anchor logits
        [B, T, V] (SUBS rules applied), or the embeddings and None without an anchor.

        input_ids, masked [B, T]; `cache` and `positions` as in `AnchoredDiffusionAttention`;
        keep [B, A]: return the anchor logits at these positions only, [B, A, V]; want [B, A]
        bool: only at those of them, packed [N, V].
        """
        hidden = self.embed_tokens(input_ids)
        if not self.config.use_anchor:
            return hidden, None
        hidden = self._run_blocks(self.anchor_layers, 0, hidden, cos, sin, key_mask, cache,
                                  positions)
        if keep is not None and self.config.anchor_feed == "hidden":
            # The denoiser reads the hidden states, so the head runs on the kept positions only.
            return hidden, self._subs_head(gather_positions(hidden, keep, want), "anchor_norm",
                                           "anchor_head", gather_positions(input_ids, keep, want),
                                           gather_positions(masked, keep, want))
        if keep is not None:  # inference: the heads only where they are needed
            feed = self._anchor_feed_sparse(hidden, input_ids, masked)
            anchor_logits = self._subs_head(gather_positions(hidden, keep, want), "anchor_norm",
                                            "anchor_head", gather_positions(input_ids, keep, want),
                                            gather_positions(masked, keep, want))
            return self.embed_tokens(input_ids) + feed, anchor_logits
        anchor_logits = self._subs_head(hidden, "anchor_norm", "anchor_head", input_ids, masked)
        if self.config.anchor_feed == "logits":  # ADLM: the denoiser reads the anchor's beliefs
            probs = torch.softmax(anchor_logits.float(), dim=-1).to(hidden.dtype)
            hidden = self.embed_tokens(input_ids) + self.anchor_to_hidden(probs)
        return hidden, anchor_logits

    def _anchor_feed_sparse(self, hidden: torch.Tensor, input_ids: torch.Tensor,
                            masked: torch.Tensor) -> torch.Tensor:
        """anchor_to_hidden(softmax(anchor logits)) [B, T, H] with the anchor head run on the
        masked positions only: under the SUBS rules a visible position's distribution is exactly
        one-hot on its token, so its feed is that token's column of anchor_to_hidden."""
        weight = self.anchor_to_hidden.weight  # [H, V]
        feed = F.embedding(input_ids, weight.t())  # [B, T, H]
        if bool(masked.any()):
            logits = self._head(self.anchor_norm(hidden[masked]), "anchor_head")  # [N, V]
            logits[:, self.config.mask_token_id] = float("-inf")
            probs = torch.softmax(logits.float(), dim=-1).to(hidden.dtype)
            feed = feed.index_put((masked,), self.anchor_to_hidden(probs))
        return feed

    def _subs_head(self, hidden, norm_name, head_name, input_ids, masked):
        """hidden [B, T, H] -> logits [B, T, V] through a final norm and head, SUBS rules."""
        logits = self._head(getattr(self, norm_name)(hidden), head_name)
        return apply_subs_parameterization(logits, input_ids, masked, self.config.mask_token_id)

    def _denoise(self, input_ids, masked, cos, sin, key_mask, cache=None, positions=None,
                 keep=None, want=None):
        """Anchor network, denoiser and heads: (logits, anchor_logits or None), each [B, T, V],
        or [B, A, V] at the positions `keep` [B, A]; the rest as in `_anchor_stage`."""
        hidden, anchor_logits = self._anchor_stage(input_ids, masked, cos, sin, key_mask, cache,
                                                   positions, keep, want)
        hidden = self._run_blocks(self.denoiser_layers, len(self.anchor_layers), hidden, cos,
                                  sin, key_mask, cache, positions)
        if keep is not None:  # the vocabulary projection only where logits are wanted
            hidden = gather_positions(hidden, keep, want)
            input_ids = gather_positions(input_ids, keep, want)
            masked = gather_positions(masked, keep, want)
        return self._subs_head(hidden, "norm", "lm_head", input_ids, masked), anchor_logits

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        masked: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        t: torch.Tensor | None = None,
        anchor_weights: torch.Tensor | None = None,
        loss_weighting: str = "elbo",
        return_dict: bool | None = None,
    ) -> AnchoredDiffusionOutput | tuple:
        """Denoise one batch.

        input_ids [B, L]: tokens with masked positions set to the mask token; attention_mask
        [B, L]: 1 for real tokens, 0 for padding; masked [B, L] bool: positions to predict
        (default and always included: input_ids == mask_token_id); labels [B, L]: the original
        tokens (-100 to leave a position out of the loss); t [B]: noise level of each sample
        (1/t weight with loss_weighting "elbo"); anchor_weights [B, L] float: AnchorTree
        weight of each token for the anchor term; loss_weighting: "elbo" or "mean" (see
        `engine.model.loss.masked_diffusion_loss`).
        """
        masked, cos, sin, key_mask = self._prepare(input_ids, attention_mask, masked)
        logits, anchor_logits = self._denoise(input_ids, masked, cos, sin, key_mask)
        loss = nelbo = anchor_loss = None
        if labels is not None:
            losses = masked_diffusion_loss(
                logits, labels, masked, attention_mask=attention_mask, t=t,
                anchor_logits=anchor_logits, anchor_weights=anchor_weights,
                loss_weighting=loss_weighting, mask_token_id=self.config.mask_token_id)
            loss, nelbo, anchor_loss = losses.loss, losses.nelbo, losses.anchor_loss
        output = AnchoredDiffusionOutput(loss=loss, logits=logits, anchor_logits=anchor_logits,
                                         nelbo=nelbo, anchor_loss=anchor_loss)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               masked: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser's logits [B, L, V] for input_ids [B, L] (SUBS rules applied: mask token
        at -inf, visible tokens carried over)."""
        return self.forward(input_ids, attention_mask=attention_mask, masked=masked,
                            return_dict=True).logits

    @torch.no_grad()
    def anchor_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      masked: torch.Tensor | None = None) -> torch.Tensor | None:
        """The anchor network's logits [B, L, V] (same rules), or None for the MDLM baseline;
        runs the anchor network only."""
        if not self.config.use_anchor:
            return None
        masked, cos, sin, key_mask = self._prepare(input_ids, attention_mask, masked)
        return self._anchor_stage(input_ids, masked, cos, sin, key_mask)[1]

    @torch.no_grad()
    def denoise_step(self, input_ids: torch.Tensor, active: torch.Tensor,
                     attention_mask: torch.Tensor | None = None,
                     cache: ContextCache | None = None, want: torch.Tensor | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor | None, ContextCache]:
        """One sampler step that recomputes only the `active` positions (the infill spans) and
        reads the keys and values of all others from `cache` (see `ContextCache`).

        input_ids [B, L]: the current tokens, the mask token where still to predict (masked
        positions are exactly those); active [B, A] long: the positions whose logits are wanted
        and whose states are recomputed (a row with fewer may repeat one of them); attention_mask
        [B, L]: 1 for real tokens, 0 for padding; want [B, A] bool: compute the output heads
        only at these active entries (the still-masked ones) and return them packed, [N, V].

        cache None: a full pass over all L positions, the same numbers as `logits` and
        `anchor_logits`, that builds a new cache. A cache: only the A active positions run
        through the blocks; their keys and values overwrite theirs in the cache (in place) and
        they attend to all L cached ones with the cache's key mask. Positions outside `active`
        must hold the tokens the cache was built from; the result is approximate (stale context)
        until a full pass refreshes the cache.

        Returns (logits [B, A, V] (or [N, V] with `want`), anchor_logits likewise or None
        without an anchor, both with the SUBS rules applied, and the cache).
        """
        active = check_active(input_ids, active)
        check_want(active, want)
        masked, cos, sin, keys_mask = self._prepare(input_ids, attention_mask, None)
        if cache is None:
            cache = self._new_cache(input_ids.shape[0], input_ids.shape[1], keys_mask)
            logits, anchor_logits = self._denoise(input_ids, masked, cos, sin, keys_mask, cache,
                                                  keep=active, want=want)
            return logits, anchor_logits, cache
        check_cache(cache, input_ids, len(self.anchor_layers) + len(self.denoiser_layers),
                    self.embed_tokens.weight.dtype, attention_mask is not None, keys_mask)
        # Each active token keeps its true rotary position: cos, sin [B, 1, A, D].
        cos, sin = cos[active].unsqueeze(1), sin[active].unsqueeze(1)
        keep = torch.arange(active.shape[1], device=active.device).expand_as(active)
        logits, anchor_logits = self._denoise(
            gather_positions(input_ids, active), gather_positions(masked, active), cos, sin,
            cache.key_mask, cache, positions=active, keep=keep, want=want)
        return logits, anchor_logits, cache

    @torch.no_grad()
    def share_context(self, cache: ContextCache, source: torch.Tensor, target: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> ContextCache:
        """`engine.model.context_cache.share_cache` for this model's rotary frequencies."""
        head_size = self.config.hidden_size // self.config.num_attention_heads
        return share_cache(cache, source, target, attention_mask,
                           _inv_freq(head_size, self.config.rope_theta, target.device))

    @torch.no_grad()
    def select_cache(self, cache: ContextCache, rows: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> ContextCache:
        """`engine.model.context_cache.select_cache`."""
        return select_cache(cache, rows, attention_mask)

    @torch.no_grad()
    def concat_caches(self, caches: list[ContextCache],
                      attention_mask: torch.Tensor | None = None) -> ContextCache:
        """`engine.model.context_cache.concat_caches`."""
        return concat_caches(caches, attention_mask)

    def _new_cache(self, batch: int, length: int, key_mask: torch.Tensor | None) -> ContextCache:
        """An unfilled cache for `batch` sequences of `length` tokens, in the model's dtype."""
        heads = self.config.num_attention_heads
        shape = (batch, heads, length, self.config.hidden_size // heads)
        weight = self.embed_tokens.weight
        blocks = len(self.anchor_layers) + len(self.denoiser_layers)
        return ContextCache(keys=[weight.new_empty(shape) for _ in range(blocks)],
                            values=[weight.new_empty(shape) for _ in range(blocks)],
                            key_mask=key_mask, length=length, batch_size=batch)
