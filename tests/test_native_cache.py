"""The dual key/value cache of the native families (`engine.model.native_cache`), on tiny
checkpoints in each published layout: the full pass equals `logits_at`; a cached step runs only
the span positions (and, for shifted families, the ones before them) and is exact while nothing
changed, approximate after; shared, selected and stacked caches; and through the sampler, with a
refresh every step, cached decoding writes token for token what uncached decoding does (fp32)."""

import pytest
import torch

import engine.model as em
from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest
from engine.model.context_cache import ContextCache
from engine.model.native_cache import run_positions

from engine.benchmarks.published_layouts import LAYOUT_MAKERS
from .paths import EXAMPLES

FLAVOURS = tuple(LAYOUT_MAKERS)  # dream, diffucoder, dreamon, open-dcoder, coda, llada

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def denoisers(checkpoints):
    return {name: em.load_denoiser(path, dtype=torch.float32)
            for name, path in checkpoints.items()}


def canvas(denoiser, seed=0):
    """Two rows of 24 tokens, a masked span in each (the second shorter, its active entries
    padded by repeating its first position), the second row right-padded by 3."""
    ids = torch.randint(3, 390, (2, 24), generator=torch.Generator().manual_seed(seed))
    active = torch.tensor([list(range(6, 14)), list(range(10, 15)) + [10] * 3])
    ids = ids.scatter(1, active, denoiser.mask_token_id)
    attention = torch.ones_like(ids)
    attention[1, 21:] = 0
    return ids, active, attention


def usable(denoiser, logits):
    """The columns a token can be drawn from: the tokenizer's, less the mask (-inf there)."""
    keep = torch.arange(logits.shape[-1]) < denoiser.usable_vocab
    keep[denoiser.mask_token_id] = False
    return logits[..., keep]


