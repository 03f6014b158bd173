"""Selection -> masked spans: the documented rules on Python, and properties on every language.

Properties (hypothesis): spans are whole nodes, cover the selection, are sorted and never overlap.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import EmptySourceError, InvalidRangeError, NothingToInfillError
from engine.syntax import SourceDocument, masked_spans, span_for_range

from .paths import DATA, ROOT

CODE = b'''import os


def f(x):
    """Doc."""
    a = x + 1  # note

    if a > 2:
        return a * 2
    else:
        print("small", a)
    return f(a)
'''


@pytest.fixture
def doc():
    return SourceDocument(CODE, "python")


def at(text: bytes, offset: int = 0) -> int:
    return CODE.index(text) + offset


def test_cursor_picks_the_enclosing_statement(doc):
    span = span_for_range(doc, at(b"x + 1"), at(b"x + 1"))
    assert span.kind == "statements"
    assert span.node_types == ("expression_statement",)
    assert span.text == "a = x + 1"
    assert (span.start_line, span.end_line) == (6, 6)
    assert span.indent == "    "
    assert span.parent_type == "block"


def test_cursor_on_a_compound_statement_header_picks_the_whole_statement(doc):
    span = span_for_range(doc, at(b"a > 2"), at(b"a > 2"))
    assert span.node_types == ("if_statement",)
    assert span.text.startswith("if a > 2:") and span.text.endswith('print("small", a)')


def test_cursor_on_whitespace_looks_at_the_code_it_touches(doc):
    after_statement = at(b"a = x + 1") + len(b"a = x + 1")  # just after the token
    assert span_for_range(doc, after_statement, after_statement).text == "a = x + 1"
    indentation = at(b"    return f(a)")  # column 0 of an indented line
    assert span_for_range(doc, indentation, indentation).text == "return f(a)"


def test_cursor_on_blank_line_is_an_error_in_node_mode(doc):
    blank = at(b"\n\n    if") + 1
    with pytest.raises(NothingToInfillError, match="blank line"):
        span_for_range(doc, blank, blank)


def test_selection_inside_expression_grows_to_smallest_expression(doc):
    span = span_for_range(doc, at(b"x + 1", 2), at(b"x + 1", 5))
    assert span.kind == "expression"
    assert span.node_types == ("binary_operator",)
    assert span.text == "x + 1"
    argument = span_for_range(doc, at(b'"small"', 2), at(b'"small"', 4))
    assert argument.kind == "expression" and argument.text == '"small"'


def test_expression_that_is_its_whole_statement_counts_as_the_statement(doc):
    span = span_for_range(doc, at(b'print("small", a)'), at(b'print("small", a)', 17))
    assert span.kind == "statements" and span.node_types == ("expression_statement",)


def test_selection_cutting_through_statements_grows_to_a_sibling_run(doc):
    span = span_for_range(doc, at(b"a = x", 2), at(b"return a * 2", 3))
    assert span.kind == "statements"
    assert span.node_types == ("expression_statement", "comment", "if_statement")
    assert span.text.startswith("a = x + 1") and span.text.endswith('print("small", a)')
    assert span.parent_type == "block"


def test_whole_line_selection_is_trimmed(doc):
    start = at(b"    a = x")
    end = at(b"\n\n    if") + 1  # includes the trailing newline and the comment
    span = span_for_range(doc, start, end)
    assert span.node_types == ("expression_statement", "comment")


def test_selection_across_top_level_definitions(doc):
    span = span_for_range(doc, at(b"os"), at(b"def f", 3))
    assert span.parent_type == "module"
    assert span.node_types == ("import_statement", "function_definition")


def test_block_mode_picks_the_body_of_the_enclosing_compound(doc):
    in_if = span_for_range(doc, at(b"return a * 2"), at(b"return a * 2"), mode="block")
    assert in_if.kind == "body" and in_if.text == "return a * 2"
    in_function = span_for_range(doc, at(b"a = x"), at(b"a = x"), mode="block")
    assert in_function.text.startswith('"""Doc."""') and in_function.text.endswith("return f(a)")
    assert in_function.start_line == 5 and in_function.end_line == 12


def test_block_mode_on_a_header_picks_that_statements_body(doc):
    header = span_for_range(doc, at(b"def f"), at(b"def f"), mode="block")
    assert header.text.startswith('"""Doc."""')
    on_else = span_for_range(doc, at(b"else:"), at(b"else:"), mode="block")
    assert on_else.text == 'print("small", a)'


def test_block_mode_outside_any_function_is_an_error(doc):
    with pytest.raises(NothingToInfillError, match="no function or compound statement"):
        span_for_range(doc, at(b"import"), at(b"import"), mode="block")


def test_block_mode_on_a_blank_line_inside_a_body(doc):
    blank = at(b"\n\n    if") + 1
    span = span_for_range(doc, blank, blank, mode="block")
    assert span.kind == "body" and span.text.startswith('"""Doc."""')


def test_several_ranges_give_sorted_spans_and_overlaps_merge(doc):
    spans = masked_spans(doc, [(at(b"return f"), at(b"return f")), (at(b"a = x"), at(b"a = x"))])
    assert [s.text for s in spans] == ["a = x + 1", "return f(a)"]
    merged = masked_spans(doc, [(at(b"print"), at(b"print")), (at(b"if a"), at(b"if a"))])
    assert len(merged) == 1 and merged[0].node_types == ("if_statement",)
    partial = masked_spans(doc, [(at(b"a = x"), at(b"if a")), (at(b"# note"), at(b"return f", 3))])
    assert len(partial) == 1
    assert partial[0].node_types == ("expression_statement", "comment", "if_statement",
                                     "return_statement")


def test_non_ascii_text_gives_byte_exact_spans():
    code = "def g():\n    s = 'héllo 😀'\n    return s\n".encode()
    doc = SourceDocument(code, "python")
    start = code.index("'héllo".encode())
    span = span_for_range(doc, start + 1, start + 4)  # "hé": é is two bytes
    assert span.text == "'héllo 😀'"
    assert code[span.start_byte:span.end_byte].decode() == span.text


@pytest.mark.parametrize("bounds, message", [
    ((5, 2), "reversed"), ((-1, 2), "outside"), ((0, 10_000), "outside"),
])
def test_invalid_ranges_are_typed_errors(doc, bounds, message):
    with pytest.raises(InvalidRangeError, match=message):
        masked_spans(doc, [bounds])


def test_range_inside_a_multibyte_character_is_an_error():
    doc = SourceDocument("x = 'é'\n", "python")
    with pytest.raises(InvalidRangeError, match="multi-byte"):
        masked_spans(doc, [(6, 6)])


def test_no_ranges_and_unknown_mode_are_errors(doc):
    with pytest.raises(InvalidRangeError, match="no range"):
        masked_spans(doc, [])
    with pytest.raises(ValueError, match="mode"):
        masked_spans(doc, [(0, 1)], mode="line")


def test_empty_and_blank_documents_are_typed_errors():
    for code in (b"", b"\n\n   \n"):
        with pytest.raises(EmptySourceError):
            masked_spans(SourceDocument(code, "python"), [(0, 0)])


# -- properties on every language ---------------------------------------------------------------

SAMPLES = {
    "python": (ROOT / "examples" / "sample.py").read_bytes(),
    "javascript": (DATA / "sample.js").read_bytes(),
    "tsx": (DATA / "sample.tsx").read_bytes(),
    "go": (DATA / "sample.go").read_bytes(),
    "rust": (DATA / "sample.rs").read_bytes(),
    "java": (DATA / "Sample.java").read_bytes(),
}
DOCS = {name: SourceDocument(code, name) for name, code in SAMPLES.items()}


def _is_run_of_whole_nodes(doc, span) -> bool:
    """Whether the span is one node of its type, or a run of consecutive named siblings."""
    bounds = (span.start_byte, span.end_byte)
    node = doc.root.descendant_for_byte_range(*bounds)
    parents = [node]
    while node.byte_range == bounds:  # every node with exactly these bytes, and their parent
        if span.node_types == (node.type,):
            return True
        node = node.parent
        parents.append(node)
    for parent in parents:
        children = parent.named_children
        for i, child in enumerate(children):
            if child.start_byte == span.start_byte:
                run = children[i:i + len(span.node_types)]
                return (tuple(n.type for n in run) == span.node_types
                        and run[-1].end_byte == span.end_byte)
    return False


@st.composite
def selections(draw):
    language = draw(st.sampled_from(sorted(DOCS)))
    doc = DOCS[language]
    count = draw(st.integers(1, 3))
    size = len(doc.text)
    ranges = []
    for _ in range(count):
        a = draw(st.integers(0, size))
        b = draw(st.one_of(st.just(a), st.integers(a, min(size, a + 400))))
        ranges.append((doc.index.byte_offset(a), doc.index.byte_offset(b)))
    mode = draw(st.sampled_from(["node", "block"]))
    return language, ranges, mode


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(selections())
def test_spans_are_whole_nodes_that_cover_the_selection_and_never_overlap(case):
    language, ranges, mode = case
    doc = DOCS[language]
    try:
        spans = masked_spans(doc, ranges, mode)
    except NothingToInfillError:
        return
    assert spans
    for span in spans:
        assert span.start_byte < span.end_byte
        assert doc.source[span.start_byte:span.end_byte].decode() == span.text
        assert _is_run_of_whole_nodes(doc, span), (span.node_types, span.text[:80])
        assert span.start_line == doc.index.line_of_byte(span.start_byte) + 1
    for before, after in zip(spans, spans[1:]):
        assert before.end_byte <= after.start_byte
    if mode == "block":
        assert all(span.kind == "body" for span in spans)
        return  # a cursor in a header gets the body after it: nothing more to cover
    for start, end in ranges:
        for leaf in _leaves_touching(doc.root, start, end):
            inside = any(s.start_byte <= leaf.start_byte and leaf.end_byte <= s.end_byte
                         for s in spans)
            # a body's own braces stay: spans are runs of its statements
            brace = not leaf.is_named and doc.grammar.table.is_body[leaf.parent.kind_id]
            assert inside or brace, (start, end, leaf.type, leaf.byte_range)


def _leaves_touching(node, start, end):
    if node.end_byte <= start or node.start_byte >= end or node.start_byte == node.end_byte:
        return
    if node.child_count == 0:
        yield node
    for child in node.children:
        yield from _leaves_touching(child, start, end)
