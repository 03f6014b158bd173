"""The infill engine: requests and results over msgpack, the canvas and its length rule, the
sampler's orders and schedule, repair, cancellation, and the errors a caller can meet."""

import dataclasses

import pytest
import torch
from transformers import PreTrainedTokenizerFast

import engine.model as em
from engine.errors import InvalidRangeError
from engine.infill import (ByteRange, DeviceUnavailableError, InfillCancelled, InfillEngine,
                           InfillOptions, InfillRequest, InfillResult, InfillTokenizer,
                           InvalidRequestError, MissingMaskTokenError, SpanOutsideCanvasError,
                           build_canvas, from_msgpack, length_candidates, to_msgpack)
from engine.infill.candidates import decode_row, judge
from engine.infill.sampler import DiffusionSampler, SamplerState
from engine.model.adapter import ModelNotFoundError
from engine.syntax import SourceDocument, masked_spans
from engine.tokens import SPECIAL_TOKENS, load_tokenizer
from training.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

from .paths import EXAMPLES, ROOT

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SAMPLE = (EXAMPLES / "sample.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "engine").rglob("*.py"))]
    out = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(train_tokenizer(texts + [SAMPLE], TokenizerConfig(vocab_size=600)), out)
    return load_tokenizer(out)


def tiny_model(vocab: int, seed: int = 0, **overrides) -> em.AnchoredDiffusionModel:
    torch.manual_seed(seed)
    return em.AnchoredDiffusionModel(em.config_from_preset("tiny", vocab, **overrides)).eval()


@pytest.fixture(scope="module")
def engine(tokenizer):
    return InfillEngine(tiny_model(len(tokenizer)), tokenizer, device="cpu", name="tiny")


def at(text: str, needle: str, offset: int = 0) -> int:
    """Byte offset of `needle` in `text`, plus `offset` bytes."""
    return text.encode("utf-8").index(needle.encode("utf-8")) + offset


def request(text: str = SAMPLE, ranges=None, **options) -> InfillRequest:
    ranges = ranges or [ByteRange(at(text, "return self.price"), at(text, "return self.price"))]
    return InfillRequest(text=text, language="python", ranges=ranges,
                         options=InfillOptions(**options))


# --- request and result ------------------------------------------------------------------------

def test_result_round_trips_through_msgpack(engine):
    result = engine.infill(request(steps=4, repair_rounds=0))
    data = to_msgpack(result)
    assert from_msgpack(InfillResult, data) == result
    req = request(lengths=[5, 9], keep_anchors=False)
    assert from_msgpack(InfillRequest, to_msgpack(req)) == req


@pytest.mark.parametrize("data", [b"\xc1", b"\x93\x01\x02", b"\x81\xa3bad\x01", b""])
def test_malformed_msgpack_is_a_clear_error(data):
    with pytest.raises(InvalidRequestError):
        from_msgpack(InfillRequest, data)


@pytest.mark.parametrize("field, value", [("steps", 0), ("temperature", -1.0), ("top_p", 0.0),
                                          ("order", "random"), ("threshold", 1.5),
                                          ("remask", 1.0), ("lengths", []),
                                          ("candidates", 0), ("context_tokens", 4)])
def test_invalid_options_name_the_field(engine, field, value):
    with pytest.raises(InvalidRequestError, match=field):
        engine.infill(request(**{field: value}))


def test_no_ranges_and_bad_ranges(engine):
    with pytest.raises(InvalidRequestError, match="ranges is empty"):
        engine.infill(InfillRequest(text=SAMPLE, language="python", ranges=[]))
    with pytest.raises(InvalidRangeError):
        engine.infill(request(ranges=[ByteRange(0, len(SAMPLE.encode()) + 10)]))


# --- canvas and length ---------------------------------------------------------------------------

def test_length_rule():
    assert length_candidates("statements", 10, 3, hint=True) == [14, 19, 10]
    assert length_candidates("statements", 10, 3, hint=False) == [24, 48, 12]
    assert length_candidates("expression", 999, 2, hint=False) == [12, 24]  # no peeking
    assert length_candidates("body", 10, 3, hint=True, lengths=[7, 7, 3]) == [7, 3]


def test_canvas_layout(tokenizer):
    wrapped = InfillTokenizer(tokenizer)
    doc = SourceDocument(SAMPLE, "python")
    spans = masked_spans(doc, [(at(SAMPLE, "return self.price"),) * 2])
    canvas = build_canvas(doc, spans, wrapped, budget=128, length_count=3, length_hint=True)
    assert canvas.rows == 3
    assert canvas.prefix_tokens + canvas.suffix_tokens + max(n for (_, n), in canvas.slots) <= 128
    assert canvas.prefix_tokens >= canvas.suffix_tokens  # two thirds go before the span
    a, b = canvas.regions[0]
    assert a <= spans[0].start_byte and b >= spans[0].end_byte
    for row, ((start, length),) in enumerate(canvas.slots):
        ids = canvas.input_ids[row]
        assert bool((ids[start:start + length] == wrapped.mask_id).all())
        assert int(canvas.editable[row].sum()) == length
        # the context around the slot is the same in every row
        assert torch.equal(ids[:start], canvas.input_ids[0][:start])


def test_context_budget_splits_between_prefix_and_suffix(tokenizer):
    wrapped = InfillTokenizer(tokenizer)
    doc = SourceDocument(SAMPLE, "python")
    # the first statement of the file: no prefix to speak of, so the suffix takes the budget
    spans = masked_spans(doc, [(0, 0)])
    canvas = build_canvas(doc, spans, wrapped, budget=96, length_count=1, length_hint=True)
    assert canvas.prefix_tokens == 0
    assert canvas.suffix_tokens == 96 - canvas.slots[0][0][1]


def test_spans_that_do_not_fit_the_canvas(engine):
    with pytest.raises(SpanOutsideCanvasError, match="contextTokens"):
        engine.infill(request(ranges=[ByteRange(0, len(SAMPLE.encode()))], context_tokens=32))
    far = [ByteRange(at(SAMPLE, "name: str"), at(SAMPLE, "name: str")),
           ByteRange(len(SAMPLE.encode()) - 3, len(SAMPLE.encode()) - 3)]
    with pytest.raises(SpanOutsideCanvasError):
        engine.infill(request(ranges=far, context_tokens=64))


def test_keep_anchors_keeps_keywords_and_identifiers(engine, tokenizer):
    result = engine.infill(request(keep_anchors=True, steps=4, repair_rounds=0))
    new = result.candidates[0].spans[0].new_text
    for word in ("return", "self", "price", "quantity"):
        assert word in new


# --- the engine ---------------------------------------------------------------------------------

def test_cursor_infills_the_enclosing_statement(engine):
    result = engine.infill(request(steps=6))
    best = result.best
    (edit,) = best.spans
    assert edit.old_text.strip() == "return self.price * self.quantity"
    source = SAMPLE.encode()
    new = best.text.encode()
    assert new[:edit.start_byte] == source[:edit.start_byte]
    assert new[len(new) - (len(source) - edit.end_byte):] == source[edit.end_byte:]
    assert result.steps >= 1 and result.timings.forward_passes >= result.steps
    assert result.valid == any(c.valid for c in result.candidates)
    if not result.valid:
        assert "no valid infill" in result.message


def test_several_spans_in_one_run(engine):
    ranges = [ByteRange(at(SAMPLE, "return self.price"), at(SAMPLE, "return self.price")),
              ByteRange(at(SAMPLE, "name: str"), at(SAMPLE, "name: str"))]
    result = engine.infill(request(ranges=ranges, steps=6, repair_rounds=0))
    best = result.best
    assert [e.old_text.strip() for e in best.spans] == ["name: str",
                                                        "return self.price * self.quantity"]
    assert result.timings.batch == 3  # one batch, all spans in every row
    expected = SAMPLE.encode()
    for edit in reversed(best.spans):
        expected = expected[:edit.start_byte] + edit.new_text.encode() + expected[edit.end_byte:]
    assert best.text.encode() == expected


def test_same_seed_same_output(engine):
    first = engine.infill(request(seed=3, temperature=0.8, steps=5))
    again = engine.infill(request(seed=3, temperature=0.8, steps=5))
    other = engine.infill(request(seed=4, temperature=0.8, steps=5))
    assert [c.text for c in first.candidates] == [c.text for c in again.candidates]
    assert [c.text for c in first.candidates] != [c.text for c in other.candidates]


def test_progress_and_cancellation(engine):
    events = []
    engine.infill(request(steps=5, repair_rounds=0), progress=events.append)
    assert [e.step for e in events] == list(range(1, len(events) + 1))
    assert events[-1].step == events[-1].total
    assert "\u2591" in events[0].spans[0] and "\u2591" not in events[-1].spans[0]

    seen = []
    with pytest.raises(InfillCancelled):
        engine.infill(request(steps=8), progress=seen.append, cancelled=lambda: len(seen) >= 2)
    assert len(seen) == 2
    assert engine.infill(request(steps=2, repair_rounds=0)).candidates  # still usable


def test_wrong_device_and_missing_mask_token(tokenizer):
    model = tiny_model(len(tokenizer))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="no CUDA"):
            InfillEngine(model, tokenizer, device="cuda")
    with pytest.raises(DeviceUnavailableError):
        InfillEngine(model, tokenizer, device="tpu")
    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                   pad_token=SPECIAL_TOKENS[0])
    with pytest.raises(MissingMaskTokenError, match="no mask token"):
        InfillEngine(model, bare, device="cpu")


