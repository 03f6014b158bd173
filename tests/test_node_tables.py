"""Node tables: valid data, and every node type each installed grammar can produce is covered."""

import json

import pytest

from engine.syntax import get_grammar
from engine.syntax.languages import SPECS
from engine.syntax.node_tables import (TableError, grammar_node_types, load_table,
                                       parse_table)

TABLES = sorted({spec.table for spec in SPECS})


def _grammar_types(table_name):
    named, anonymous = set(), set()
    for spec in SPECS:
        if spec.table == table_name:
            n, a = grammar_node_types(get_grammar(spec.name).language)
            named |= n
            anonymous |= a
    return named, anonymous


@pytest.mark.parametrize("name", TABLES)
def test_table_covers_every_node_type_of_its_grammar(name):
    table = load_table(name)
    named, anonymous = _grammar_types(name)
    assert not named - table.covered(), "named node types without a tier"
    assert not anonymous - table.covered(), "tokens without a tier"


@pytest.mark.parametrize("name", TABLES)
def test_table_names_only_node_types_the_grammar_has(name):
    table = load_table(name)
    named, anonymous = _grammar_types(name)
    known = named | anonymous
    for group in ("keywords", "identifiers", "statements", "expressions", "bodies"):
        assert not getattr(table, group) - known, f"{group} lists unknown node types"
    assert not table.covered() - known


@pytest.mark.parametrize("name", TABLES)
def test_roles_are_consistent(name):
    table = load_table(name)
    assert table.keywords.isdisjoint(table.identifiers)
    assert table.bodies, "a language needs at least one body type for runs of statements"
    assert table.statements and table.expressions


def test_every_language_compiles_and_parses_a_line():
    snippets = {"python": b"x = 1\n", "javascript": b"let x = 1;\n", "typescript": b"let x: number = 1;\n",
                "tsx": b"const a = <b/>;\n", "go": b"package p\nvar x = 1\n",
                "rust": b"fn main() { let x = 1; }\n", "java": b"class A { int x = 1; }\n"}
    assert set(snippets) == {spec.name for spec in SPECS}
    for language, code in snippets.items():
        grammar = get_grammar(language)
        assert not grammar.parse(code).root_node.has_error, language
        assert grammar.table.tier.shape == grammar.table.anchor.shape


def _raw():
    return json.loads(json.dumps({
        "language": "x",
        "tiers": {"skeleton": ["("], "data": ["call"], "cond": ["if"], "ctrl": ["for"], "default": ["module"]},
        "inherit": ["identifier"], "keyword": ["if"], "identifier": ["identifier"],
        "statement": ["if"], "expression": ["call"], "body": ["block"],
    }))


def test_parse_table_accepts_a_valid_table():
    table = parse_table("x", _raw())
    assert table.tier_name("call") == "data"
    assert table.tier_name("identifier") == "inherit"
    assert table.tier_name("lambda") == "unknown"


@pytest.mark.parametrize("breakage, message", [
    (lambda t: t.pop("body"), "lacks keys"),
    (lambda t: t["tiers"].pop("ctrl"), "tiers must be exactly"),
    (lambda t: t["tiers"]["data"].append("("), "listed under two tiers"),
    (lambda t: t["inherit"].append("identifier"), "lists a node type twice"),
    (lambda t: t.__setitem__("keyword", "if"), "must be a list"),
])
def test_parse_table_rejects_malformed_tables(breakage, message):
    raw = _raw()
    breakage(raw)
    with pytest.raises(TableError, match=message):
        parse_table("x", raw)


def test_unknown_table_name():
    with pytest.raises(TableError, match="no node table"):
        load_table("cobol")
