"""Masking strategies on real annotated code: exact budgets, tier order, whole spans, infill
pads and alignment, replay by seed, anchor weights, and the `python -m training.masking` CLI."""

import json
import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.syntax import TIERS, SourceDocument
from engine.syntax.annotate import NODE_ROLES
from engine.syntax.node_tables import ANCHOR_INDEX
from engine.tokens import PAD_TOKEN, SPECIAL_TOKENS
from training.anchors import AnchorWeights, anchor_weights
from training.masking import (STRATEGIES, InfillConfig, InvalidRateError, MaskingConfig,
                              MaskingError, TierWeights, UnknownStrategyError, build_example,
                              infill_candidates, mask_ast_span, mask_ast_tier,
                              mask_budget, mask_example, mask_infill, mask_random)

from .paths import EXAMPLES, ROOT

STDLIB_FILE = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
PAD_ID = SPECIAL_TOKENS.index(PAD_TOKEN)
BUDGETED = ("random", "ast-tier", "ast-span")
ROLE = {name: i for i, name in enumerate(NODE_ROLES)}
SNIPPET = '''import os

def f(x, ys):
    total = 0
    for y in ys:
        if y > x:
            total += y
        elif y == x:
            continue
        else:
            break
    while total > 100:
        total //= 2
    return os.path.join(str(total), "out")
'''


@pytest.fixture(scope="module")
def stdlib_example():
    example, _, _ = build_example(SourceDocument.from_path(STDLIB_FILE), path=STDLIB_FILE.name)
    return example


@pytest.fixture(scope="module")
def sample_example():
    example, _, _ = build_example(SourceDocument.from_path(EXAMPLES / "sample.py"))
    return example


@pytest.fixture(scope="module")
def snippet_example():
    example, _, _ = build_example(SourceDocument(SNIPPET, "python"))
    return example


def infill_config(max_pad=8, **kwargs):
    return MaskingConfig(pad_id=PAD_ID, infill=InfillConfig(max_pad=max_pad, **kwargs))


# --- budgets -----------------------------------------------------------------------------------

def test_budget_is_floor_of_rate_times_length():
    assert mask_budget(0.0, 100) == 0 and mask_budget(1.0, 100) == 100
    assert mask_budget(0.155, 100) == 15 and mask_budget(0.999, 10) == 9
    assert mask_budget(0.29, 100) == 29  # 0.29 * 100 == 28.999999999999996 in binary
    for length in (1, 7, 100, 513):
        assert [mask_budget(k / length, length) for k in range(length + 1)] == list(
            range(length + 1))


@pytest.mark.parametrize("rate", [-0.01, 1.01, float("nan"), float("inf"), "0.5", None, True])
def test_rates_outside_unit_interval_are_refused(rate, sample_example):
    with pytest.raises(InvalidRateError, match=r"\[0, 1\]"):
        mask_budget(rate, 10)
    with pytest.raises(InvalidRateError):
        mask_example("random", sample_example, rate, np.random.default_rng(0))


def test_unknown_strategy_is_a_typed_error(sample_example):
    with pytest.raises(UnknownStrategyError, match="ast-tier"):
        mask_example("bert", sample_example, 0.1, np.random.default_rng(0))


@pytest.mark.parametrize("strategy", BUDGETED)
@pytest.mark.parametrize("rate", [0.0, 0.001, 0.1, 0.15, 0.5, 0.77, 0.999, 1.0])
def test_budgets_are_exact_on_a_stdlib_file(strategy, rate, stdlib_example):
    for seed in range(3):
        result = mask_example(strategy, stdlib_example, rate, np.random.default_rng(seed))
        assert result.mask.dtype == bool and result.mask.shape == (len(stdlib_example),)
        assert result.budget == math.floor(rate * len(stdlib_example))
        assert int(result.mask.sum()) == result.budget
        assert result.example is stdlib_example  # the input is not changed


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 4000), length=st.integers(0, 600),
       rate=st.floats(0.0, 1.0, allow_nan=False), seed=st.integers(0, 2**32 - 1),
       strategy=st.sampled_from(BUDGETED))