def test_no_default_model_is_a_clear_error(monkeypatch, tmp_path):
    import engine.infill.engine as module

    monkeypatch.setattr(module, "DEFAULT_MODEL_DIR", tmp_path / "none")
    with pytest.raises(ModelNotFoundError, match="--model"):
        InfillEngine.load(None, device="cpu")


def test_load_a_saved_model(tmp_path, tokenizer):
    em.save_model_and_tokenizer(tiny_model(len(tokenizer)), tokenizer, tmp_path / "m")
    loaded = InfillEngine.load(tmp_path / "m", device="auto")
    assert loaded.device.type in ("cpu", "cuda")
    assert loaded.infill(request(steps=2, repair_rounds=0)).candidates


# --- sampler -------------------------------------------------------------------------------------

class ScriptedDenoiser:
    """A stand-in denoiser with known beliefs: at each position it predicts `targets[pos]` with
    probability `confidence[pos]` (the rest spread evenly), or `wrong` on its first `bad_calls`
    calls. It lets tests check what the sampler does with given beliefs."""

    has_anchor = False
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, targets: torch.Tensor, vocab: int, mask_id: int,
                 confidence: torch.Tensor | None = None, wrong: int | None = None,
                 bad_calls: int = 0):
        self.targets, self.vocab_size, self.mask_token_id = targets, vocab, mask_id
        self.confidence = confidence if confidence is not None else torch.full(
            targets.shape, 0.95)
        self.wrong, self.bad_calls, self.calls = wrong, bad_calls, 0

    def logits(self, input_ids, attention_mask=None, masked=None):
        self.calls += 1
        targets = self.targets.expand_as(input_ids)
        if self.calls <= self.bad_calls:
            targets = torch.full_like(targets, self.wrong)
        conf = self.confidence.expand_as(input_ids)
        rest = (1 - conf) / (self.vocab_size - 1)
        probs = rest.unsqueeze(-1).expand(*input_ids.shape, self.vocab_size).clone()
        probs.scatter_(-1, targets.unsqueeze(-1), conf.unsqueeze(-1))
        logits = probs.log()
        logits[..., self.mask_token_id] = -torch.inf
        return logits

    def anchor_logits(self, *args, **kwargs):
        return None

    def to(self, device):
        return self


