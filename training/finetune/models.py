"""The model a run trains: our anchored model from a preset or a saved directory, or a
transformers masked LM; one `loss(batch)` for all, LoRA through peft, and saving the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from engine.errors import AstdiffuseError
from engine.model import (PRESETS, AnchoredDiffusionModel, config_from_preset,
                          masked_diffusion_loss, save_model_and_tokenizer)
from engine.model.adapter import ModelNotFoundError
from engine.model.families import detect_family
from engine.model.tokenizer_files import published_tokens
from engine.model.modeling import apply_subs_parameterization
from engine.tokens import load_tokenizer

from .args import FinetuneArgs, LoraArgs, ModelArgs
from .collate import Batch


class ModelSetupError(AstdiffuseError):
    """The model to train cannot be built or loaded; the message says what to change."""


def model_tokenizer_dir(args: ModelArgs) -> Path | None:
    """The tokenizer that comes with a model directory (None for a preset)."""
    if args.model in PRESETS:
        return None
    path = Path(args.model).expanduser()
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(args.model, f"{args.model!r} is neither a preset "
                                 f"({', '.join(PRESETS)}) nor a directory with a config.json")
    if not (path / "tokenizer.json").is_file():
        raise ModelSetupError(f"{path} has no tokenizer.json; fine-tuning needs the model's own "
                              "tokenizer beside it")
    return path


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ModelSetupError(f"--model-set {item!r}: write KEY=VALUE, e.g. hidden_size=128")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class TrainableModel(nn.Module):
    """What the loop trains: `loss(batch)` -> (loss, nelbo, anchor_loss) for either kind."""

    def __init__(self, network: nn.Module, kind: str, mask_token_id: int,
                 shift_logits: bool = False, objective: str = "diffusion"):
        super().__init__()
        self.network, self.kind = network, kind
        self.mask_token_id, self.shift_logits = mask_token_id, shift_logits
        self.objective = objective
        if kind == "qwen2":  # causal for the next-token warm start, bidirectional after
            causal = objective == "ar"
            network.config.is_causal = causal
            for module in network.modules():
                if hasattr(module, "is_causal"):
                    module.is_causal = causal

    @property
    def config(self):
        return self.network.config

    def forward(self, input_ids, attention_mask, masked, labels, t, anchor_weights,
                loss_weighting: str):
        if self.kind == "anchored":
            out = self.network(input_ids, attention_mask=attention_mask, masked=masked,
                               labels=labels, t=t, anchor_weights=anchor_weights,
                               loss_weighting=loss_weighting, return_dict=True)
            return out.loss, out.nelbo, out.anchor_loss
        if self.kind == "qwen2" and self.objective == "ar":
            return self._next_token_loss(labels, attention_mask)
        if self.kind == "qwen2":
            logits = _bidirectional_logits(self.network, input_ids, attention_mask)
        else:
            logits = self.network(input_ids=input_ids, attention_mask=attention_mask).logits
        logits = logits[..., :self.network.config.vocab_size]
        if self.shift_logits:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        logits = apply_subs_parameterization(logits, input_ids, masked, self.mask_token_id)
        losses = masked_diffusion_loss(logits, labels, masked, attention_mask=attention_mask,
                                       t=t, loss_weighting=loss_weighting,
                                       mask_token_id=self.mask_token_id)
        return losses.loss, losses.nelbo, losses.anchor_loss


    def _next_token_loss(self, tokens, attention_mask):
        """Causal LM loss over every position of the unmasked windows (`tokens` [B, L] are the
        original ids): logit i predicts token i + 1, as in the autoregressive models Dream and
        Open-dCoder start from."""
        keep = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None \
            else attention_mask.bool()
        inputs = tokens.masked_fill(~keep, 0)
        logits = self.network(input_ids=inputs, attention_mask=keep.long()).logits
        targets = inputs[:, 1:].masked_fill(~keep[:, 1:], -100)
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                           targets.flatten(), ignore_index=-100)
        return loss, loss.detach(), loss.new_zeros(())


def _bidirectional_logits(network, input_ids, attention_mask):
    """A causal transformers LM's logits with every position attending both ways (what the
    engine's native loader runs)."""
    from engine.model.native import bidirectional_inputs

    dtype = next(network.parameters()).dtype
    return network(**bidirectional_inputs(input_ids, attention_mask, dtype)).logits


