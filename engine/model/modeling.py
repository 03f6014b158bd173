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
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, device=device,
                                            dtype=torch.float32) / head_size)  # [D/2]
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # [L, D]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x [B, N, L, D] by position (GPT-NeoX halves layout)."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


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
                key_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, H]; cos, sin [L, D]; key_mask [B, 1, 1, L] bool (True: attend) -> [B, L, H]."""
        batch, length, hidden = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_size)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, N, L, D]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
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
                key_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, H] -> [B, L, H]."""
        x = x + self.dropout(self.attn(self.attn_norm(x), cos, sin, key_mask))
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
        key_mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            keys = attention_mask.bool()
            keys = keys | ~keys.any(-1, keepdim=True)  # an all-padding row attends everywhere
            key_mask = keys[:, None, None, :]
        return masked, cos, sin, key_mask

    def _anchor_stage(self, input_ids, masked, cos, sin, key_mask):
        """The anchor network: hidden states [B, L, H] for the denoiser and the anchor logits
        [B, L, V] (SUBS rules applied), or the embeddings and None without an anchor."""
        hidden = self.embed_tokens(input_ids)
        if not self.config.use_anchor:
            return hidden, None
        for block in self.anchor_layers:
            hidden = block(hidden, cos, sin, key_mask)
        anchor_logits = apply_subs_parameterization(
            self._head(self.anchor_norm(hidden), "anchor_head"), input_ids, masked,
            self.config.mask_token_id)
        if self.config.anchor_feed == "logits":  # ADLM: the denoiser reads the anchor's beliefs
            probs = torch.softmax(anchor_logits.float(), dim=-1).to(hidden.dtype)
            hidden = self.embed_tokens(input_ids) + self.anchor_to_hidden(probs)
        return hidden, anchor_logits

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
        hidden, anchor_logits = self._anchor_stage(input_ids, masked, cos, sin, key_mask)
        for block in self.denoiser_layers:
            hidden = block(hidden, cos, sin, key_mask)
        logits = apply_subs_parameterization(self._head(self.norm(hidden), "lm_head"), input_ids,
                                             masked, self.config.mask_token_id)
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
