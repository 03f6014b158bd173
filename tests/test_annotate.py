"""Per-token structure: deepest intersecting node, depth, tier, anchor class; unknown types."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidRangeError
from engine.syntax import TIERS, SourceDocument, annotate_tokens
from engine.syntax.languages import Grammar, get_grammar
from engine.syntax.node_tables import compile_table, load_table, parse_table

CODE = 'import os\n\ndef f(x):\n    a = x + 1\n    if a > 2:\n        return "é😀"\n    return a\n'


def regex_tokens(text: str):
    return [m.span() for m in re.finditer(r"\w+|\s+|[^\w\s]", text)]


@pytest.fixture
def annotated():
    doc = SourceDocument(CODE, "python")
    offsets = regex_tokens(CODE)
    rows = annotate_tokens(doc, offsets, unit="char").rows()
    first = {}  # each token text's first occurrence
    for (s, e), row in zip(offsets, rows):
        first.setdefault(CODE[s:e] if CODE[s:e].strip() else repr(CODE[s:e]) + f"@{s}", row)
    return first


def test_keywords_and_identifiers_get_tiers_from_their_statement(annotated):
    assert annotated["import"] == {"node_type": "import", "depth": 2, "tier": "skeleton",
                                   "anchor": "keyword"}
    assert annotated["os"]["tier"] == "skeleton" and annotated["os"]["anchor"] == "identifier"
    assert annotated["def"]["tier"] == "default" and annotated["def"]["anchor"] == "keyword"
    assert annotated["a"]["tier"] == "data" and annotated["a"]["anchor"] == "identifier"
    assert annotated["if"] == {"node_type": "if", "depth": 4, "tier": "cond", "anchor": "keyword"}
    assert annotated["return"]["tier"] == "ctrl" and annotated["return"]["anchor"] == "keyword"
    assert annotated[">"]["tier"] == "cond" and annotated[">"]["anchor"] == "other"


def test_punctuation_and_constants_are_skeleton(annotated):
    for token in ("(", ")", ":", "1", "2"):
        assert annotated[token]["tier"] == "skeleton", token


def test_whitespace_gets_the_smallest_node_that_contains_it(annotated):
    indent = next(row for key, row in annotated.items() if key.startswith("'\\n    '@"))
    assert indent["node_type"] in {"block", "function_definition"}
    assert indent["anchor"] == "other"


def test_token_over_several_leaves_takes_the_deepest():
    doc = SourceDocument("f(x)\n", "python")
    # "(x" covers "(" (in argument_list) and "x" (identifier, same depth): leftmost wins the tie
    structure = annotate_tokens(doc, [(1, 3)])
    assert structure.node_type(0) == "("
    deeper = SourceDocument("f(a.b)\n", "python")
    structure = annotate_tokens(deeper, [(1, 3)])  # "(a": a, inside the attribute, is deepest
    assert structure.node_type(0) == "identifier"


def test_byte_and_char_offsets_agree_on_non_ascii_text():
    doc = SourceDocument(CODE, "python")
    chars = regex_tokens(CODE)
    data = CODE.encode()
    byte_offsets = [(len(CODE[:s].encode()), len(CODE[:e].encode())) for s, e in chars]
    by_char = annotate_tokens(doc, chars, unit="char")
    by_byte = annotate_tokens(doc, byte_offsets, unit="byte")
    assert by_char.rows() == by_byte.rows()
    assert data[byte_offsets[-1][0]:byte_offsets[-1][1]].decode() == "\n"


def test_byte_level_tokens_inside_a_character_share_its_offsets():
    doc = SourceDocument("s = '😀'\n", "python")
    # two byte-level tokens of one emoji: the same character offsets, overlapping
    structure = annotate_tokens(doc, [(0, 1), (5, 6), (5, 6)], unit="char")
    assert structure.node_types()[1:] == ["string_content", "string_content"]


def test_zero_width_tokens_get_the_root():
    doc = SourceDocument("x = 1\n", "python")
    structure = annotate_tokens(doc, [(0, 0), (0, 1)])
    assert structure.node_types() == ["module", "identifier"]
    assert structure.depths.tolist()[0] == 0


def test_bad_offsets_are_typed_errors():
    doc = SourceDocument("x = 1\n", "python")
    with pytest.raises(InvalidRangeError):
        annotate_tokens(doc, [(0, 99)])
    with pytest.raises(InvalidRangeError):
        annotate_tokens(doc, [(3, 2)])
    with pytest.raises(ValueError):
        annotate_tokens(doc, [(0, 1)], unit="word")


def test_error_nodes_are_default_and_not_unknown():
    doc = SourceDocument("def (:\n", "python")
    structure = annotate_tokens(doc, regex_tokens(doc.text))
    assert "ERROR" in structure.node_types() or doc.root.has_error
    assert not structure.unknown_types


def test_unknown_node_types_fall_to_default_and_are_counted():
    grammar = get_grammar("python")
    raw = {
        "tiers": {"skeleton": [], "data": ["assignment"], "cond": [], "ctrl": [], "default": ["module"]},
        "inherit": ["identifier", "=", "expression_statement"], "keyword": [],
        "identifier": ["identifier"], "statement": [], "expression": [], "body": ["block"],
    }
    partial = compile_table(parse_table("partial", raw), grammar.language)
    crippled = Grammar(grammar.spec)
    crippled.__dict__["table"] = partial  # the cached_property, replaced for this test
    doc = SourceDocument("x = 1\ny = 2\n", crippled)
    structure = annotate_tokens(doc, regex_tokens(doc.text))
    assert structure.unknown_types == {"integer": 2}
    tiers = dict(zip(structure.node_types(), structure.tier_names()))
    assert tiers["integer"] == "default" and tiers["identifier"] == "data"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(CODE)), max_size=30))
def test_any_sorted_offsets_annotate_without_error(cuts):
    doc = SourceDocument(CODE, "python")
    bounds = sorted(set([0, len(CODE), *cuts]))
    offsets = list(zip(bounds, bounds[1:]))
    structure = annotate_tokens(doc, offsets, unit="char")
    assert len(structure) == len(offsets)
    assert (structure.depths >= 0).all()
    assert np.isin(structure.tiers, range(5)).all()


def test_load_table_is_shared():
    assert load_table("python") is load_table("python")


def test_node_spans_give_token_ranges_roles_and_tiers():
    from engine.syntax.annotate import NODE_ROLES

    code = "def f(x):\n    a = x + 1\n    return a\n"
    doc = SourceDocument(code, "python")
    offsets = regex_tokens(code)
    structure = annotate_tokens(doc, offsets, node_spans=True)
    spans = {}
    for first, last, tier, role, depth in structure.node_spans.tolist():
        text = code[offsets[first][0]:offsets[last - 1][1]]
        spans.setdefault((text, NODE_ROLES[role]), (TIERS[tier], depth))
    assert spans[("a = x + 1", "statement")] == ("default", 3)  # expression_statement
    assert spans[("x + 1", "expression")] == ("data", 5)
    assert spans[("return a", "statement")] == ("ctrl", 3)
    assert spans[("a = x + 1\n    return a", "body")] == ("default", 2)
    assert annotate_tokens(doc, offsets).node_spans is None
