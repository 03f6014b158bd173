"""The exact-hole mode: ranges taken verbatim (an insertion point is an empty range), the canvas
cut at their edges, validity by parsing only, and no removed text anywhere in the canvas."""

import pytest
import torch

import engine.infill.engine as engine_module
import engine.model as em
from engine.errors import InvalidRangeError
from engine.infill import (EXACT_MODE, ByteRange, InfillEngine, InfillOptions, InfillRequest,
                           InfillTokenizer, InvalidRequestError, build_canvas, exact_spans,
                           from_msgpack, length_candidates, to_msgpack)
from engine.infill.candidates import DecodedRow, judge, repair_positions
from engine.syntax import SourceDocument
from engine.tokens import load_tokenizer
from training.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

from .paths import EXAMPLES, ROOT

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PROMPT = "def total(items):\n    count = len(items)\n"
SUFFIX = "    return count * 2\n\n\nprint(total([1, 2]))\n"
SECRET = "zebra_quokka_checksum = 918273"  # a removed line no other text of the file holds
WITH_SECRET = PROMPT + "    " + SECRET + "\n" + SUFFIX


def contains_run(row: list[int], run: list[int]) -> bool:
    """Whether `run` occurs as a contiguous subsequence of `row`."""
    return any(row[i:i + len(run)] == run for i in range(len(row) - len(run) + 1))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "engine").rglob("*.py"))]
    texts.append((EXAMPLES / "sample.py").read_text(encoding="utf-8"))
    out = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(train_tokenizer(texts, TokenizerConfig(vocab_size=600)), out)
    return load_tokenizer(out)


@pytest.fixture(scope="module")
def engine(tokenizer):
    torch.manual_seed(0)
    model = em.AnchoredDiffusionModel(em.config_from_preset("tiny", len(tokenizer))).eval()
    return InfillEngine(model, tokenizer, device="cpu", name="tiny")


def exact(text: str, ranges: list[tuple[int, int]], **options) -> InfillRequest:
    options = {"steps": 2, "repair_rounds": 0, "length_hint": False, **options}
    return InfillRequest(text=text, language="python", mode=EXACT_MODE,
                         ranges=[ByteRange(a, b) for a, b in ranges],
                         options=InfillOptions(**options))


def test_an_insertion_point_stays_a_point(engine):
    text = PROMPT + SUFFIX
    point = len(PROMPT.encode())
    result = engine.infill(exact(text, [(point, point)]))
    for candidate in result.candidates:
        (edit,) = candidate.spans
        assert (edit.start_byte, edit.end_byte, edit.old_text) == (point, point, "")
        assert edit.kind == "statements"
        # the new file is exactly prefix + middle + suffix: no context byte was rewritten
        assert candidate.text == PROMPT + edit.new_text + SUFFIX
        tree = SourceDocument(candidate.text, "python").tree
        assert candidate.parses == (not tree.root_node.has_error)
    # node mode would have grown the cursor to the statement it touches
    node = engine.infill(InfillRequest(text=text, language="python",
                                       ranges=[ByteRange(point, point)],
                                       options=InfillOptions(steps=2, repair_rounds=0)))
    assert node.best.spans[0].old_text.strip() == "return count * 2"


def test_a_range_is_taken_verbatim(engine):
    text = PROMPT + SUFFIX
    start = text.encode().index(b"len(items)") + 3  # "(items)\n    ret": cuts through nodes
    end = text.encode().index(b"return") + 3
    result = engine.infill(exact(text, [(start, end)]))
    edit = result.best.spans[0]
    assert (edit.start_byte, edit.end_byte) == (start, end)
    assert edit.old_text == "(items)\n    ret"
    data = text.encode()
    assert result.best.text.encode() == data[:start] + edit.new_text.encode() + data[end:]


def test_zero_width_without_length_hint_uses_the_default_lengths(engine):
    text = PROMPT + SUFFIX
    point = len(PROMPT.encode())
    result = engine.infill(exact(text, [(point, point)], length_candidates=3, candidates=3))
    assert result.timings.batch == 3
    assert {c.spans[0].mask_tokens for c in result.candidates} <= {24, 48, 12}
    # a hint has nothing to count at an insertion point: the kind's default sizes again
    assert length_candidates("statements", 0, 3, hint=True) == [24, 48, 12]
    hinted = engine.infill(exact(text, [(point, point)], length_hint=True))
    assert hinted.candidates


def test_the_removed_text_is_absent_from_the_canvas(engine, tokenizer, monkeypatch):
    wrapped = InfillTokenizer(tokenizer)
    start = WITH_SECRET.encode().index(SECRET.encode())
    end = start + len(SECRET)
    # the secret's tokens as they appear in the whole file (what a leak would put there)
    ids, offsets = wrapped.encode(WITH_SECRET)
    inside = [int(i) for i, (a, b) in zip(ids, offsets) if a >= start and b <= end]
    assert len(inside) >= 5 and contains_run(ids.tolist(), inside)  # the check can see a leak

    canvases = []
    real = engine_module.build_canvas

    def spy(*args, **kwargs):
        canvas = real(*args, **kwargs)
        canvases.append(canvas.input_ids.clone())  # as the model first sees it (sampling
        return canvas  # writes into the canvas's own tensor on a CPU)

    monkeypatch.setattr(engine_module, "build_canvas", spy)
    engine.infill(exact(WITH_SECRET, [(start, end)], length_candidates=2))
    (ids_seen,) = canvases
    for row in ids_seen.tolist():
        assert not contains_run(row, inside)
        assert "zebra" not in wrapped.decode(row) and "918273" not in wrapped.decode(row)
        assert not any(token in row for token in set(inside) - set(_context_ids(wrapped)))
    # the span's slot is all masks, its edges exactly the range
    doc = SourceDocument(WITH_SECRET, "python")
    canvas = build_canvas(doc, exact_spans(doc, [(start, end)]), wrapped, budget=1024,
                          length_count=2, length_hint=False, cut_at_spans=True)
    assert torch.equal(canvas.input_ids, ids_seen)
    assert canvas.regions == [(start, end)]
    (slot_start, length), = canvas.slots[0]
    assert bool((ids_seen[0, slot_start:slot_start + length] == wrapped.mask_id).all())


