"""Syntax layer beyond Python: selection -> spans, validity and per-token structure for
JavaScript, TypeScript, TSX, Go, Rust and Java, on the samples in tests/data."""

import re

import pytest

from engine.syntax import SourceDocument, annotate_tokens, check_replacement, masked_spans, parses

from .paths import DATA

TS_SNIPPET = """\
import { readFile } from "fs";

// Sums items, naïvely ✓
export function total(items: number[], limit: number): number {
  let sum: number = 0;
  const scale = limit * 2;
  for (const x of items) {
    if (x > limit) {
      return -1;
    }
    sum += x * scale;
  }
  return sum as number;
}
"""

# Per language: the sample and the substrings the tests look for. Every text is searched in the
# source (the first occurrence, or the first after the previous anchor), never a byte number.
#   stmt        a statement in a function body, and its node type
#   pair        two consecutive statements of one block, and the block's type
#   expr        (where, selected part, the smallest expression around it, its type)
#   func        (text on the header line, name in it, first and last text of the body)
#   loop        (a loop's header, first and last text of its body)
#   case        (a switch case's label, the case's statements)
#   tokens      (prefix that starts a keyword/identifier token) per role for annotation
LANGUAGES = {
    "javascript": dict(
        source=(DATA / "sample.js").read_bytes(),
        stmt=("const results = [];", "lexical_declaration"),
        stmt_new="let results = [1, 2];",
        pair=('const res = await fetch(url, { method: "GET" });',
              "results.push(res.ok ? await res.json() : undefined);", "statement_block"),
        expr=("results.push(", "ok ? await", "res.ok ? await res.json() : undefined",
              "ternary_expression"),
        expr_as_stmt="return 1;",
        func=("async function load(urls) {", "load", "const results = [];",
              "return results.filter((r) => r !== undefined);"),
        loop=("for (const url of urls) {", "try {", "count++;\n    }"),
        case=("case 0:", "return [];"),
        tokens=dict(cond="if (this.count", ctrl="return this.count", data="results = []",
                    skeleton="import React"),
    ),
    "typescript": dict(
        source=TS_SNIPPET.encode(),
        stmt=("let sum: number = 0;", "lexical_declaration"),
        stmt_new="var sum = items.length;",
        pair=("let sum: number = 0;", "const scale = limit * 2;", "statement_block"),
        expr=("const scale", "mit *", "limit * 2", "binary_expression"),
        expr_as_stmt="let y = 1;",
        func=("export function total(", "total", "let sum: number = 0;",
              "return sum as number;"),
        loop=("for (const x of items) {", "if (x > limit) {", "sum += x * scale;"),
        tokens=dict(cond="if (x > limit)", ctrl="return -1", data="scale = limit",
                    skeleton="import {"),
    ),
    "tsx": dict(
        source=(DATA / "sample.tsx").read_bytes(),
        stmt=("const k = this.key(value);", "lexical_declaration"),
        stmt_new="const k: string = String(value);",
        pair=("const k = this.key(value);",
              "if (!this.data.has(k)) {\n      this.data.set(k, value);\n    }",
              "statement_block"),
        expr=("if (!this.data", "data.has(", "this.data.has(k)", "call_expression"),
        expr_as_stmt="let y = 1;",
        func=("add(value: T): void {", "add", "const k = this.key(value);",
              "this.data.set(k, value);\n    }"),
        loop=("for (let i = 0;", "total += items[i].price ?? 0;",
              "total += items[i].price ?? 0;"),
        case=('case "grid":', 'return <div className="grid">{total}</div>;'),
        tokens=dict(cond="if (!this.data", ctrl="return <div", data="total = 0",
                    skeleton="import React"),
    ),
    "go": dict(
        source=(DATA / "sample.go").read_bytes(),
        stmt=("p.X += dx", "assignment_statement"),
        stmt_new="p.X = p.X * dx",
        pair=("p.X += dx", "p.Y++", "statement_list"),
        expr=("total = total + i", "tal + ", "total + i", "binary_expression"),
        expr_as_stmt="return 1",
        func=("func (p *Point) Move(dx int) {", "Move", "p.X += dx", "p.Y++"),
        loop=("for i, it := range items {", 'if it == ""', "fmt.Println(str.ToUpper(it))"),
        tokens=dict(cond='if it == ""', ctrl="return 0, nil", data="total := 0",
                    skeleton="package demo"),
    ),
    "rust": dict(
        source=(DATA / "sample.rs").read_bytes(),
        stmt=("let mut total: u32 = 0;", "let_declaration"),
        stmt_new="let mut total = items.len() as u32;",
        pair=("let s = fetch().await;", "let c = |a: u32| a + 1;", "block"),
        expr=("else if it.len()", "len() > M", "it.len() > MAX", "binary_expression"),
        expr_as_stmt="let y = 1;",
        func=("async fn run(&mut self", "run", "let mut total: u32 = 0;",
              "Ok(v + c(true as u32))"),
        loop=("for (i, it) in", "if it.is_empty()", "println!(\"{} {}\", it, 'c');"),
        tokens=dict(cond="if it.is_empty()", ctrl="return Ok(0)", data="total: u32 = 0",
                    skeleton="use std::"),
    ),
    "java": dict(
        source=(DATA / "Sample.java").read_bytes(),
        stmt=("int total = 0;", "local_variable_declaration"),
        stmt_new="int total = items().size();",
        pair=("while (total > 0) { total--; }", "do { total++; } while (total < 2);", "block"),
        expr=("} else if (it.length()", "length() > M", "it.length() > MAX",
              "binary_expression"),
        expr_as_stmt="int y = 1;",
        func=("public void run() {", "run", "int total = 0;",
              "long[] arr = new long[]{1L, 0x1F};\n        }"),
        loop=("for (String it : items()) {", "if (it.isEmpty())",
              "System.out.println(it + 'c');"),
        case=("case 0: case 1:", "total++;\n                return;"),
        tokens=dict(cond="if (it.isEmpty())", ctrl="return;", data="total = 0;",
                    skeleton="package com"),
    ),
}