def original_canvas(tokenizer, text: str, cursor: int):
    """A one-row canvas whose span slot is exactly the original tokens, and those tokens."""
    wrapped = InfillTokenizer(tokenizer)
    doc = SourceDocument(text, "python")
    spans = masked_spans(doc, [(cursor, cursor)])
    ids, offsets = wrapped.encode(text)
    canvas = build_canvas(doc, spans, wrapped, budget=512, lengths=[0], length_count=1)
    (start, _), = canvas.slots[0]
    a, b = canvas.regions[0]
    first = int((offsets[:, 0] == a).nonzero()[0][0])
    last = int((offsets[:, 1] == b).nonzero()[0][0]) + 1
    canvas = build_canvas(doc, spans, wrapped, budget=512, lengths=[last - first])
    target = canvas.input_ids.clone()
    target[0, start:start + last - first] = torch.from_numpy(ids[first:last])
    return wrapped, doc, canvas, target


def state_of(canvas, mask_id):
    ids = canvas.input_ids.clone()
    return SamplerState(ids=ids, attention_mask=canvas.attention_mask, editable=canvas.editable,
                        masked=(ids == mask_id) & canvas.editable,
                        logp=torch.zeros(ids.shape))


def test_parallel_decoding_and_schedule(tokenizer):
    cursor = at(SAMPLE, "return self.price")
    wrapped, doc, canvas, target = original_canvas(tokenizer, SAMPLE, cursor)
    n = int(canvas.editable.sum())
    model = ScriptedDenoiser(target, len(tokenizer), wrapped.mask_id)
    # every prediction is above the threshold: one step decodes the whole span
    state = state_of(canvas, wrapped.mask_id)
    DiffusionSampler(model, InfillOptions(threshold=0.9), anchor_classes=None,
                     bracket_delta=None, generator=torch.Generator()).run(state, steps=n)
    assert state.steps == 1 and torch.equal(state.ids, target)
    # nothing above the threshold: the schedule's ceil(masked / steps left) a step (the
    # threshold is on the distribution sampled from: at temperature 1 without top-p, the
    # scripted model's own probabilities)
    state = state_of(canvas, wrapped.mask_id)
    DiffusionSampler(model, InfillOptions(threshold=0.99, temperature=1.0, top_p=1.0),
                     anchor_classes=None,
                     bracket_delta=None, generator=torch.Generator()).run(state, steps=n)
    # (what is drawn at temperature 1 is up to the random stream: 0.95 on each target token)
    assert state.steps == n and not bool(state.masked.any())
    assert bool((state.ids != wrapped.mask_id).all())