def qwen2_network(preset: str, vocab: int, overrides: dict):
    """A fresh `Qwen2ForCausalLM` at a preset's size (width, depth = anchor + denoiser layers,
    heads, MLP), tied embeddings, no sliding window."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    anchored = config_from_preset(preset, vocab, **overrides)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=anchored.hidden_size,
        intermediate_size=anchored.intermediate_size,
        num_hidden_layers=anchored.num_anchor_layers + anchored.num_denoiser_layers,
        num_attention_heads=anchored.num_attention_heads,
        num_key_value_heads=anchored.num_attention_heads,
        max_position_embeddings=anchored.max_position_embeddings,
        rope_theta=anchored.rope_theta, rms_norm_eps=anchored.norm_eps,
        tie_word_embeddings=True, use_sliding_window=False, use_cache=False,
        attention_dropout=0.0)
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config)


def loss_of(model: nn.Module, batch: Batch, loss_weighting: str):
    """(loss, nelbo, anchor_loss) of a batch through `model` (possibly DDP / FSDP-wrapped)."""
    return model(batch.input_ids, batch.attention_mask, batch.masked, batch.labels, batch.t,
                 batch.anchor_weights, loss_weighting)


def build_model(args: ModelArgs, tokenizer_dir: Path, seed: int) -> TrainableModel:
    """A fresh model from a preset (initialised from `seed`) or the one saved at args.model."""
    tokenizer = load_tokenizer(tokenizer_dir)
    mask_id = tokenizer.mask_token_id
    if args.objective == "ar" and args.architecture != "qwen2" and args.model in PRESETS:
        raise ModelSetupError("--objective ar trains a causal network: use --architecture qwen2")
    if args.model in PRESETS:
        torch.manual_seed(seed)
        if args.architecture == "qwen2":
            network = qwen2_network(args.model, len(tokenizer), _overrides(args.model_set))
            return TrainableModel(network, "qwen2", mask_id, shift_logits=True,
                                  objective=args.objective)
        config = config_from_preset(args.model, len(tokenizer), mask_token_id=mask_id,
                                    use_anchor=args.use_anchor, **_overrides(args.model_set))
        return TrainableModel(AnchoredDiffusionModel(config), "anchored", mask_id)
    if args.model_set:
        raise ModelSetupError("--model-set changes a preset; a saved model keeps its shape")
    path = Path(args.model).expanduser()
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") == "qwen2":  # a qwen2 run's own checkpoint (AR or diffusion)
        from transformers import Qwen2ForCausalLM

        network = Qwen2ForCausalLM.from_pretrained(path, local_files_only=True,
                                                   use_safetensors=True)
        network.config._attn_implementation = "sdpa"
        return TrainableModel(network, "qwen2", mask_id, shift_logits=True,
                              objective=args.objective)
    if args.objective == "ar":
        raise ModelSetupError("--objective ar trains a qwen2 network (--architecture qwen2)")
    tokens, has_mask = published_tokens(path)
    family = detect_family(config, None, tokens=tokens, has_mask_token=has_mask)
    if family == "anchored":
        network = AnchoredDiffusionModel.from_pretrained(path, local_files_only=True,
                                                         use_safetensors=True)
        if network.config.mask_token_id != mask_id:
            raise ModelSetupError(f"the tokenizer's mask id {mask_id} is not the model's "
                                  f"{network.config.mask_token_id}; train with the model's own "
                                  "tokenizer")
        return TrainableModel(network, "anchored", mask_id)
    if family == "masked-lm":
        from transformers import AutoModelForMaskedLM

        network = AutoModelForMaskedLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True,
            trust_remote_code=args.trust_remote_code)
        if mask_id is None:
            raise ModelSetupError(f"the tokenizer in {tokenizer_dir} has no mask token")
        if len(tokenizer) > network.config.vocab_size:
            raise ModelSetupError(
                f"the tokenizer in {tokenizer_dir} has {len(tokenizer)} tokens, more than the "
                f"model's vocab_size {network.config.vocab_size}; fine-tune with the tokenizer "
                "the model was trained with")
        return TrainableModel(network, "masked-lm", mask_id)
    raise ModelSetupError(
        f"fine-tuning a {family!r} checkpoint is not supported yet (anchored models and "
        "transformers masked LMs are); the engine can still run it for inference")


def build_trainable(args: FinetuneArgs, tokenizer_dir: Path) -> TrainableModel:
    """The model a run trains: `build_model`, with LoRA adapters when --lora (both seeded)."""
    model = build_model(args.model, tokenizer_dir, args.optim.seed)
    if args.lora.lora:
        model = apply_lora(model, args.lora, args.optim.seed)
    return model


def _linear_names(network: nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, module in network.named_modules()
                   if isinstance(module, nn.Linear)})


def apply_lora(model: TrainableModel, args: LoraArgs, seed: int = 0) -> TrainableModel:
    """Wrap the network in peft LoRA adapters (initialised from `seed`): only the adapters
    train. Parameter names gain peft's prefix (network.base_model.model.NAME, and
    NAME.lora_A.default.weight for an adapter); checkpoints hold these names, and `save_final`
    merges the adapters back into the plain names."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelSetupError("--lora needs peft: pip install 'astdiffuse[train]'") from None
    targets = args.lora_targets
    if targets != "all-linear":
        targets = [x.strip() for x in targets.split(",") if x.strip()]
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=targets, bias="none")
    torch.manual_seed(seed)
    try:
        model.network = get_peft_model(model.network, config)
    except ValueError as err:
        raise ModelSetupError(
            f"--lora-targets {args.lora_targets!r}: {err}; this model's Linear modules are "
            f"named {', '.join(_linear_names(model.network))} (or use all-linear)") from None
    return model


def trainable_state(model: nn.Module, state: dict[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    """The trained tensors (all weights, or only LoRA's) by parameter name, as contiguous CPU
    copies; taken from `state` (a full state dict gathered from FSDP shards) when given, where
    a name that is not there (another rank's empty gather) is left out."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if state is None:
        source = dict(model.named_parameters())
        return {n: source[n].detach().to("cpu").contiguous().clone() for n in names}
    return {n: state[n].detach().to("cpu").contiguous().clone() for n in names if n in state}


def save_final(model: TrainableModel, tokenizer_dir: Path, directory: Path) -> Path:
    """The trained model as the engine loads it: LoRA merged, config + safetensors + tokenizer."""
    network = model.network
    if hasattr(network, "merge_and_unload"):
        network = network.merge_and_unload()
    directory.mkdir(parents=True, exist_ok=True)
    if model.kind == "anchored":
        save_model_and_tokenizer(network, load_tokenizer(tokenizer_dir), directory)
    elif model.kind == "qwen2":
        # the tokenizer saved with its roles (tokenizer_config.json names the mask): what makes
        # the engine read a qwen2 checkpoint as a diffusion model (the open-dcoder family)
        network.save_pretrained(directory, safe_serialization=True)
        load_tokenizer(tokenizer_dir).save_pretrained(directory)
    else:
        network.save_pretrained(directory, safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_dir / name).is_file():
                shutil.copy2(tokenizer_dir / name, directory / name)
    return directory
