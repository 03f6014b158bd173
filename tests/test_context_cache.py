"""`AnchoredDiffusionModel.denoise_step` and its `ContextCache`: the full pass matches `logits`,
a cached step recomputes only the active positions, exactly while nothing changed and
approximately (stale context) after, and bad active positions or caches are refused."""

import pytest
import torch

import engine.model as em

VOCAB = 300
MASK = 1
LAYOUTS = [dict(use_anchor=False), dict(use_anchor=True, anchor_feed="logits"),
           dict(use_anchor=True, anchor_feed="hidden")]
LAYOUT_IDS = ["mdlm", "anchor-logits", "anchor-hidden"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_model(seed: int = 0, **overrides) -> em.AnchoredDiffusionModel:
    torch.manual_seed(seed)
    return em.AnchoredDiffusionModel(em.config_from_preset("tiny", VOCAB, **overrides)).eval()


def infill_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids [2, 40] with one masked span per row, and active [2, 12]: the span positions,
    the shorter second span padded by repeating its first position."""
    ids = torch.randint(3, VOCAB, (2, 40), generator=torch.Generator().manual_seed(seed))
    active = torch.tensor([list(range(10, 22)), list(range(25, 33)) + [25] * 4])
    return ids.scatter(1, active, MASK), active


def at(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """logits [B, L, V] at active [B, A] -> [B, A, V]."""
    return logits.gather(1, active[..., None].expand(-1, -1, logits.shape[-1]))


def unmask_some(ids: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A sampler's step: some masked positions of each span get tokens."""
    changed = ids.clone()
    generator = torch.Generator().manual_seed(seed)
    changed[0, 10:16] = torch.randint(3, VOCAB, (6,), generator=generator)
    changed[1, 25:28] = torch.randint(3, VOCAB, (3,), generator=generator)
    return changed


def log_probs_where_masked(logits: torch.Tensor, ids: torch.Tensor,
                           active: torch.Tensor) -> torch.Tensor:
    """Log-probabilities [n, V-1] of the active positions still masked, mask column left out
    (visible positions are one-hot under the SUBS rules whatever the context)."""
    still = ids.gather(1, active) == MASK
    keep = torch.arange(VOCAB) != MASK
    return logits.float().log_softmax(-1)[still][:, keep]


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_full_pass_matches_logits_and_builds_the_cache(overrides):
    model = tiny_model(**overrides)
    ids, active = infill_batch()
    logits, anchor_logits, cache = model.denoise_step(ids, active)
    assert logits.shape == (2, 12, VOCAB)
    assert torch.allclose(logits, at(model.logits(ids), active), atol=1e-5)
    if model.has_anchor:
        assert anchor_logits.shape == (2, 12, VOCAB)
        assert torch.allclose(anchor_logits, at(model.anchor_logits(ids), active), atol=1e-5)
    else:
        assert anchor_logits is None
    config = model.config
    head_size = config.hidden_size // config.num_attention_heads
    assert len(cache.keys) == len(cache.values) == config.num_hidden_layers
    assert all(k.shape == (2, config.num_attention_heads, 40, head_size) for k in cache.keys)
    assert (cache.batch_size, cache.length, cache.key_mask) == (2, 40, None)


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_cached_step_is_exact_while_nothing_changed(overrides):
    model = tiny_model(**overrides)
    ids, active = infill_batch()
    logits, anchor_logits, cache = model.denoise_step(ids, active)
    again, anchor_again, same_cache = model.denoise_step(ids, active, cache=cache)
    assert same_cache is cache
    assert torch.allclose(again, logits, atol=1e-5)
    if model.has_anchor:
        assert torch.allclose(anchor_again, anchor_logits, atol=1e-5)


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_cached_step_is_approximate_after_tokens_change(overrides):
    # A sharper random model than the default init, so that the stale context shows.
    model = tiny_model(initializer_range=0.1, **overrides)
    ids, active = infill_batch()
    stale, stale_anchor, cache = model.denoise_step(ids, active)
    changed = unmask_some(ids)
    cached, cached_anchor, cache = model.denoise_step(changed, active, cache=cache)
    full, full_anchor, _ = model.denoise_step(changed, active)  # rebuilt
    assert torch.allclose(full, at(model.logits(changed), active), atol=1e-5)
    pairs = [(stale, cached, full)]
    if model.has_anchor:
        assert torch.allclose(full_anchor, at(model.anchor_logits(changed), active), atol=1e-5)
        pairs.append((stale_anchor, cached_anchor, full_anchor))
    for before, approximate, exact in pairs:
        before, approximate, exact = (log_probs_where_masked(x, changed, active)
                                      for x in (before, approximate, exact))
        error = (approximate - exact).abs().max()
        assert error > 1e-6  # stale context: not the full pass's numbers ...
        assert error < (before - exact).abs().max()  # ... but the active states were recomputed
    # The tokens just unmasked are carried over whatever the context.
    visible = changed.gather(1, active) != MASK
    assert torch.equal(cached.argmax(-1)[visible], changed.gather(1, active)[visible])


def test_single_block_cached_step_is_exact_after_tokens_change():
    # With one block the context's keys and values depend on its own embeddings only, so the
    # cache never goes stale: the cached step must equal a full pass however tokens change.
    model = tiny_model(initializer_range=0.1, use_anchor=False, num_anchor_layers=1,
                       num_denoiser_layers=0)
    ids, active = infill_batch()
    _, _, cache = model.denoise_step(ids, active)
    for seed in (1, 2, 3):
        changed = unmask_some(ids, seed)
        cached, _, cache = model.denoise_step(changed, active, cache=cache)
        assert torch.allclose(cached, at(model.logits(changed), active), atol=1e-5)


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_right_padding(overrides):
    model = tiny_model(**overrides)
    ids, active = infill_batch()
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 34:] = 0
    ids[1, 34:] = 0
    reference = at(model.logits(ids, attention_mask=attention_mask), active)
    logits, anchor_logits, cache = model.denoise_step(ids, active, attention_mask=attention_mask)
    assert cache.key_mask.shape == (2, 1, 1, 40)
    assert torch.allclose(logits, reference, atol=1e-5)
    if model.has_anchor:
        reference_anchor = at(model.anchor_logits(ids, attention_mask=attention_mask), active)
        assert torch.allclose(anchor_logits, reference_anchor, atol=1e-5)
    # A cached step attends with the cache's key mask, given again or not.
    for mask in (attention_mask, None):
        cached, _, _ = model.denoise_step(ids, active, attention_mask=mask, cache=cache)
        assert torch.allclose(cached, reference, atol=1e-5)
    with pytest.raises(ValueError, match="rebuild the cache"):
        model.denoise_step(ids, active, attention_mask=torch.ones_like(ids), cache=cache)


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_repeated_active_positions_are_harmless(overrides):
    model = tiny_model(initializer_range=0.1, **overrides)
    ids, _ = infill_batch()
    distinct = torch.tensor([[10, 11, 12, 13], [25, 26, 27, 28]])
    repeated = torch.tensor([[10, 11, 12, 13, 13, 10], [25, 26, 27, 28, 25, 25]])
    changed = unmask_some(ids)
    results = []
    for active in (distinct, repeated):
        logits, _, cache = model.denoise_step(ids, active)
        assert torch.allclose(logits, at(model.logits(ids), active), atol=1e-5)
        results.append(model.denoise_step(changed, active, cache=cache))
    (cached, anchor, cache), (cached_rep, anchor_rep, cache_rep) = results
    assert torch.allclose(cached_rep[:, :4], cached, atol=1e-5)
    assert torch.allclose(cached_rep[:, 4:], at(cached, torch.tensor([[3, 0], [0, 0]])),
                          atol=1e-5)
    if model.has_anchor:
        assert torch.allclose(anchor_rep[:, :4], anchor, atol=1e-5)
    for mine, theirs in zip(cache.keys + cache.values, cache_rep.keys + cache_rep.values):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_active_positions_outside_the_sequence_are_refused():
    model = tiny_model()
    ids, active = infill_batch()
    for bad in (40, -1):
        wrong = active.clone()
        wrong[1, 3] = bad
        with pytest.raises(ValueError, match="outside the sequence"):
            model.denoise_step(ids, wrong)
    with pytest.raises(ValueError, match=r"\[B, A\]"):
        model.denoise_step(ids, active[0])
    with pytest.raises(ValueError, match="integer"):
        model.denoise_step(ids, active.float())