BROKEN = "foo(1, 2;"  # an unclosed paren: code no language here parses

params = pytest.mark.parametrize("lang", list(LANGUAGES))


def find(source: bytes, text: str, after: int = 0) -> int:
    position = source.find(text.encode(), after)
    assert position >= 0, f"{text!r} not in the sample"
    return position


def doc_and_case(lang):
    case = LANGUAGES[lang]
    return SourceDocument(case["source"], lang), case


def statement_range(source: bytes, text: str, after: int = 0) -> tuple[int, int]:
    start = find(source, text, after)
    return start, start + len(text.encode())


def check_text(doc, span):
    assert span.text == doc.source[span.start_byte:span.end_byte].decode()


@params
def test_samples_parse_without_errors(lang):
    doc, case = doc_and_case(lang)
    assert not doc.root.has_error
    assert parses(case["source"], lang)


@params
def test_cursor_on_statement_gives_that_statement(lang):
    doc, case = doc_and_case(lang)
    text, node_type = case["stmt"]
    start, end = statement_range(doc.source, text)
    for cursor in (start, start + 1, end - 1):
        [span] = masked_spans(doc, [(cursor, cursor)], "node")
        assert span.kind == "statements"
        assert span.node_types == (node_type,)
        assert (span.start_byte, span.end_byte) == (start, end)
        assert span.text == text
        check_text(doc, span)


@params
def test_selection_through_two_statements_grows_to_both(lang):
    doc, case = doc_and_case(lang)
    first, second, body_type = case["pair"]
    start1, _ = statement_range(doc.source, first)
    start2, end2 = statement_range(doc.source, second, start1)
    [span] = masked_spans(doc, [(start1 + 2, start2 + 3)], "node")
    assert span.kind == "statements"
    assert span.parent_type == body_type
    assert len(span.node_types) == 2
    assert (span.start_byte, span.end_byte) == (start1, end2)
    assert span.text.startswith(first) and span.text.endswith(second)
    check_text(doc, span)


@params
def test_selection_inside_expression_grows_to_smallest_expression(lang):
    doc, case = doc_and_case(lang)
    where, part, expected, node_type = case["expr"]
    start = find(doc.source, part, find(doc.source, where))
    [span] = masked_spans(doc, [(start, start + len(part))], "node")
    assert span.kind == "expression"
    assert span.node_types == (node_type,)
    assert span.text == expected
    check_text(doc, span)


def body_range(doc, header: str, first: str, last: str) -> tuple[int, int]:
    start = find(doc.source, first, find(doc.source, header))
    return start, find(doc.source, last, start) + len(last.encode())


@params
def test_block_mode_cursor_in_body_gives_whole_body(lang):
    doc, case = doc_and_case(lang)
    header, _, first, last = case["func"]
    cursor = find(doc.source, case["stmt"][0]) + 1
    [span] = masked_spans(doc, [(cursor, cursor)], "block")
    assert span.kind == "body"
    assert span.parent_type == case["pair"][2]
    assert (span.start_byte, span.end_byte) == body_range(doc, header, first, last)
    check_text(doc, span)


@params
def test_block_mode_cursor_on_function_header_gives_the_body(lang):
    doc, case = doc_and_case(lang)
    header, name, first, last = case["func"]
    cursor = find(doc.source, name, find(doc.source, header)) + 1
    [span] = masked_spans(doc, [(cursor, cursor)], "block")
    assert span.kind == "body"
    assert (span.start_byte, span.end_byte) == body_range(doc, header, first, last)


