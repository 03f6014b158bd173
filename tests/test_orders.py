"""Decoding as the published samplers do: the draw, the confidence, the margin and the entropy
order come from the tempered top-p distribution (Dream's `sample_tokens`, written out here from
its algorithm), and the sampler unmasks the position the reference picks."""

import pytest
import torch

from engine.infill import InfillEngine
from engine.infill.orders import ORDERS, TOP_KS, sampling_distribution
from engine.infill.sampler import DiffusionSampler, SamplerState
from engine.infill.request import InfillOptions

from engine.benchmarks.published_layouts import make_dream_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def reference_probs(logits, temperature, top_p):
    """Dream's sample_tokens before the draw: logits / T, top_p_logits over the full sorted
    vocabulary (a token goes when the mass before it exceeds top_p), softmax."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        ordered, index = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1)
        remove = cumulative > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, index, remove)
        logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=-1)


def reference_priority(probs, drawn, order):
    if order == "entropy":
        return torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    if order == "margin":
        top = torch.sort(probs, dim=-1, descending=True).values
        return top[:, 0] - top[:, 1]
    return probs.gather(-1, drawn[:, None]).squeeze(-1)


@pytest.mark.parametrize("temperature, top_p", [(0.2, 0.95), (0.1, 0.9), (1.0, 0.95),
                                                (0.7, 1.0), (0.0, 0.95), (3.0, 0.999)])
def test_distribution_matches_the_reference(temperature, top_p):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 500, generator=generator) * 4
    logits[3] = 0.01 * logits[3]  # nearly flat: its nucleus is wider than TOP_KS[0] tokens
    probs = sampling_distribution(logits, temperature, top_p)
    expected = reference_probs(logits, temperature, top_p)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    if top_p < 1 and temperature >= 1:
        assert int((expected[3] > 0).sum()) > TOP_KS[0]  # the wide path was taken and is exact


def test_every_width_of_nucleus_is_exact_in_a_large_vocabulary():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5000, generator=generator) * 6
    logits[1] = torch.randn(5000, generator=generator) * 3.0  # a nucleus of hundreds
    logits[2] = torch.randn(5000, generator=generator) * 0.05  # nearly flat: thousands
    probs = sampling_distribution(logits, 1.0, 0.95)
    expected = reference_probs(logits, 1.0, 0.95)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    sizes = (expected > 0).sum(-1).tolist()
    assert sizes[0] <= TOP_KS[0] < sizes[1] <= TOP_KS[1] < sizes[2]


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_priority_order_matches_the_reference(order):
    agree = 0
    for trial in range(200):
        generator = torch.Generator().manual_seed(trial)
        logits = torch.randn(8, 300, generator=generator) * 3
        probs = sampling_distribution(logits, 0.2, 0.95)
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        ours = ORDERS[order](probs, probs.gather(-1, drawn[:, None]).squeeze(-1))
        theirs = reference_priority(reference_probs(logits, 0.2, 0.95), drawn, order)
        agree += int(ours.argmax()) == int(theirs.argmax())
    assert agree == 200


def test_sampler_unmasks_the_position_the_reference_picks(tmp_path):
    """One step of the engine's sampler on a tiny Dream checkpoint, entropy order at Dream's
    defaults (T 0.2, top-p 0.95), the engine's additions off: the first unmasked position is
    the reference's in every trial (it was 35 of 200 when the order used the untempered
    softmax)."""
    # fp32 on every CPU, and the reference reads the logits the sampler reads (logits_at), so
    # the comparison is of the ordering rule alone, whatever this CPU's matmul blocking
    engine = InfillEngine.load(make_dream_checkpoint(tmp_path / "dream"), device="cpu",
                               dtype=torch.float32)
    model = engine.model
    options = InfillOptions(order="entropy", temperature=0.2, top_p=0.95, anchored=False,
                            threshold=1.0, use_cache=False)
    agree = 0
    for trial in range(200):
        generator = torch.Generator().manual_seed(trial)
        ids = torch.randint(0, 390, (1, 24), generator=generator)
        editable = torch.zeros_like(ids, dtype=torch.bool)
        editable[0, 6:18] = True
        ids[editable] = model.mask_token_id
        state = SamplerState(ids=ids.clone(), attention_mask=torch.ones_like(ids),
                             editable=editable, masked=editable.clone(),
                             logp=torch.zeros(ids.shape))
        sampler = DiffusionSampler(model, options, generator=torch.Generator().manual_seed(trial))
        _one_step(sampler, state)
        first = int((~state.masked[0] & editable[0]).nonzero()[0])
        rows, columns = editable.nonzero(as_tuple=True)
        logits = model.logits_at(ids, None, rows, columns)
        probs = reference_probs(logits.float(), 0.2, 0.95)
        theirs = reference_priority(probs, probs.argmax(-1), "entropy")
        agree += first == int(editable[0].nonzero()[int(theirs.argmax())])
    assert agree == 200


class _Stop(Exception):
    pass


def _one_step(sampler, state):
    """Run the sampler for one step (one position decoded at this schedule), then stop."""

    def stop(step, total, current):
        raise _Stop

    sampler.groups[0].on_step = stop
    with pytest.raises(_Stop):
        sampler.run(state, steps=int(state.masked.sum()))
    assert int((state.editable & ~state.masked).sum()) == 1