def test_cache_of_another_shape_is_refused():
    model = tiny_model()
    ids, active = infill_batch()
    _, _, cache = model.denoise_step(ids, active)
    with pytest.raises(ValueError, match="rebuild the cache"):
        model.denoise_step(ids[:, :30], active.clamp(max=29), cache=cache)  # another length
    with pytest.raises(ValueError, match="rebuild the cache"):
        model.denoise_step(ids[:1], active[:1], cache=cache)  # another batch size
    other = tiny_model(use_anchor=False, num_anchor_layers=1, num_denoiser_layers=0)
    with pytest.raises(ValueError, match="rebuild the cache"):
        other.denoise_step(ids, active, cache=cache)  # another model


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_bfloat16_steps(overrides):
    model = tiny_model(**overrides).to(torch.bfloat16)
    ids, active = infill_batch()
    logits, anchor_logits, cache = model.denoise_step(ids, active)
    assert cache.keys[0].dtype == torch.bfloat16
    cached, cached_anchor, _ = model.denoise_step(unmask_some(ids), active, cache=cache)
    for out in (logits, cached) + ((anchor_logits, cached_anchor) if model.has_anchor else ()):
        assert out.dtype == torch.bfloat16
        probs = out.float().softmax(-1)
        assert torch.isfinite(probs).all() and torch.all(probs[..., MASK] == 0)