def test_budgets_are_exact_for_any_window_and_rate(stdlib_example, start, length, rate, seed,
                                                   strategy):
    example = stdlib_example.window(start, start + length)
    result = mask_example(strategy, example, rate, np.random.default_rng(seed))
    exact = math.floor(rate * len(example))
    assert result.budget in (exact, exact + 1)  # +1 only within 1e-9 of an integer
    assert result.budget == exact or math.ceil(rate * len(example)) - rate * len(example) < 1e-9
    assert int(result.mask.sum()) == result.budget


# --- random and ast-tier -------------------------------------------------------------------------

def test_random_is_uniform_over_positions(stdlib_example):
    example = stdlib_example.window(0, 100)
    counts = sum(mask_random(example, 0.3, np.random.default_rng(s)).mask.astype(int)
                 for s in range(400))
    assert counts.min() > 80 and counts.max() < 160  # expected 120 each; binomial sd ~9


def test_ast_tier_masks_tiers_in_the_order_of_their_weights(stdlib_example):
    tiers = stdlib_example.tiers
    masked = np.zeros(len(TIERS))
    for seed in range(60):
        mask = mask_ast_tier(stdlib_example, 0.2, np.random.default_rng(seed)).mask
        masked += np.bincount(tiers[mask], minlength=len(TIERS))
    share = dict(zip(TIERS, masked / (60 * np.bincount(tiers, minlength=len(TIERS)))))
    assert share["ctrl"] >= share["cond"] - 0.03  # 0.60 vs 0.58: a tie is allowed
    assert share["cond"] > share["data"] > share["skeleton"] > share["default"]


def test_ast_tier_falls_back_uniformly_when_weights_cover_too_little(stdlib_example):
    only_ctrl = TierWeights(skeleton=0, data=0, cond=0, ctrl=1.0, default=0)
    ctrl = stdlib_example.tiers == TIERS.index("ctrl")
    result = mask_ast_tier(stdlib_example, 0.3, np.random.default_rng(1),
                           MaskingConfig(tier_weights=only_ctrl))
    assert int(result.mask.sum()) == result.budget > ctrl.sum()
    assert result.mask[ctrl].all()  # every weighted token first
    assert not (result.fallback & ctrl).any()
    assert int(result.fallback.sum()) == result.budget - ctrl.sum()
    assert not (result.fallback & ~result.mask).any()


def test_ast_tier_needs_no_fallback_with_positive_weights(stdlib_example):
    result = mask_ast_tier(stdlib_example, 1.0, np.random.default_rng(0))
    assert result.mask.all() and not result.fallback.any()


def test_negative_tier_weights_are_refused(sample_example):
    with pytest.raises(MaskingError, match="tier weights"):
        mask_ast_tier(sample_example, 0.5, np.random.default_rng(0),
                      MaskingConfig(tier_weights=TierWeights(data=-1.0)))


# --- ast-span ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.05, 0.15, 0.4, 0.8, 1.0])
def test_ast_span_masks_whole_disjoint_node_spans_plus_fallback(rate, stdlib_example):
    rows = {tuple(r) for r in stdlib_example.node_spans[:, :2].tolist()}
    fallback_share = []
    for seed in range(5):
        result = mask_ast_span(stdlib_example, rate, np.random.default_rng(seed))
        spans = result.spans
        assert all(tuple(span) in rows for span in spans.tolist())
        assert (spans[1:, 0] >= spans[:-1, 1]).all()  # sorted, disjoint
        from_spans = np.zeros(len(stdlib_example), dtype=bool)
        for start, end in spans.tolist():
            from_spans[start:end] = True
        assert not (from_spans & result.fallback).any()
        assert np.array_equal(result.mask, from_spans | result.fallback)
        assert int(result.mask.sum()) == result.budget
        fallback_share.append(result.fallback.sum() / max(result.budget, 1))
    if rate <= 0.15:  # at low rates spans do the work; at high ones whitespace that only
        assert np.mean(fallback_share) < 0.05  # big (blocked) spans cover needs the fallback


def test_ast_span_prefers_high_tier_spans(stdlib_example):
    picked = np.zeros(len(TIERS))
    for seed in range(30):
        result = mask_ast_span(stdlib_example, 0.1, np.random.default_rng(seed))
        lookup = {tuple(r[:2]): r[2] for r in stdlib_example.node_spans.tolist()}
        for span in result.spans.tolist():
            picked[lookup[tuple(span)]] += 1
    available = np.bincount(stdlib_example.node_spans[:, 2], minlength=len(TIERS))
    rate = picked / available
    assert rate[TIERS.index("data")] > rate[TIERS.index("skeleton")] > rate[TIERS.index("default")]


