"""The fine-tuning collator and batch order: masks, labels, anchor weights and pads as the loss
expects them, replayable from a seed; each process of a run reads its own examples."""

from __future__ import annotations

import numpy as np
import pytest

from engine.syntax import SourceDocument
from training.finetune.args import AnchorArgs, MaskingArgs
from training.finetune.collate import Collator, parse_mix
from training.finetune.data import BatchOrder
from training.masking import MaskingError, build_example

MASK, PAD = 1, 0


@pytest.fixture(scope="module")
def examples(sample_py_module):
    doc = SourceDocument(sample_py_module, "python")
    example, _, _ = build_example(doc)
    return [example.window(0, 120), example.window(40, 200), example.window(10, 90)]


@pytest.fixture(scope="module")
def sample_py_module():
    from pathlib import Path

    return (Path(__file__).resolve().parent.parent / "examples" / "sample.py").read_bytes()


def collator(masking="ast-tier", anchoring=True, seq_len=256, **kw) -> Collator:
    return Collator(MaskingArgs(masking=masking, **kw), AnchorArgs(), seq_len=seq_len,
                    mask_id=MASK, pad_id=PAD, total_steps=100, use_anchor_weights=anchoring)


@pytest.mark.parametrize("masking", ["random", "ast-tier", "ast-span", "infill", "mix"])
def test_batches_are_what_the_loss_expects(examples, masking):
    batch = collator(masking)(examples, 3, np.random.default_rng(0))
    b, length = batch.input_ids.shape
    assert b == 3 and length <= 256
    real = batch.attention_mask.bool()
    assert (batch.input_ids[batch.masked] == MASK).all()
    assert (batch.input_ids[real & ~batch.masked] == batch.labels[real & ~batch.masked]).all()
    assert (batch.labels[~real] == -100).all() and not batch.masked[~real].any()
    assert batch.masked.any(-1).all()
    assert ((batch.t > 0) & (batch.t <= 1)).all()
    assert batch.anchor_weights is not None and (batch.anchor_weights[~real] == 0).all()
    assert batch.tokens == int(real.sum())


def test_infill_pads_are_targets_inside_holes(examples):
    batch = collator("infill", max_pad=6)(examples, 0, np.random.default_rng(1))
    pads = (batch.labels == PAD) & batch.attention_mask.bool()
    assert pads.any() and batch.masked[pads].all()


def test_same_seed_same_batch_and_crop(examples):
    a = collator("infill", seq_len=64)(examples, 5, np.random.default_rng(42))
    b = collator("infill", seq_len=64)(examples, 5, np.random.default_rng(42))
    c = collator("infill", seq_len=64)(examples, 5, np.random.default_rng(43))
    assert a.input_ids.shape[1] <= 64
    assert (a.input_ids == b.input_ids).all() and (a.labels == b.labels).all()
    assert not (a.input_ids.shape == c.input_ids.shape and (a.input_ids == c.input_ids).all())


def test_no_anchor_weights_without_anchoring(examples):
    assert collator(anchoring=False)(examples, 0, np.random.default_rng(0)).anchor_weights is None


def test_mix_and_rates_are_checked():
    names, probs = parse_mix("infill=3,random=1")
    assert names == ("infill", "random") and probs.tolist() == [0.75, 0.25]
    for bad in ("bogus=1", "infill", "infill=-1,random=1", ""):
        with pytest.raises(MaskingError):
            parse_mix(bad)
    with pytest.raises(MaskingError, match="max-rate"):
        collator(max_rate=0.0)


def test_batch_order_is_replayable_and_splits_processes():
    one = BatchOrder(50, per_step=4, seed=3)
    assert one.step(7) == BatchOrder(50, per_step=4, seed=3).step(7)
    epoch = [i for s in range(13) for i in one.step(s)][:50]
    assert sorted(epoch) == list(range(50))  # every example once per epoch
    ranks = [BatchOrder(50, per_step=4, seed=3, rank=r, world=2) for r in (0, 1)]
    for step in range(5):
        a, b = ranks[0].step(step), ranks[1].step(step)
        assert len(a) == len(b) == 4 and not set(a) & set(b)