def test_anchored_order_decodes_keywords_and_identifiers_first(tokenizer):
    cursor = at(SAMPLE, "return self.price")
    wrapped, doc, canvas, target = original_canvas(tokenizer, SAMPLE, cursor)
    (start, length), = canvas.slots[0]
    # keywords and identifiers predicted slightly less surely than the rest: confidence order
    # takes them last, anchored order first
    classes = torch.from_numpy(wrapped.anchor_classes("python"))
    is_anchor = classes[target] != 2
    assert bool(is_anchor[0, start:start + length].any())
    confidence = torch.where(is_anchor, 0.55, 0.6)
    first = {}
    for anchored in (False, True):
        model = ScriptedDenoiser(target, len(tokenizer), wrapped.mask_id, confidence=confidence)
        state = state_of(canvas, wrapped.mask_id)
        seen = []
        sampler = DiffusionSampler(
            model, InfillOptions(threshold=1.0, temperature=0.0, anchored=anchored),
            anchor_classes=classes if anchored else None, bracket_delta=None,
            generator=torch.Generator(),
            on_step=lambda step, total, s: seen.append(s.masked[0].clone()))
        sampler.run(state, steps=length)
        assert torch.equal(state.ids, target)
        first[anchored] = int((~seen[0][start:start + length]).nonzero()[0][0]) + start
    assert bool(is_anchor[0, first[True]]) and not bool(is_anchor[0, first[False]])


def test_repair_fixes_a_broken_decode(tokenizer):
    """First decode: every token a ')' (the file cannot parse); repair remasks the error regions
    and the (now right) model fills them in."""
    cursor = at(SAMPLE, "return self.price")
    wrapped, doc, canvas, target = original_canvas(tokenizer, SAMPLE, cursor)
    close = tokenizer.convert_tokens_to_ids(")")
    model = ScriptedDenoiser(target, len(tokenizer), wrapped.mask_id, wrong=close, bad_calls=1)
    engine = InfillEngine(model, tokenizer, device="cpu")
    cursor_range = [ByteRange(cursor, cursor)]
    n = int(canvas.editable.sum())
    result = engine.infill(request(ranges=cursor_range, lengths=[n], repair_rounds=3, steps=1,
                                   anchored=False, context_tokens=512))
    best = result.best
    assert result.valid and best.repair_rounds >= 1
    assert best.spans[0].new_text.strip() == "return self.price * self.quantity"

    # with no repair rounds the broken decode is reported, never passed off as valid
    model = ScriptedDenoiser(target, len(tokenizer), wrapped.mask_id, wrong=close, bad_calls=99)
    engine = InfillEngine(model, tokenizer, device="cpu")
    result = engine.infill(request(ranges=cursor_range, lengths=[n], repair_rounds=2, steps=1,
                                   anchored=False, context_tokens=512))
    assert not result.valid and not result.best.parses
    assert "no valid infill" in result.message