def test_ast_span_without_spans_is_all_fallback(stdlib_example):
    example = stdlib_example.window(0, 200)
    example.node_spans = np.zeros((0, 5), dtype=np.int32)
    result = mask_ast_span(example, 0.25, np.random.default_rng(3))
    assert result.fallback.sum() == result.mask.sum() == 50 and len(result.spans) == 0


# --- replay ------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_same_seed_same_mask_different_seed_different_mask(strategy, stdlib_example):
    config = infill_config()
    first = mask_example(strategy, stdlib_example, 0.2, np.random.default_rng(7), config)
    again = mask_example(strategy, stdlib_example, 0.2, np.random.default_rng(7), config)
    other = mask_example(strategy, stdlib_example, 0.2, np.random.default_rng(8), config)
    assert np.array_equal(first.mask, again.mask)
    assert np.array_equal(first.example.input_ids, again.example.input_ids)
    assert np.array_equal(first.spans, again.spans)
    assert not (len(first.mask) == len(other.mask) and np.array_equal(first.mask, other.mask))


# --- infill --------------------------------------------------------------------------------------

def _check_infill(original, result, max_pad):
    """Everything infill promises, checked against the original example."""
    grown = result.example
    kept = ~result.inserted
    length = len(grown)
    for name in ("input_ids", "tiers", "depths", "anchors"):
        array = getattr(grown, name)
        assert array.shape == (length,) and array.dtype == getattr(original, name).dtype
        assert np.array_equal(array[kept], getattr(original, name))  # pads removed: the input
    assert (grown.input_ids[result.inserted] == PAD_ID).all()
    assert (grown.anchors[result.inserted] == ANCHOR_INDEX["other"]).all()
    assert not (result.inserted & ~result.mask).any()  # pads are masked
    # node spans: same rows, and each covers exactly its original tokens plus pads
    old_index = np.cumsum(kept) - 1
    assert grown.node_spans.shape == original.node_spans.shape
    assert np.array_equal(grown.node_spans[:, 2:], original.node_spans[:, 2:])
    for (a, b), (s, e) in zip(grown.node_spans[:, :2].tolist(),
                              original.node_spans[:, :2].tolist()):
        covered = old_index[a:b][kept[a:b]]
        assert covered.tolist() == list(range(s, e))
    # masked regions: whole selections, each followed by its pads, one unmasked token apart
    regions = result.spans.tolist()
    region_mask = np.zeros(length, dtype=bool)
    for start, end in regions:
        region_mask[start:end] = True
        pads = result.inserted[start:end]
        assert pads.sum() <= max_pad
        assert not pads[:len(pads) - pads.sum()].any()  # pads form the region's tail
    assert np.array_equal(region_mask, result.mask)
    assert all(b[0] > a[1] for a, b in zip(regions, regions[1:]))
    rows = original.node_spans.tolist()
    whole = {(s, e) for s, e, _, role, _ in rows
             if role in (ROLE["statement"], ROLE["body"], ROLE["expression"])}
    statement_starts = {(s, d) for s, _, _, role, d in rows if role == ROLE["statement"]}
    statement_ends = {(e, d) for _, e, _, role, d in rows if role == ROLE["statement"]}
    for start, end in regions:
        tokens = old_index[start:end][kept[start:end]]
        s, e = int(tokens[0]), int(tokens[-1]) + 1
        assert len(tokens) == e - s
        run = any((s, d) in statement_starts and (e, d) in statement_ends for d in range(64))
        assert (s, e) in whole or run
    return int((result.mask & kept).sum())


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1, 0.3, 0.6])
def test_infill_masks_whole_nodes_plus_pads_and_keeps_metadata_aligned(rate, stdlib_example):
    window = stdlib_example.window(1000, 1512)
    for seed in range(8):
        result = mask_infill(window, rate, np.random.default_rng(seed), infill_config())
        masked = _check_infill(window, result, max_pad=8)
        assert 0 < masked <= result.budget or len(result.spans) == 1  # nothing fit: shortest
        assert result.masked_share == pytest.approx(masked / len(window))


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 4400), length=st.integers(0, 400),
       rate=st.floats(0.0, 1.0, allow_nan=False), seed=st.integers(0, 2**32 - 1),
       max_pad=st.integers(0, 5))