def valid_entries(active):
    first = active[:, :1]
    valid = active != first
    valid[:, 0] = True
    return valid


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_full_pass_equals_logits_at_and_fills_every_layer(flavour, denoisers):
    denoiser = denoisers[flavour]
    ids, active, attention = canvas(denoiser)
    want = valid_entries(active)
    logits, anchor, cache = denoiser.denoise_step(ids, active, attention, want=want)
    assert anchor is None and isinstance(cache, ContextCache)
    rows, columns = want.nonzero(as_tuple=True)
    expected = denoiser.logits_at(ids, attention, rows, active[rows, columns])
    torch.testing.assert_close(usable(denoiser, logits), usable(denoiser, expected), rtol=1e-5,
                               atol=1e-5)
    layers = denoiser.config.num_hidden_layers
    assert len(cache.keys) == len(cache.values) == layers
    heads = denoiser.config.num_key_value_heads
    assert all(k.shape[:3] == (2, heads, 24) and k.dtype == torch.float32 for k in cache.keys)
    assert cache.key_mask is not None and not bool(cache.key_mask[1, 0, 0, 22])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_cached_step_is_exact_while_nothing_changed(flavour, denoisers):
    denoiser = denoisers[flavour]
    ids, active, attention = canvas(denoiser, seed=1)
    full, _, cache = denoiser.denoise_step(ids, active, attention)
    again, _, same = denoiser.denoise_step(ids, active, attention, cache=cache)
    assert same is cache and again.shape == full.shape == (2, 8, denoiser.vocab_size)
    valid = valid_entries(active)
    torch.testing.assert_close(usable(denoiser, again)[valid], usable(denoiser, full)[valid],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_after_tokens_change_the_step_is_approximate_and_a_refresh_exact(flavour, denoisers):
    denoiser = denoisers[flavour]
    ids, active, attention = canvas(denoiser, seed=2)
    _, _, cache = denoiser.denoise_step(ids, active, attention)
    changed = ids.clone()
    changed[0, 6:10] = torch.tensor([40, 41, 42, 43])
    changed[1, 10:12] = torch.tensor([50, 51])
    want = (changed.gather(1, active) == denoiser.mask_token_id) & valid_entries(active)
    rows, columns = want.nonzero(as_tuple=True)
    fresh = denoiser.logits_at(changed, attention, rows, active[rows, columns])
    cached, _, _ = denoiser.denoise_step(changed, active, attention, cache=cache, want=want)
    gap = (usable(denoiser, cached) - usable(denoiser, fresh)).abs().max()
    assert 1e-6 < gap < 5.0  # stale context after the first layer, but the spans' own states
    refreshed, _, _ = denoiser.denoise_step(changed, active, attention, want=want)
    torch.testing.assert_close(usable(denoiser, refreshed), usable(denoiser, fresh), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_visible_active_entries_carry_their_token(flavour, denoisers):
    denoiser = denoisers[flavour]
    ids, active, attention = canvas(denoiser, seed=3)
    ids[0, 7] = 77
    logits, _, _ = denoiser.denoise_step(ids, active, attention)
    assert int(logits[0, 1].argmax()) == 77 and float(logits[0, 1].softmax(-1)[77]) == 1.0
    assert torch.isinf(logits[..., denoiser.mask_token_id]).all()


def test_run_positions_add_the_one_before_each_span_for_shifted_families():
    active = torch.tensor([[6, 7, 8], [10, 11, 10]])
    assert run_positions(active, 24, shift=False).tolist() == [[6, 7, 8], [10, 11, 11]]
    assert run_positions(active, 24, shift=True).tolist() == [[5, 6, 7, 8], [9, 10, 11, 11]]
    assert run_positions(torch.tensor([[0, 1]]), 4, shift=True).tolist() == [[0, 1]]


@pytest.mark.parametrize("flavour", ["dream", "llada"])
def test_shared_context_is_exact_for_identical_rows_and_stacks(flavour, denoisers):
    denoiser = denoisers[flavour]
    ids, active, _ = canvas(denoiser, seed=4)
    row = ids[:1]
    both = row.expand(2, -1).clone()
    span = active[:1].expand(2, -1)
    full, _, whole = denoiser.denoise_step(both, span)
    _, _, single = denoiser.denoise_step(row, span[:1])
    context = torch.tensor([p for p in range(24) if p not in range(6, 14)])
    shared = denoiser.share_context(single, context, context.expand(2, -1))
    stepped, _, _ = denoiser.denoise_step(both, span, cache=shared)
    torch.testing.assert_close(usable(denoiser, stepped), usable(denoiser, full), rtol=1e-4,
                               atol=1e-4)
    # rows selected from the cache and stacked again step as the whole cache does
    parts = [denoiser.select_cache(whole, torch.tensor([i])) for i in range(2)]
    stacked = denoiser.concat_caches(parts)
    again, _, _ = denoiser.denoise_step(both, span, cache=stacked)
    torch.testing.assert_close(again, full, rtol=1e-4, atol=1e-4)


def test_a_cache_of_another_batch_is_refused(denoisers):
    denoiser = denoisers["dream"]
    ids, active, attention = canvas(denoiser)
    _, _, cache = denoiser.denoise_step(ids, active, attention)
    with pytest.raises(ValueError, match="rebuild the cache"):
        denoiser.denoise_step(ids[:1], active[:1], attention[:1], cache=cache)
    with pytest.raises(ValueError, match="outside the sequence"):
        denoiser.denoise_step(ids, active + 20, attention, cache=cache)


def infill(engine, **options):
    text = (EXAMPLES / "sample.py").read_text()
    cursor = text.encode().index(b"restocked += 1")
    request = InfillRequest(text, "python", [ByteRange(cursor, cursor)],
                            options=InfillOptions(**options))
    return engine.infill(request)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cached_decoding_with_a_refresh_every_step_writes_what_uncached_does(flavour,
                                                                             checkpoints):
    engine = InfillEngine.load(checkpoints[flavour], device="cpu", dtype=torch.float32)
    common = dict(lengths=[6], samples=2, temperature=0.0, steps=4, repair_rounds=0,
                  cache_refresh=1, threshold=1.0, seed=0)
    cached = infill(engine, use_cache=True, **common)
    uncached = infill(engine, use_cache=False, **common)
    assert [c.text for c in cached.candidates] == [c.text for c in uncached.candidates]
    assert cached.timings.full_passes == uncached.timings.full_passes


@pytest.mark.parametrize("flavour", ["open-dcoder", "llada"])
def test_the_cache_saves_full_passes(flavour, checkpoints):
    engine = InfillEngine.load(checkpoints[flavour], device="cpu", dtype=torch.float32)
    result = infill(engine, lengths=[4, 6, 8], steps=6, repair_rounds=0, cache_refresh=8,
                    threshold=1.0)
    assert result.candidates
    # one full pass shared by the three length rows, then cached steps only
    assert result.timings.full_passes == 1
    assert result.timings.forward_passes > result.timings.full_passes
    # repair rounds (random weights rarely parse, so they usually run) continue on the cache
    repaired = infill(engine, lengths=[4, 6, 8], steps=6, repair_rounds=2, cache_refresh=100,
                      threshold=1.0)
    assert repaired.timings.full_passes == 1
    if max(c.repair_rounds for c in repaired.candidates):
        assert repaired.timings.forward_passes > result.timings.forward_passes


def test_a_model_spread_by_device_map_steps_as_a_plain_one(checkpoints, denoisers):
    """device_map="auto" (accelerate's hooks around every layer; all on the CPU here): the
    cache goes through them and each layer's entries stay where the layer is."""
    pytest.importorskip("accelerate")
    mapped = em.load_denoiser(checkpoints["dream"], device_map="auto", dtype=torch.float32)
    plain = denoisers["dream"]
    ids, active, attention = canvas(plain, seed=5)
    expected, _, plain_cache = plain.denoise_step(ids, active, attention)
    got, _, cache = mapped.denoise_step(ids, active, attention)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5)
    assert all(k.device == v.device for k, v in zip(cache.keys, cache.values))
    again, _, _ = mapped.denoise_step(ids, active, attention, cache=cache)
    reference, _, _ = plain.denoise_step(ids, active, attention, cache=plain_cache)
    torch.testing.assert_close(again.cpu(), reference, rtol=1e-5, atol=1e-5)
