"""The batch collator: noise schedule -> masking strategy -> AnchorTree weights -> padded tensors
the model's loss takes; every draw comes from one generator seeded by (seed, step, rank)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.model.loss import IGNORE_INDEX

from ..anchors import AnchorWeights
from ..masking import STRATEGIES, InfillConfig, MaskingConfig, MaskingError, mask_example
from ..schedules import LinearSchedule, TreeDiffSchedule
from .args import AnchorArgs, MaskingArgs


@dataclass
class Batch:
    """Tensors of one micro-batch; B examples padded to the longest, L <= seq_len."""

    input_ids: torch.Tensor  # long [B, L]: masked positions hold the mask token
    labels: torch.Tensor  # long [B, L]: original tokens (pads of infill holes included)
    masked: torch.Tensor  # bool [B, L]: positions the loss counts
    attention_mask: torch.Tensor  # long [B, L]: 1 real token, 0 padding
    t: torch.Tensor  # float [B]: each example's masking rate (the 1/t weight of the NELBO)
    anchor_weights: torch.Tensor | None  # float [B, L], or None without anchoring
    tokens: int  # real tokens in the batch (for tokens/s)

    def to(self, device) -> "Batch":
        move = lambda x: None if x is None else x.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.input_ids), move(self.labels), move(self.masked),
                     move(self.attention_mask), move(self.t), move(self.anchor_weights),
                     self.tokens)


def parse_mix(text: str) -> tuple[tuple[str, ...], np.ndarray]:
    """'infill=0.5,random=0.5' -> (names, probabilities); a clear error on anything else."""
    names, weights = [], []
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = item.partition("=")
        if name not in STRATEGIES:
            raise MaskingError(f"--mix: unknown strategy {name!r}; use {', '.join(STRATEGIES)}")
        try:
            weights.append(float(value))
        except ValueError:
            raise MaskingError(f"--mix: {item!r} needs a weight, e.g. {name}=0.5") from None
        names.append(name)
    total = sum(weights)
    if not names or total <= 0 or min(weights) < 0:
        raise MaskingError(f"--mix {text!r}: give strategies with weights >= 0 and a positive sum")
    return tuple(names), np.asarray(weights) / total


class Collator:
    """Turns TokenizedExamples into a `Batch` for optimizer step `step`."""

    def __init__(self, masking: MaskingArgs, anchor: AnchorArgs, *, seq_len: int,
                 mask_id: int, pad_id: int, total_steps: int, use_anchor_weights: bool):
        self.masking, self.seq_len = masking, seq_len
        self.mask_id, self.pad_id = mask_id, pad_id
        if masking.masking == "mix":
            self.names, self.probs = parse_mix(masking.mix)
        else:
            self.names, self.probs = (masking.masking,), np.ones(1)
        if masking.schedule == "treediff":
            self.schedule = TreeDiffSchedule(total_steps=max(1, total_steps))
            self.loss_weighting = "mean"
        else:
            self.schedule = LinearSchedule(eps=masking.schedule_eps)
            self.loss_weighting = "elbo"
        if not 0.0 < masking.max_rate <= 1.0:
            raise MaskingError(f"--max-rate must be in (0, 1], not {masking.max_rate}")
        self.config = MaskingConfig(
            infill=InfillConfig(max_pad=masking.max_pad, max_spans=masking.max_spans),
            pad_id=pad_id)
        self.anchor = (AnchorWeights(anchor.anchor_gamma, anchor.anchor_decay, anchor.anchor_d0)
                       if use_anchor_weights else None)

    def __call__(self, examples, step: int, rng: np.random.Generator) -> Batch:
        rates = self.schedule.rates(step, len(examples), rng) * self.masking.max_rate
        return self.collate(examples, rates, rng)

    def collate(self, examples, rates: np.ndarray, rng: np.random.Generator,
                names: tuple[str, ...] | None = None, probs: np.ndarray | None = None) -> Batch:
        """A batch at the given rates [B], each example's strategy drawn from `names` with
        `probs` (default: the run's masking); the held-out batches fix both."""
        names = self.names if names is None else names
        probs = self.probs if probs is None else probs
        rows = []
        for example, rate in zip(examples, rates):
            strategy = names[int(rng.choice(len(names), p=probs))]
            result = mask_example(strategy, example, float(rate), rng, self.config)
            rows.append(self._crop(result))
        length = max(len(ids) for ids, *_ in rows)
        batch = len(rows)
        input_ids = torch.full((batch, length), self.pad_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        masked = torch.zeros((batch, length), dtype=torch.bool)
        attention = torch.zeros((batch, length), dtype=torch.long)
        weights = torch.zeros((batch, length)) if self.anchor is not None else None
        t = torch.zeros(batch)
        for i, (ids, mask, anchor_w) in enumerate(rows):
            n = len(ids)
            labels[i, :n] = torch.from_numpy(ids.astype(np.int64))
            masked[i, :n] = torch.from_numpy(mask)
            input_ids[i, :n] = labels[i, :n].masked_fill(masked[i, :n], self.mask_id)
            attention[i, :n] = 1
            # t: the share of the window actually masked (infill's pads count), so the 1/t
            # weight matches what the strategy did rather than the rate it aimed at.
            t[i] = max(float(mask.mean()), 1e-3)
            if weights is not None:
                weights[i, :n] = torch.from_numpy(anchor_w)
        return Batch(input_ids, labels, masked, attention, t, weights,
                     tokens=int(attention.sum()))

    def _crop(self, result):
        """(ids, mask, anchor weights) of at most seq_len tokens, keeping the masked tokens
        when they fit (infill's pads can push a window past seq_len)."""
        example, mask = result.example, result.mask
        anchor_w = (self.anchor.weights(example.anchors, example.depths)
                    if self.anchor is not None else None)
        ids = example.input_ids
        if len(ids) > self.seq_len:
            where = np.flatnonzero(mask)
            first = int(where[0]) if len(where) else 0
            last = int(where[-1]) if len(where) else 0
            start = min(first, max(0, last + 1 - self.seq_len))
            stop = start + self.seq_len
            ids, mask = ids[start:stop], mask[start:stop]
            anchor_w = anchor_w[start:stop] if anchor_w is not None else None
        if not mask.any():  # rate ~ 0: still teach something
            mask = mask.copy()
            mask[len(mask) // 2] = True
        return ids, mask, anchor_w