def test_infill_keeps_its_promises_on_any_window(stdlib_example, start, length, rate, seed,
                                                 max_pad):
    window = stdlib_example.window(start, start + length)
    result = mask_infill(window, rate, np.random.default_rng(seed), infill_config(max_pad))
    masked = _check_infill(window, result, max_pad)
    assert masked <= result.budget or len(result.spans) == 1
    if result.budget == 0:
        assert not result.mask.any() and len(result.example) == len(window)


def test_infill_reaches_low_target_rates_closely(stdlib_example):
    window = stdlib_example.window(0, 1024)
    shares = [mask_infill(window, 0.1, np.random.default_rng(s), infill_config()).masked_share
              for s in range(20)]
    assert 0.07 <= np.mean(shares) <= 0.1


def test_infill_on_a_snippet_selects_statement_runs(snippet_example):
    lengths = set()
    for seed in range(40):
        result = mask_infill(snippet_example, 0.3, np.random.default_rng(seed),
                             infill_config(max_pad=3))
        _check_infill(snippet_example, result, max_pad=3)
        lengths.add(len(result.example))
    assert len(lengths) > 1  # the number of pads varies


def test_infill_runs_are_sibling_statements(snippet_example):
    _, texts, _ = build_example(SourceDocument(SNIPPET, "python"))
    ranges, rows, weights = infill_candidates(snippet_example.node_spans)
    spans = snippet_example.node_spans
    runs = {"".join(texts[s:e]).split("\n")[0].strip() + " .. " +
            "".join(texts[s:e]).strip().split("\n")[-1].strip()
            for (s, e), row in zip(ranges.tolist(), rows.tolist())
            if (s, e) != tuple(spans[row, :2].tolist())}
    # module level: import + def; the function body's four statements: runs of 2 and 3; the
    # one-statement blocks of if / elif / else / while never join across blocks
    assert runs == {
        'import os .. return os.path.join(str(total), "out")',
        "total = 0 .. break", "for y in ys: .. total //= 2",
        'while total > 100: .. return os.path.join(str(total), "out")',
        "total = 0 .. total //= 2", 'for y in ys: .. return os.path.join(str(total), "out")'}
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).all()


def test_infill_zero_rate_and_zero_pads(stdlib_example):
    window = stdlib_example.window(0, 300)
    none = mask_infill(window, 0.0, np.random.default_rng(0), infill_config())
    assert not none.mask.any() and len(none.example) == len(window)
    no_pads = mask_infill(window, 0.2, np.random.default_rng(0), infill_config(max_pad=0))
    assert len(no_pads.example) == len(window) and no_pads.mask.any()
    assert not no_pads.inserted.any()


def test_infill_with_max_spans_one_gives_one_hole(stdlib_example):
    window = stdlib_example.window(2000, 2512)
    for seed in range(10):
        result = mask_infill(window, 0.1, np.random.default_rng(seed),
                             infill_config(max_spans=1))
        assert len(result.spans) == 1
        _check_infill(window, result, max_pad=8)


@pytest.mark.parametrize("kwargs", [{"max_pad": -1}, {"max_run": 0}, {"max_spans": -1},
                                    {"body_weight": -0.1},
                                    {"statement_weight": 0, "body_weight": 0,
                                     "expression_weight": 0}])
def test_infill_parameters_are_checked(kwargs):
    with pytest.raises(MaskingError):
        InfillConfig(**kwargs)


def test_infill_needs_a_pad_id(sample_example):
    with pytest.raises(MaskingError, match="pad_id"):
        mask_infill(sample_example, 0.1, np.random.default_rng(0))


# --- anchor weights ------------------------------------------------------------------------------

def test_anchor_weight_formula():
    keyword, identifier, other = (ANCHOR_INDEX[k] for k in ("keyword", "identifier", "other"))
    anchors = np.array([keyword, identifier, identifier, other, keyword], dtype=np.int8)
    depths = np.array([0, 2, 3, 1, 5], dtype=np.int16)
    weights = AnchorWeights(gamma=2.0, decay=0.5, d0=2).weights(anchors, depths)
    assert weights.tolist() == [2.0, 2.0, 1.0, 0.0, 0.25]


