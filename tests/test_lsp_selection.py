"""lsp_server.selection and lsp_server.edits: LSP ranges in each position encoding -> engine byte
ranges and spans, and engine span edits -> TextEdits / WorkspaceEdits back in that encoding."""

import pytest
from lsprotocol import types

from engine.errors import (InvalidRangeError, NothingToInfillError,
                           UnsupportedLanguageError)
from engine.offsets import TextIndex
from lsp_server import edits, selection
from lsp_server.errors import DocumentChangedError, InvalidArgumentsError

# "é" is 2 UTF-8 bytes / 1 UTF-16 unit, "😀" 4 bytes / 2 units / 1 code point.
TEXT = 'def f(x):\n    s = "é😀"; y = x + 1\n    return y\n'
LINE = 1
Y_AT = TEXT.split("\n")[LINE].index("y =")  # code points into the line


def rng(a, b, c, d) -> types.Range:
    return types.Range(types.Position(a, b), types.Position(c, d))


def units(text: str, encoding: str) -> int:
    """Length of `text` in an encoding's code units (an independent oracle)."""
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    return len(text)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_positions_after_non_ascii_text(encoding):
    index = TextIndex(TEXT)
    line_text = TEXT.split("\n")[LINE]
    column = units(line_text[:Y_AT], encoding)
    start, end = selection.byte_range(index, rng(LINE, column, LINE, column + 1), encoding)
    assert TEXT.encode()[start:end] == b"y"
    # and back: the span of `y = x + 1` in the same encoding
    spans = selection.plan_spans(TEXT, "python", [(start, start)])
    assert [s.text for s in spans] == ["y = x + 1"]
    [back] = selection.span_ranges(index, spans, encoding)
    assert back == rng(LINE, column, LINE, column + units("y = x + 1", encoding))


def test_a_cursor_and_several_ranges():
    index = TextIndex(TEXT)
    ranges = selection.byte_ranges(index, [rng(0, 4, 0, 4), rng(2, 4, 2, 12)], "utf-16")
    assert ranges[0][0] == ranges[0][1] == 4
    assert TEXT.encode()[ranges[1][0]:ranges[1][1]] == b"return y"


def test_past_the_end_of_a_line_means_its_end_and_the_end_of_the_document():
    index = TextIndex(TEXT)
    start, end = selection.byte_range(index, rng(2, 4, 2, 999), "utf-16")
    assert TEXT.encode()[start:end] == b"return y"
    lines = TEXT.count("\n")
    assert selection.byte_range(index, rng(0, 0, lines, 0), "utf-16") == (0, len(TEXT.encode()))


def test_bad_ranges_name_the_range():
    index = TextIndex(TEXT)
    with pytest.raises(InvalidRangeError, match=r"ranges\[1\].*line 40"):
        selection.byte_ranges(index, [rng(0, 0, 0, 1), rng(40, 0, 40, 1)], "utf-16")
    with pytest.raises(InvalidRangeError, match="before it starts"):
        selection.byte_range(index, rng(2, 8, 2, 4), "utf-16")


@pytest.mark.parametrize("raw, words", [
    ("0:1", "LSP Range"),
    ({"start": {"line": 0, "character": 0}}, "end must be a position"),
    ({"start": {"line": -1, "character": 0}, "end": {"line": 0, "character": 0}},
     "start.line must be a non-negative"),
    ({"start": {"line": 0, "character": "1"}, "end": {"line": 0, "character": 0}},
     "start.character"),
])
def test_malformed_ranges(raw, words):
    with pytest.raises(InvalidArgumentsError, match=words):
        selection.parse_range(raw, "ranges[0]")


def test_parse_range_reads_json():
    raw = {"start": {"line": 1, "character": 2}, "end": {"line": 3, "character": 4}}
    assert selection.parse_range(raw) == rng(1, 2, 3, 4)
    assert selection.parse_range(rng(1, 2, 3, 4)) == rng(1, 2, 3, 4)


def test_encoding_names():
    assert selection.encoding_name(types.PositionEncodingKind.Utf16) == "utf-16"
    assert selection.encoding_name("utf-32") == "utf-32"
    assert selection.encoding_name(None) == "utf-16"
    with pytest.raises(ValueError):
        selection.encoding_name("utf-7")


def test_document_language():
    assert selection.document_language("python", "file:///a.txt") == "python"
    assert selection.document_language("typescriptreact", "file:///a") == "tsx"
    assert selection.document_language(None, "file:///x/b%20c.rs") == "rust"
    assert selection.document_language("", "file:///x/b.go") == "go"
    with pytest.raises(UnsupportedLanguageError, match="'plaintext'.*python"):
        selection.document_language("plaintext", "file:///notes.txt")