@params
def test_block_mode_cursor_on_loop_header_gives_the_loop_body(lang):
    doc, case = doc_and_case(lang)
    header, first, last = case["loop"]
    cursor = find(doc.source, header) + 1
    [span] = masked_spans(doc, [(cursor, cursor)], "block")
    assert span.kind == "body"
    assert (span.start_byte, span.end_byte) == body_range(doc, header, first, last)


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if "case" in LANGUAGES[lang]])
def test_block_mode_in_switch_case_gives_its_statements_not_its_label(lang):
    doc, case = doc_and_case(lang)
    label, statements = case["case"]
    start = find(doc.source, statements, find(doc.source, label))
    [span] = masked_spans(doc, [(start + 1, start + 1)], "block")
    assert span.kind == "body"
    assert span.text == statements


def test_rust_cursor_on_tail_expression_gives_that_expression():
    doc, _ = doc_and_case("rust")
    tail = "Ok(v + c(true as u32))"
    start = find(doc.source, tail)
    [span] = masked_spans(doc, [(start, start)], "node")
    assert span.text == tail
    assert span.parent_type == "block"


@params
def test_two_cursors_give_two_sorted_spans(lang):
    doc, case = doc_and_case(lang)
    first, second, _ = case["pair"]
    start1, end1 = statement_range(doc.source, first)
    start2, end2 = statement_range(doc.source, second, start1)
    spans = masked_spans(doc, [(start2 + 1, start2 + 1), (start1 + 1, start1 + 1)], "node")
    assert [(s.start_byte, s.end_byte) for s in spans] == [(start1, end1), (start2, end2)]
    assert [s.text for s in spans] == [first, second]
    assert spans[0].end_byte <= spans[1].start_byte


@params
def test_overlapping_selections_merge(lang):
    doc, case = doc_and_case(lang)
    first, second, body_type = case["pair"]
    start1, _ = statement_range(doc.source, first)
    start2, end2 = statement_range(doc.source, second, start1)
    spans = masked_spans(doc, [(start2 + 1, end2 - 1), (start1 + 1, start2 + 2)], "node")
    assert len(spans) == 1
    assert (spans[0].start_byte, spans[0].end_byte) == (start1, end2)
    assert spans[0].kind == "statements" and spans[0].parent_type == body_type


@params
def test_check_replacement_of_a_statement(lang):
    doc, case = doc_and_case(lang)
    start, _ = statement_range(doc.source, case["stmt"][0])
    [span] = masked_spans(doc, [(start, start)], "node")
    good = check_replacement(doc, span, case["stmt_new"])
    assert good.parses and good.same_kind and good.ok
    assert good.error_regions == ()
    assert good.new_source[good.new_span[0]:good.new_span[1]] == case["stmt_new"].encode()
    broken = check_replacement(doc, span, BROKEN)
    assert not broken.parses and not broken.ok
    assert len(broken.error_regions) >= 1
    assert not parses(broken.new_source, lang)


@params
def test_check_replacement_of_an_expression_by_a_statement(lang):
    doc, case = doc_and_case(lang)
    where, part, _, _ = case["expr"]
    start = find(doc.source, part, find(doc.source, where))
    [span] = masked_spans(doc, [(start, start + len(part))], "node")
    assert not check_replacement(doc, span, case["expr_as_stmt"]).same_kind
    # while putting the expression back re-forms one expression
    assert check_replacement(doc, span, span.text).ok


def regex_tokens(source: bytes) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(rb"\w+|\s+|[^\w\s]", source)]


@params
def test_token_tiers_and_anchors(lang):
    doc, case = doc_and_case(lang)
    offsets = regex_tokens(doc.source)
    structure = annotate_tokens(doc, offsets, unit="byte")
    assert len(structure) == len(offsets)
    assert not structure.unknown_types
    rows = structure.rows()
    index = {start: i for i, (start, _) in enumerate(offsets)}

    def row(prefix: str) -> dict:
        return rows[index[find(doc.source, prefix)]]

    expected_anchor = {"cond": "keyword", "ctrl": "keyword", "data": "identifier"}
    for tier, prefix in case["tokens"].items():
        got = row(prefix)
        assert got["tier"] == tier, (prefix, got)
        if tier in expected_anchor:
            assert got["anchor"] == expected_anchor[tier], (prefix, got)
    assert row(case["tokens"]["cond"])["node_type"] == "if"
    assert row(case["tokens"]["ctrl"])["node_type"] == "return"


@params
def test_char_offsets_annotate_like_byte_offsets(lang):
    doc, _ = doc_and_case(lang)
    by_char = [m.span() for m in re.finditer(r"\w+|\s+|[^\w\s]", doc.text)]
    by_byte = [(len(doc.text[:s].encode()), len(doc.text[:e].encode())) for s, e in by_char]
    assert annotate_tokens(doc, by_char, unit="char").rows() == \
        annotate_tokens(doc, by_byte, unit="byte").rows()