def test_anchor_weights_on_real_code(stdlib_example):
    params = AnchorWeights()
    weights = anchor_weights(stdlib_example, params)
    is_anchor = np.isin(stdlib_example.anchors, [ANCHOR_INDEX["keyword"],
                                                 ANCHOR_INDEX["identifier"]])
    assert (weights[~is_anchor] == 0).all() and (weights[is_anchor] > 0).all()
    expected = 1.0 * 0.9 ** np.maximum(0, stdlib_example.depths[is_anchor].astype(float) - 2)
    np.testing.assert_allclose(weights[is_anchor], expected, rtol=1e-6)
    assert weights.max() == 1.0 and weights.dtype == np.float32


@pytest.mark.parametrize("kwargs", [{"gamma": -1}, {"decay": 0}, {"decay": 1.5}, {"d0": -1}])
def test_anchor_parameters_are_checked(kwargs):
    with pytest.raises(ValueError):
        AnchorWeights(**kwargs)


# --- CLI -----------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "training.masking", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_cli_json_shape(strategy):
    source = (EXAMPLES / "sample.py").read_text()
    done = run_cli(EXAMPLES / "sample.py", "--strategy", strategy, "--rate", "0.2", "--seed",
                   "3", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"tokens", "budget", "masked"} <= set(out)
    assert all(set(row) == {"text", "tier", "depth", "anchor_weight", "masked"}
               for row in out["tokens"])
    assert out["masked"] == sum(row["masked"] for row in out["tokens"])
    real = [row for row in out["tokens"] if row["text"] != PAD_TOKEN]
    assert "".join(row["text"] for row in real) == source  # fallback pieces cover the file
    assert out["budget"] == math.floor(0.2 * len(real))
    if strategy != "infill":
        assert out["masked"] == out["budget"]
    assert {row["tier"] for row in out["tokens"]} <= set(TIERS)
    assert any(row["anchor_weight"] > 0 for row in out["tokens"])
    again = run_cli(EXAMPLES / "sample.py", "--strategy", strategy, "--rate", "0.2", "--seed",
                    "3", "--json")
    assert again.stdout == done.stdout


def test_cli_text_output_and_anchor_flags():
    done = run_cli(EXAMPLES / "sample.py", "--rate", "0.5", "--gamma", "2", "--decay", "0.5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("strategy=ast-tier rate=0.5 seed=0")
    assert any(" 2.000 " in line for line in lines[2:])


def test_cli_with_a_trained_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([SNIPPET, (EXAMPLES / "sample.py").read_text()], trainer)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    done = run_cli(EXAMPLES / "sample.py", "--tokenizer", tmp_path, "--strategy", "infill",
                   "--rate", "0.1", "--json", "--max-pad", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["masked"] > 0 and out["budget"] >= 1
    pads = [row for row in out["tokens"] if row["text"] == PAD_TOKEN]
    assert all(row["masked"] for row in pads)


@pytest.mark.parametrize("args, message", [
    (["--rate", "1.5"], "[0, 1]"),
    (["--rate", "-0.1"], "[0, 1]"),
    (["--rate", "often"], "[0, 1]"),
    (["--strategy", "bert"], "invalid choice"),
    (["--language", "cobol"], "unsupported language"),
    (["--tokenizer", "/nonexistent/tok"], "no tokenizer.json"),
])
def test_cli_errors_exit_2_with_a_message(args, message):
    done = run_cli(EXAMPLES / "sample.py", *args)
    assert done.returncode == 2 and message in done.stderr and not done.stdout


def test_cli_missing_file_and_unknown_extension(tmp_path):
    missing = run_cli(tmp_path / "nope.py")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello\n")
    unknown = run_cli(odd)
    assert unknown.returncode == 2 and "unsupported language" in unknown.stderr


def test_special_token_text_in_source_is_not_the_special_token(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from engine.tokens import MASK_TOKEN, SPECIAL_TOKENS

    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(
        [*SPECIAL_TOKENS, "[UNK]", "x", "=", "'"])}, unk_token="[UNK]"))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    doc = SourceDocument(f"x = '{MASK_TOKEN}'\n", "python")
    example, _, _ = build_example(doc, tmp_path)
    assert SPECIAL_TOKENS.index(MASK_TOKEN) not in example.input_ids.tolist()