def test_nothing_to_infill_on_a_blank_line():
    text = "x = 1\n\ny = 2\n"
    index = TextIndex(text)
    ranges = [selection.byte_range(index, rng(1, 0, 1, 0), "utf-16")]
    with pytest.raises(NothingToInfillError):
        selection.plan_spans(text, "python", ranges)


class Span:
    """An engine SpanEdit's fields the edits module reads."""

    def __init__(self, text: str, old: str, new: str, kind: str = "statements"):
        self.start_byte = text.encode().index(old.encode())
        self.end_byte = self.start_byte + len(old.encode())
        self.old_text, self.new_text, self.kind = old, new, kind
        self.node_types = ["expression_statement"]


class Candidate:
    def __init__(self, spans, score=-1.5, parses=True, same_kind=True):
        self.spans, self.score, self.parses, self.same_kind = spans, score, parses, same_kind
        self.repair_rounds = 0

    @property
    def valid(self):
        return self.parses and self.same_kind


def apply_edits(text: str, text_edits: list[types.TextEdit], encoding: str) -> str:
    """Apply LSP TextEdits the way an editor does (an independent oracle, last edit first)."""
    lines = text.split("\n")

    def offset(position):
        line = lines[position.line]
        count, i = 0, 0
        while i < len(line) and count < position.character:
            count += units(line[i], encoding)
            i += 1
        return sum(len(l) + 1 for l in lines[:position.line]) + i

    for edit in sorted(text_edits, key=lambda e: (e.range.start.line, e.range.start.character),
                       reverse=True):
        text = text[:offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_text_edits_in_each_encoding(encoding):
    index = TextIndex(TEXT)
    spans = [Span(TEXT, "return y", "return y * 2"), Span(TEXT, "y = x + 1", "y = x - 1 # ü😀")]
    text_edits = edits.text_edits(index, spans, encoding)
    assert [e.new_text for e in text_edits] == ["y = x - 1 # ü😀", "return y * 2"]  # in order
    expected = TEXT.replace("return y", "return y * 2").replace("y = x + 1", "y = x - 1 # ü😀")
    assert apply_edits(TEXT, text_edits, encoding) == expected


def test_workspace_edit_forms():
    index = TextIndex(TEXT)
    candidate = Candidate([Span(TEXT, "return y", "return 0")])
    versioned = edits.candidate_edit("file:///a.py", 7, index, candidate, "utf-16", True)
    [change] = versioned.document_changes
    assert change.text_document.uri == "file:///a.py" and change.text_document.version == 7
    assert change.edits[0].new_text == "return 0"
    plain = edits.candidate_edit("file:///a.py", 7, index, candidate, "utf-16", False)
    assert plain.document_changes is None and plain.changes["file:///a.py"] == change.edits
    as_json = edits.to_json(versioned)
    assert as_json["documentChanges"][0]["edits"][0]["newText"] == "return 0"


def test_a_result_for_another_version_is_refused():
    index = TextIndex(TEXT)
    stale = Span(TEXT, "return y", "return 0")
    stale.old_text = "return z"
    with pytest.raises(DocumentChangedError, match="run .* again"):
        edits.text_edits(index, [stale], "utf-16")


def test_preview_and_summary_json():
    index = TextIndex(TEXT)
    best = Candidate([Span(TEXT, "return y", "return 0")], score=-0.5)
    other = Candidate([Span(TEXT, "return y", "return ("), ], score=-0.9, parses=False)
    workspace_edits = [edits.candidate_edit("file:///a.py", 1, index, c, "utf-16", True)
                       for c in (best, other)]

    class Timings:
        total_ms = 12.34

    class Result:
        candidates, valid, message, steps = [best, other], True, "1 valid candidate", 5
        model, device, timings = "m", "cpu", Timings()

    preview = edits.preview_json(Result, "file:///a.py", 1, workspace_edits)
    assert preview["applied"] is False and preview["valid"] is True
    assert [c["valid"] for c in preview["candidates"]] == [True, False]
    first = preview["candidates"][0]
    assert first["spans"] == [{"range": edits.to_json(workspace_edits[0].document_changes[0]
                                                      .edits[0].range),
                               "oldText": "return y", "newText": "return 0",
                               "kind": "statements", "nodeTypes": ["expression_statement"]}]
    assert first["edit"]["documentChanges"][0]["textDocument"]["version"] == 1
    summary = edits.applied_json(Result, "file:///a.py", 1, workspace_edits[0])
    assert summary["applied"] is True and len(summary["candidates"]) == 1
    assert summary["totalMs"] == 12.3 and summary["steps"] == 5
