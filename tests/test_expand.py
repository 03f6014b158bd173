"""DreamOn-style variable-length infill on a tiny checkpoint in DreamOn's layout: a mask decoded
as <|expand|> becomes two masks, one decoded as the end token is deleted, within the span's
budget; the expand and end tokens never reach the text. The model's decisions are forced by a
wrapper that raises one token's logit at chosen positions, so the test does not depend on what
random weights write."""

import pytest
import torch

from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest

from engine.benchmarks.published_layouts import make_dream_checkpoint
from .paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SAMPLE = (EXAMPLES / "sample.py").read_text(encoding="utf-8")


class Forcing:
    """The denoiser, with `plan[call]` = [(token, which masked position of the span: 0 first,
    -1 last), ...] forced at that model call, and the `controlled` tokens (expand, end) never
    drawn anywhere else; records each call's canvas length."""

    def __init__(self, model, plan, controlled=()):
        self.inner, self.plan, self.calls, self.lengths = model, plan, 0, []
        self.controlled = list(controlled)

    def __getattr__(self, name):
        if name in ("logits_at", "denoise_step"):  # every prediction through `logits`, forced
            raise AttributeError(name)
        return getattr(self.inner, name)

    def logits(self, input_ids, attention_mask=None, masked=None):
        out = self.inner.logits(input_ids, attention_mask, masked).clone()
        is_mask = input_ids == self.inner.mask_token_id
        for token in self.controlled:
            out[..., token] = out[..., token].masked_fill(is_mask, float("-inf"))
        self.lengths.append(int(attention_mask[0].sum()) if attention_mask is not None
                            else input_ids.shape[1])
        for token, which in self.plan.get(self.calls, []):
            for row in range(input_ids.shape[0]):
                where = (input_ids[row] == self.inner.mask_token_id).nonzero().squeeze(-1)
                if where.numel():
                    out[row, int(where[which]), token] = 1e4
        self.calls += 1
        return out


@pytest.fixture(scope="module")
def dreamon(tmp_path_factory):
    return InfillEngine.load(make_dream_checkpoint(tmp_path_factory.mktemp("dreamon") / "m",
                                                   "dreamon", seed=3), device="cpu")


def controlled(engine):
    return [engine.tokenizer.expand_id, *engine.tokenizer.end_ids]


def run(engine, plan, **options):
    forcing = Forcing(engine.model, plan, controlled(engine))
    saved, engine.model = engine.model, forcing
    cursor = SAMPLE.encode().index(b"return self.price")
    settings = dict(lengths=[4], length_candidates=1, temperature=0.0, anchored=False,
                    threshold=1.0, repair_rounds=0, steps=4)
    settings.update(options)
    try:
        result = engine.infill(InfillRequest(SAMPLE, "python", [ByteRange(cursor, cursor)],
                                             options=engine.default_options(**settings)))
    finally:
        engine.model = saved
    return result, forcing


def test_the_tokens_and_frame_of_dreamon(dreamon):
    tokenizer = dreamon.tokenizer
    assert tokenizer.expand_id == tokenizer.token_id("<|expand|>")
    assert tokenizer.token_id("<|endoftext|>") in tokenizer.end_ids
    assert tokenizer.expand_id in tokenizer.special_ids
    assert dreamon.sampling_defaults["length_candidates"] == 1


def test_a_span_grows_and_shrinks_while_decoding(dreamon):
    expand, end = dreamon.tokenizer.expand_id, dreamon.tokenizer.token_id("<|endoftext|>")
    result, forcing = run(dreamon, {0: [(expand, 0), (expand, -1)], 1: [(end, -1)]}, steps=4,
                          lengths=[8])
    first, second, third = forcing.lengths[:3]
    assert second == first + 2  # two of eight masks became four
    assert third == second - 1  # a deleted position is gone
    assert result.candidates[0].spans[0].mask_tokens == 8 + 2 - 1
    for candidate in result.candidates:
        for span in candidate.spans:
            assert "<|expand|>" not in span.new_text and "<|endoftext|>" not in span.new_text


def test_growth_stops_at_the_budget(dreamon):
    expand = dreamon.tokenizer.expand_id
    plan = {call: [(expand, 0)] for call in range(40)}  # the model always wants to expand
    result, forcing = run(dreamon, plan, expand_budget=3)
    assert max(forcing.lengths) == forcing.lengths[0] + 3
    assert result.candidates[0].spans[0].mask_tokens == 4 + 3
    assert "<|expand|>" not in result.candidates[0].text


def test_zero_budget_keeps_the_length(dreamon):
    expand = dreamon.tokenizer.expand_id
    result, forcing = run(dreamon, {0: [(expand, 0)]}, expand_budget=0)
    assert len(set(forcing.lengths)) == 1
    assert "<|expand|>" not in result.candidates[0].text


def test_progress_and_repair_after_expanding(dreamon):
    expand = dreamon.tokenizer.expand_id
    events = []
    forcing = Forcing(dreamon.model, {0: [(expand, 0)]}, controlled(dreamon))
    saved, dreamon.model = dreamon.model, forcing
    cursor = SAMPLE.encode().index(b"return self.price")
    try:
        result = dreamon.infill(
            InfillRequest(SAMPLE, "python", [ByteRange(cursor, cursor)],
                          options=dreamon.default_options(lengths=[3], steps=3, repair_rounds=2)),
            progress=events.append)
    finally:
        dreamon.model = saved
    assert events and events[0].step == 1
    assert result.candidates and result.steps >= 3
    assert "<|" not in SAMPLE
    assert all("<|" not in span.new_text for c in result.candidates for span in c.spans)