# --- one full pass shared by rows with the same context ------------------------------------------

def canvas_rows(lengths: list[int], prefix: int = 9, suffix: int = 14, seed: int = 0):
    """Rows of the same context around one masked span of `lengths[r]` tokens, right-padded:
    (ids [B, L], attention_mask [B, L], active [B, A], context positions [B, C])."""
    generator = torch.Generator().manual_seed(seed)
    before = torch.randint(3, VOCAB, (prefix,), generator=generator)
    after = torch.randint(3, VOCAB, (suffix,), generator=generator)
    width = prefix + max(lengths) + suffix
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    active, context = [], []
    for r, n in enumerate(lengths):
        row = torch.cat([before, torch.full((n,), MASK), after])
        ids[r, :len(row)], mask[r, :len(row)] = row, 1
        span = list(range(prefix, prefix + n))
        active.append(span + [span[0]] * (max(lengths) - n))
        context.append(list(range(prefix)) + list(range(prefix + n, prefix + n + suffix)))
    return ids, mask, torch.tensor(active), torch.tensor(context)


def shared_step(model, ids, mask, active, context):
    _, _, first = model.denoise_step(ids[:1], active[:1], attention_mask=mask[:1])
    cache = model.share_context(first, context[0], context, attention_mask=mask)
    return model.denoise_step(ids, active, attention_mask=mask, cache=cache)