def test_judge_reads_pads_as_the_end_of_a_span(tokenizer):
    cursor = at(SAMPLE, "return self.price")
    wrapped, doc, canvas, target = original_canvas(tokenizer, SAMPLE, cursor)
    (start, length), = canvas.slots[0]
    padded = build_canvas(doc, masked_spans(doc, [(cursor, cursor)]), wrapped, budget=512,
                          lengths=[length + 3])
    ids = padded.input_ids.clone()
    ids[0, start:start + length] = target[0, start:start + length]
    ids[0, start + length:start + length + 3] = wrapped.pad_id
    decoded = judge(doc, padded, decode_row(padded, ids, 0, wrapped))
    assert decoded.valid and decoded.new_source == SAMPLE.encode()


def test_options_dataclass_is_plain():
    for f in dataclasses.fields(InfillOptions):
        assert f.type in ("int", "float", "bool", "str", "int | None", "list[int] | None"), f


def test_cached_sampling_matches_full_passes_when_refreshed_every_step(engine):
    """With a refresh every step the cache is exact (rows of one length share one full pass
    exactly), so the cached sampler must decode what the uncached one does."""
    common = dict(lengths=[12], samples=2, temperature=0.0, steps=6, repair_rounds=0,
                  cache_refresh=1)
    cached = engine.infill(request(use_cache=True, **common))
    full = engine.infill(request(use_cache=False, **common))
    assert [c.text for c in cached.candidates] == [c.text for c in full.candidates]
    assert cached.timings.full_passes == full.timings.full_passes  # every step refreshed


def test_the_cache_saves_full_passes(engine):
    result = engine.infill(request(steps=8, repair_rounds=0, cache_refresh=8))
    # one shared full pass for the three length candidates, then cached steps
    assert result.timings.full_passes == 1
    assert result.timings.forward_passes == result.steps + 1


@pytest.mark.parametrize("data", [
    {"text": 5, "language": "python", "ranges": []},
    {"text": "x = 1\n", "language": "python", "ranges": [{"start": "0", "end": 0}]},
    {"text": "x = 1\n", "language": "python", "ranges": [{"start": 0, "end": 0}],
     "options": {"steps": "many"}},
    {"text": "x = 1\n", "language": "python", "ranges": [{"start": 0, "end": 0}],
     "options": {"temperature": float("nan")}},
    {"text": "x = 1\n", "language": "python", "ranges": [{"start": 0, "end": 0}],
     "options": {"keep_anchors": 1}},
])
def test_request_values_of_the_wrong_type(engine, data):
    import msgpack

    request = from_msgpack(InfillRequest, msgpack.packb(data))
    with pytest.raises(InvalidRequestError):
        engine.infill(request)


def test_a_transformers_masked_lm_through_the_engine(tmp_path, tokenizer):
    """A plain masked LM (a tiny random ModernBERT saved with our tokenizer) loads by path and
    infills through full forwards: no cache, since it has no denoise_step."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    torch.manual_seed(0)
    config = ModernBertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=256, local_attention=16, pad_token_id=0,
                              eos_token_id=2, bos_token_id=2, cls_token_id=2, sep_token_id=2,
                              mask_token_id=1)
    ModernBertForMaskedLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = InfillEngine.load(tmp_path, device="cpu")
    assert loaded.max_tokens == 256
    result = loaded.infill(request(steps=3, repair_rounds=0))
    assert result.candidates and result.timings.canvas_tokens <= 256
    assert result.timings.full_passes == result.timings.forward_passes == result.steps


def test_a_model_file_instead_of_its_directory(tmp_path, tokenizer):
    em.save_model_and_tokenizer(tiny_model(len(tokenizer)), tokenizer, tmp_path / "m")
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        with pytest.raises(ModelNotFoundError, match="is a file"):
            InfillEngine.load(tmp_path / "m" / name, device="cpu")


class RowScriptedDenoiser(ScriptedDenoiser):
    """ScriptedDenoiser with one target row per canvas row; a call on fewer rows (the others
    finished) gets the last ones."""

    def logits(self, input_ids, attention_mask=None, masked=None):
        full, self.targets = self.targets, self.targets[-input_ids.shape[0]:]
        try:
            return super().logits(input_ids, attention_mask, masked)
        finally:
            self.targets = full


def test_no_repair_once_enough_candidates_are_valid(tokenizer):
    """Two samples: the model decodes row 0 right and row 1 into ')'s. One candidate asked for:
    row 0 is it, so the broken row is not repaired; two asked for: it is."""
    cursor = at(SAMPLE, "return self.price")
    wrapped, doc, canvas, target = original_canvas(tokenizer, SAMPLE, cursor)
    close = tokenizer.convert_tokens_to_ids(")")
    broken = torch.where(canvas.editable, torch.full_like(target, close), target)
    n = int(canvas.editable.sum())
    for wanted, repaired in ((1, False), (2, True)):
        model = RowScriptedDenoiser(torch.cat([target, broken]), len(tokenizer),
                                    wrapped.mask_id, confidence=torch.full(target.shape, 0.95))
        engine = InfillEngine(model, tokenizer, device="cpu")
        result = engine.infill(request(ranges=[ByteRange(cursor, cursor)], lengths=[n],
                                       samples=2, steps=1, anchored=False, temperature=0.0,
                                       context_tokens=512, candidates=wanted, repair_rounds=2))
        assert result.valid
        assert result.best.spans[0].new_text.strip() == "return self.price * self.quantity"
        assert (model.calls > 1) == repaired
        assert (result.steps > 1) == repaired


class FirstCallsSay:
    """A model whose first `calls` steps favour `token` everywhere (a broken early decode),
    the wrapped model otherwise; everything else is the wrapped model's."""

    def __init__(self, model, token: int, calls: int):
        self.model, self.token, self.calls, self.count = model, token, calls, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def denoise_step(self, *args, **kwargs):
        logits, anchor_logits, cache = self.model.denoise_step(*args, **kwargs)
        self.count += 1
        if self.count <= self.calls:
            logits = logits.clone()
            logits[..., self.token] += 8.0
        return logits, anchor_logits, cache


