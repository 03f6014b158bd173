"""Validity: parsing without ERROR/MISSING, error regions, replacements of the same kind."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidRangeError
from engine.syntax import (MaskedSpan, SourceDocument, check_replacement, error_regions,
                           get_grammar, parses, span_for_range)
from engine.syntax.validity import empty_nodes, reparse

CODE = b"""def f(a):
    total = a + 1
    if a > 2:
        return a * 2
    return g(total, 3)
"""


@pytest.fixture
def doc():
    return SourceDocument(CODE, "python")


def cursor(doc, text: bytes):
    offset = CODE.index(text)
    return span_for_range(doc, offset, offset)


def test_parses():
    assert parses("x = 1\n", "python")
    assert parses(b"", "python")
    assert not parses("x = (1,\n", "python")
    assert not parses("function f( {", "javascript")
    assert parses("fn main() {}", "rust")


def test_an_empty_python_block_does_not_parse():
    """tree-sitter-python accepts a block with nothing in it (CPython does not): the node
    table's `nonempty` rule rejects it; other languages' empty bodies stay valid."""
    for text in ("def f():\n\nx = 1\n", "def f():\n    # only a comment\nx = 1\n",
                 "if x:\nelse:\n    y\n", "for a in b:\n"):
        assert get_grammar("python").parse(text.encode()).root_node.has_error is False
        assert not parses(text, "python"), text
    assert parses("def f():\n    pass  # done\n", "python")
    assert parses("function f() {}\n", "javascript") and parses("fn main() {}", "rust")
    (empty,) = empty_nodes(SourceDocument("def f():\n\nx = 1\n", "python"))
    assert (empty.kind, empty.node_type, empty.start_byte) == ("empty", "block", 8)


def test_an_edit_that_empties_a_block_does_not_parse():
    code = b"def f():\n    return 1\n\n\ndef g():\n    pass\n"
    doc = SourceDocument(code, "python")
    start = code.index(b"return 1")
    span = span_for_range(doc, start, start)
    emptied = check_replacement(doc, span, "")
    assert not emptied.parses and [r.kind for r in emptied.error_regions] == ["empty"]
    assert check_replacement(doc, span, "pass").ok
    # a block that was empty before the edit is the user's, not the edit's
    broken = SourceDocument(b"def h():\n\n" + code, "python")
    offset = broken.source.index(b"return 1")
    assert check_replacement(broken, span_for_range(broken, offset, offset), "return 2").parses


def test_error_regions_locate_errors_and_missing_tokens():
    doc = SourceDocument(b"x = 1\ny = (2 +\nz = 3\n", "python")
    regions = error_regions(doc)
    assert regions and all(r.kind in {"error", "missing"} for r in regions)
    assert all(r.start_byte >= 6 for r in regions)  # line 1 is fine
    assert error_regions(SourceDocument(b"x = 1\n", "python")) == []
    missing = error_regions(SourceDocument(b"class A { void f() { return 1 } }", "java"))
    assert [(r.kind, r.node_type, r.start_byte, r.end_byte) for r in missing] == [
        ("missing", ";", 29, 29)]


def test_error_regions_within_a_range():
    doc = SourceDocument(b"a = (\nb = 1\nc = [\n", "python")
    everything = error_regions(doc)
    late = error_regions(doc, within=(14, 19))
    assert late and len(late) <= len(everything)
    assert all(r.end_byte >= 14 and r.start_byte <= 19 for r in late)


def test_statement_replaced_by_statements_is_same_kind(doc):
    span = cursor(doc, b"total = a")
    check = check_replacement(doc, span, "total = a - 1\n    total *= 2")
    assert check.ok and check.node_types == ("expression_statement", "expression_statement")
    assert check.new_source.startswith(b"def f(a):\n    total = a - 1\n    total *= 2\n")


def test_statement_replaced_by_a_different_statement_kind_is_still_statements(doc):
    check = check_replacement(doc, cursor(doc, b"return g"), "raise ValueError(total)")
    assert check.ok and check.node_types == ("raise_statement",)


def test_statements_replaced_by_a_comment_alone_are_not_the_same_kind(doc):
    """A comment parses where a statement was, but the code is gone; a comment after a
    statement is fine."""
    span = cursor(doc, b"total = a")
    check = check_replacement(doc, span, "# total")
    assert check.parses and not check.same_kind
    assert check_replacement(doc, span, "total = a  # the total").ok


def test_broken_infill_does_not_parse_and_has_error_regions(doc):
    check = check_replacement(doc, cursor(doc, b"total = a"), "total = (a +")
    assert not check.parses and not check.ok
    assert check.error_regions


def test_expression_must_stay_an_expression(doc):
    offset = CODE.index(b"a * 2")
    span = span_for_range(doc, offset, offset + 5)
    assert span.kind == "expression"
    assert check_replacement(doc, span, "max(a, 2)").ok
    not_expression = check_replacement(doc, span, "pass")
    assert not not_expression.same_kind


def test_dedented_infill_leaves_its_block_and_is_rejected(doc):
    check = check_replacement(doc, cursor(doc, b"return a * 2"), "x = 1\ny = 2")
    assert check.parses and not check.same_kind


def test_empty_infill_is_not_a_node(doc):
    check = check_replacement(doc, cursor(doc, b"return a * 2"), "")
    assert not check.same_kind and check.node_types == ()


def test_body_replacement_must_fill_the_body(doc):
    offset = CODE.index(b"total")
    body = span_for_range(doc, offset, offset, mode="block")
    assert body.kind == "body"
    assert check_replacement(doc, body, "return a").ok
    assert check_replacement(doc, body, "x = a\n    return x").ok


def test_span_from_another_document_is_rejected(doc):
    foreign = MaskedSpan(0, 10_000, 1, 1, ("x",), "statements", "block", "", "")
    with pytest.raises(InvalidRangeError):
        check_replacement(doc, foreign, "x")


def test_rust_tail_expression_must_stay_an_expression():
    code = b"fn f(x: u32) -> u32 {\n    let y = x + 1;\n    y * 2\n}\n"
    doc = SourceDocument(code, "rust")
    offset = code.index(b"y * 2")
    span = span_for_range(doc, offset, offset)
    assert span.node_types == ("binary_expression",) and span.parent_type == "block"
    assert check_replacement(doc, span, "y.pow(2)").ok
    assert not check_replacement(doc, span, "let z = 3;").same_kind


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_incremental_reparse_equals_a_full_parse(data):
    doc = SourceDocument(CODE, "python")
    start = data.draw(st.integers(0, len(CODE)))
    old_end = data.draw(st.integers(start, len(CODE)))
    new = data.draw(st.sampled_from([b"", b"x", b"(", b"\n    y = 2\n", b"return 1", b"\xc3\xa9"]))
    source = CODE[:start] + new + CODE[old_end:]
    incremental = reparse(doc, source, start, old_end, start + len(new))
    assert str(incremental.root_node) == str(get_grammar("python").parse(source).root_node)