def _context_ids(wrapped: InfillTokenizer) -> list[int]:
    """Token ids the context of WITH_SECRET holds (tokenized as the exact canvas does)."""
    before, _, after = WITH_SECRET.partition(SECRET)
    return wrapped.encode(before)[0].tolist() + wrapped.encode(after)[0].tolist()


def test_exact_canvas_tokens_are_the_context_pieces(tokenizer):
    wrapped = InfillTokenizer(tokenizer)
    text = PROMPT + SUFFIX
    point = len(PROMPT.encode())
    doc = SourceDocument(text, "python")
    canvas = build_canvas(doc, exact_spans(doc, [(point, point)]), wrapped, budget=512,
                          length_count=1, length_hint=False, cut_at_spans=True)
    (slot_start, length), = canvas.slots[0]
    row = canvas.input_ids[0].tolist()
    assert row[:slot_start] == wrapped.encode(PROMPT)[0].tolist()
    assert row[slot_start + length:] == wrapped.encode(SUFFIX)[0].tolist()
    assert canvas.old_tokens == [0] and canvas.regions == [(point, point)]


def test_validity_is_parsing_only(tokenizer):
    wrapped = InfillTokenizer(tokenizer)
    text = "x = f(a + b)\n"
    doc = SourceDocument(text, "python")
    start = text.index("a + b")
    spans = exact_spans(doc, [(start, start + len("a + b"))])
    canvas = build_canvas(doc, spans, wrapped, budget=64, length_count=1, length_hint=False,
                          cut_at_spans=True)

    def decoded(new: str) -> DecodedRow:
        return judge(doc, canvas, DecodedRow(0, [new], [[]], [[]]), kind_rule=False)

    assert decoded("a, b").valid  # two arguments, not one expression: still a parsing file
    assert not decoded("a +").valid
    assert not decoded("a\x00").valid  # garbage is never valid
    # with the kind rule an exact hole (kind statements) filled by an expression fails
    assert not judge(doc, canvas, DecodedRow(0, ["a, b"], [[]], [[]])).valid


def test_an_exact_hole_left_empty_in_a_python_block_is_not_valid(tokenizer):
    """Exact holes have no kind rule, so the file's syntax is all that judges them: a body
    decoded to nothing (all pads) leaves `def total(items):` with an empty block, which
    tree-sitter accepts and CPython does not. It is invalid, and repair remasks the span."""
    wrapped = InfillTokenizer(tokenizer)
    text = "def total(items):\n    return len(items)\n\n\nprint(total([1]))\n"
    doc = SourceDocument(text, "python")
    start = text.index("return")
    spans = exact_spans(doc, [(start, text.index("\n\n\n"))])
    canvas = build_canvas(doc, spans, wrapped, budget=64, length_count=1, lengths=[4],
                          cut_at_spans=True)
    (slot, length), = canvas.slots[0]
    row = judge(doc, canvas, DecodedRow(0, [""], [[]], [[]]), kind_rule=False)
    assert not row.parses and not row.valid and [e.kind for e in row.errors] == ["empty"]
    logp = torch.zeros(canvas.input_ids.shape)
    assert repair_positions(canvas, row, logp)  # the span's slot, not nothing
    assert judge(doc, canvas, DecodedRow(0, ["return 0"], [[]], [[]]), kind_rule=False).valid


def test_ranges_merge_and_bad_ranges_are_refused():
    doc = SourceDocument(PROMPT + SUFFIX, "python")
    spans = exact_spans(doc, [(10, 10), (10, 10), (4, 8), (8, 9), (30, 31)])
    assert [(s.start_byte, s.end_byte) for s in spans] == [(4, 9), (10, 10), (30, 31)]
    assert spans[0].text == (PROMPT + SUFFIX)[4:9]
    with pytest.raises(InvalidRangeError, match="outside"):
        exact_spans(doc, [(0, 10_000)])
    with pytest.raises(InvalidRangeError, match="reversed"):
        exact_spans(doc, [(5, 4)])
    with pytest.raises(InvalidRangeError, match="multi-byte"):
        exact_spans(SourceDocument("s = 'é'\n", "python"), [(6, 6)])


def test_the_request_knows_the_mode():
    request = exact(PROMPT + SUFFIX, [(3, 3)])
    assert request.check() is request
    assert from_msgpack(InfillRequest, to_msgpack(request)) == request
    with pytest.raises(InvalidRequestError, match="exact"):
        InfillRequest(text="x = 1\n", language="python", ranges=[ByteRange(0, 0)],
                      mode="verbatim").check()
    with pytest.raises(InvalidRequestError, match="keep_anchors"):
        exact(PROMPT, [(3, 3)], keep_anchors=True).check()


def test_an_empty_document_can_be_written_whole(engine):
    result = engine.infill(exact("", [(0, 0)], length_candidates=1))
    assert result.best.text == result.best.spans[0].new_text