def test_shared_context_is_exact_for_one_block_at_other_positions():
    """One block: the context's keys and values depend on its own tokens and positions only,
    so moving them to a row whose span is longer or shorter must give that row's full pass."""
    model = tiny_model(use_anchor=False, num_anchor_layers=1, num_denoiser_layers=0)
    ids, mask, active, context = canvas_rows([6, 11, 3])
    logits, _, _ = shared_step(model, ids, mask, active, context)
    expected, _, _ = model.denoise_step(ids, active, attention_mask=mask)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_shared_context_is_exact_for_identical_rows(overrides):
    model = tiny_model(**overrides)
    ids, mask, active, context = canvas_rows([7, 7, 7])
    logits, anchor_logits, _ = shared_step(model, ids, mask, active, context)
    expected, expected_anchor, _ = model.denoise_step(ids, active, attention_mask=mask)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    if expected_anchor is not None:
        torch.testing.assert_close(anchor_logits, expected_anchor, atol=1e-5, rtol=1e-5)


def test_shared_context_is_close_for_other_lengths():
    """Deeper blocks: a row's context saw the first row's span length; close, not exact."""
    model = tiny_model(use_anchor=True, anchor_feed="logits")
    ids, mask, active, context = canvas_rows([6, 9])
    logits, _, _ = shared_step(model, ids, mask, active, context)
    expected, _, _ = model.denoise_step(ids, active, attention_mask=mask)
    torch.testing.assert_close(logits[0], expected[0], atol=1e-5, rtol=1e-5)
    probs, want = logits[1].float().softmax(-1), expected[1].float().softmax(-1)
    assert float((probs - want).abs().sum(-1).max()) < 0.5


def test_share_context_refuses_a_batch_cache():
    model = tiny_model()
    ids, mask, active, context = canvas_rows([4, 4])
    _, _, cache = model.denoise_step(ids, active, attention_mask=mask)
    with pytest.raises(ValueError, match="one-row cache"):
        model.share_context(cache, context[0], context, attention_mask=mask)


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_want_packs_the_heads_to_the_wanted_entries(overrides):
    model = tiny_model(**overrides)
    ids, active = infill_batch()
    want = ids.gather(1, active) == MASK
    want[0, :3] = False
    full, full_anchor, cache = model.denoise_step(ids, active)
    packed, packed_anchor, _ = model.denoise_step(ids, active, want=want)
    torch.testing.assert_close(packed, full[want], atol=1e-5, rtol=1e-5)
    cached, cached_anchor, _ = model.denoise_step(ids, active, cache=cache, want=want)
    torch.testing.assert_close(cached, full[want], atol=1e-5, rtol=1e-5)
    if full_anchor is not None:
        torch.testing.assert_close(packed_anchor, full_anchor[want], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cached_anchor, full_anchor[want], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="want"):
        model.denoise_step(ids, active, want=want[:, :2])


@pytest.mark.parametrize("overrides", LAYOUTS, ids=LAYOUT_IDS)
def test_a_cache_split_by_rows_and_stacked_again_steps_the_same(overrides):
    """select_cache (the rows still decoding) and concat_caches (several requests' canvases in
    one batch) give the cached step the numbers the whole cache gives those rows."""
    model = tiny_model(**overrides)
    ids, active = infill_batch()
    attention = torch.ones_like(ids)
    attention[1, 36:] = 0  # the second row is padded: its key mask must travel with it
    _, _, cache = model.denoise_step(ids, active, attention_mask=attention)
    changed = unmask_some(ids)
    whole, _, _ = model.denoise_step(changed, active, attention_mask=attention,
                                     cache=model.select_cache(cache, torch.tensor([0, 1]),
                                                              attention))
    for row in (0, 1):
        rows = torch.tensor([row])
        part = model.select_cache(cache, rows, attention[rows])
        assert part.batch_size == 1 and part.keys[0].shape[0] == 1
        alone, _, _ = model.denoise_step(changed[rows], active[rows],
                                         attention_mask=attention[rows], cache=part)
        torch.testing.assert_close(alone[0], whole[row])
    stacked = model.concat_caches([model.select_cache(cache, torch.tensor([r]), attention[[r]])
                                   for r in (0, 1)], attention_mask=attention)
    again, _, _ = model.denoise_step(changed, active, attention_mask=attention, cache=stacked)
    torch.testing.assert_close(again, whole)
