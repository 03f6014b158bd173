"""Configuration of the anchored masked-diffusion LM (anchor network + denoiser, AnCoder/ADLM),
a transformers `PretrainedConfig` saved as `config.json` beside the weights."""

from __future__ import annotations

from transformers import PretrainedConfig

MODEL_TYPE = "astdiffuse-anchored"
ANCHOR_FEEDS = ("hidden", "logits")


class AnchoredDiffusionConfig(PretrainedConfig):
    """Shape and special tokens of an `AnchoredDiffusionModel`.

    With `use_anchor=True` the model is an anchor network of `num_anchor_layers` bidirectional
    blocks with its own vocabulary head, followed by a denoiser of `num_denoiser_layers` blocks
    fed by the anchor network (see `anchor_feed`). With `use_anchor=False` it is the plain MDLM
    baseline: one bidirectional transformer of `num_anchor_layers + num_denoiser_layers` blocks.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 8192,  # rows of the embedding and of the output heads
        hidden_size: int = 256,  # width of the residual stream
        num_anchor_layers: int = 6,  # blocks of the anchor network
        num_denoiser_layers: int = 2,  # blocks of the denoiser (fewer than the anchor network's)
        num_attention_heads: int = 4,  # heads per block; hidden_size must divide by it
        intermediate_size: int = 1024,  # width of each block's GELU MLP
        max_position_embeddings: int = 1024,  # longest sequence the model accepts
        dropout: float = 0.0,  # attention and residual dropout while training
        rope_theta: float = 10000.0,  # base of the rotary position embedding
        norm_eps: float = 1e-6,  # epsilon of the RMS norms
        mask_token_id: int = 1,  # the absorbing state; never predicted
        pad_token_id: int = 0,  # padding, also the end of an infill span
        eos_token_id: int = 2,  # separates packed documents
        use_anchor: bool = True,  # False: plain MDLM baseline, no anchor head
        anchor_feed: str = "logits",  # what the denoiser reads from the anchor network:
        #   "logits": ADLM, softmax(anchor logits) -> Linear(vocab -> hidden), added to the
        #   token embeddings; "hidden": its final hidden states (the denoiser continues its
        #   residual stream). "logits" learned faster per step and per CPU second
        #   (docs/model.md has the measurement)
        tie_word_embeddings: bool = True,  # output heads share the token embedding matrix
        initializer_range: float = 0.02,  # std of the normal init of weights
        **kwargs,
    ):
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of "
                             f"num_attention_heads ({num_attention_heads})")
        if (hidden_size // num_attention_heads) % 2:
            raise ValueError("the head size (hidden_size / num_attention_heads) must be even "
                             "for rotary embeddings")
        if anchor_feed not in ANCHOR_FEEDS:
            raise ValueError(f"anchor_feed must be one of {ANCHOR_FEEDS}, not {anchor_feed!r}")
        if use_anchor and num_denoiser_layers < 1:
            raise ValueError("an anchored model needs at least one denoiser layer")
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary "
                             f"(0..{vocab_size - 1})")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_anchor_layers = num_anchor_layers
        self.num_denoiser_layers = num_denoiser_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.dropout = dropout
        self.rope_theta = rope_theta
        self.norm_eps = norm_eps
        self.mask_token_id = mask_token_id
        self.use_anchor = use_anchor
        self.anchor_feed = anchor_feed
        self.initializer_range = initializer_range
        super().__init__(pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)

    @property
    def num_hidden_layers(self) -> int:
        """All transformer blocks, anchor network and denoiser together."""
        return self.num_anchor_layers + self.num_denoiser_layers