def test_a_repair_round_reuses_the_context_of_rows_that_finished_early(tokenizer):
    """The 3-mask row decodes into ')'s and finishes long before the 20-mask one, so it leaves
    the working cache; when repair remasks it, its context keys and values come from the wide
    cache: still one full pass in the whole run."""
    close = tokenizer.convert_tokens_to_ids(")")
    model = FirstCallsSay(tiny_model(len(tokenizer)), close, calls=4)
    engine = InfillEngine(model, tokenizer, device="cpu")
    result = engine.infill(request(lengths=[3, 20], steps=10, repair_rounds=1, candidates=2,
                                   cache_refresh=100, threshold=1.0, temperature=0.0))
    repaired = {c.spans[0].mask_tokens for c in result.candidates if c.repair_rounds}
    assert 3 in repaired  # the precondition: the short row was broken
    assert result.steps > 10  # a repair round ran
    assert result.timings.full_passes == 1
    assert result.timings.forward_passes == result.steps + 1


@pytest.mark.parametrize("say", [")", "pad"])
def test_keep_anchors_survive_repair_and_pads(tokenizer, say):
    """The model writes ')' (a broken file, so repair remasks the error regions, anchors among
    them) or pads (which end a span elsewhere) between the kept tokens: every keyword and
    identifier of the selection is still in the span, in order."""
    wrapped = InfillTokenizer(tokenizer)
    token = wrapped.pad_id if say == "pad" else tokenizer.convert_tokens_to_ids(")")
    model = FirstCallsSay(tiny_model(len(tokenizer)), token, calls=1000)
    engine = InfillEngine(model, tokenizer, device="cpu")
    result = engine.infill(request(keep_anchors=True, steps=4, repair_rounds=2, threshold=1.0,
                                   temperature=0.0))
    new = result.candidates[0].spans[0].new_text
    words = ("return", "self", "price", "self", "quantity")
    place = 0
    for word in words:
        place = new.find(word, place)
        assert place >= 0, (word, new)
        place += len(word)
    if say == ")":
        assert result.candidates[0].repair_rounds == 2 and not result.valid


def test_ranking_prefers_written_code_to_deletions():
    from engine.infill.candidates import ranked
    from engine.infill.request import Candidate, SpanEdit

    def candidate(new, score, parses=True):
        edit = SpanEdit(start_byte=0, end_byte=5, start_line=1, end_line=1, kind="statements",
                        node_types=["expression_statement"], old_text="x = 1", new_text=new,
                        mask_tokens=4, tokens=len(new))
        return Candidate(text=new, spans=[edit], score=score, parses=parses, same_kind=True,
                         repair_rounds=0)

    deletion, rewrite = candidate("", -0.01), candidate("x = 2", -1.5)
    broken = candidate("x = (", -0.001, parses=False)
    assert ranked([deletion, broken, rewrite]) == [rewrite, deletion, broken]
    assert ranked([candidate("y = 3", -2.0), rewrite])[0] is rewrite  # then the score
