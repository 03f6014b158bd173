"""Selection -> masked spans: the minimal runs of whole syntax-tree nodes that cover a selection.

The rules (`node` mode, the default):

1. A selection is first trimmed of surrounding whitespace, so whole-line selections behave.
2. From the smallest node that covers it, walk up to the first node that is
   - a *body* (a block, a class body) or the file's root: the span is the run of that body's
     children from the one the selection starts in to the one it ends in (a selection that cuts
     through statements grows to whole statements, siblings in one block);
   - a *statement* (or member declaration): the span is that statement;
   - an *expression*: the span is that expression (a selection inside an expression grows to
     the smallest enclosing expression). An expression that is all of its statement (`f(x)` in
     `f(x)` on its own line) counts as the statement.
3. A cursor (an empty range) picks the innermost statement that encloses it, or the innermost
   member of a body if that comes first (a comment, a Rust block's tail expression). A cursor on
   whitespace looks at the code touching it on its line: the character before it, else the first
   one after it, else the last one before it. A cursor on a blank line is an error in `node` mode.

`block` mode picks the body of the innermost compound statement or function that encloses the
selection, or whose header the selection is in: the run of all its members. The braces of a
body, and the label of a labelled body (`case 0:`), are never part of a span.

Several ranges (multi-cursor) give several spans, sorted; spans that overlap are merged into
the span of their union, so the result never overlaps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Literal, Sequence

import tree_sitter

from ..errors import EmptySourceError, InvalidRangeError, NothingToInfillError
from .document import SourceDocument

SelectionMode = Literal["node", "block"]
MODES: tuple[str, ...] = ("node", "block")

_WHITESPACE = b" \t\r\n\f\v"
_LINE_BREAK = b"\r\n"


@dataclass(frozen=True)
class MaskedSpan:
    """A run of whole sibling nodes to be masked and infilled.

    Byte offsets index the document's UTF-8 bytes; lines are 1-based and inclusive.
    `kind` is `statements` (a run of statements or members), `expression` (one expression),
    or `body` (the whole content of a block, from `block` mode).
    """

    start_byte: int
    end_byte: int
    start_line: int
    end_line: int
    node_types: tuple[str, ...]
    kind: str
    parent_type: str  # type of the node that holds the run (a body, the root, a statement...)
    indent: str  # leading whitespace of the span's first line
    text: str  # exactly document.source[start_byte:end_byte], decoded

    def to_dict(self) -> dict:
        out = asdict(self)
        out["node_types"] = list(self.node_types)
        return out


def masked_spans(doc: SourceDocument, ranges: Iterable[tuple[int, int]],
                 mode: str = "node") -> list[MaskedSpan]:
    """Spans for byte ranges [start, end) of `doc` (start == end is a cursor).

    Raises InvalidRangeError for a range outside the document or inside a UTF-8 character,
    EmptySourceError for a document with no code, NothingToInfillError when nothing encloses a
    cursor in the chosen mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    ranges = list(ranges)
    if not ranges:
        raise InvalidRangeError("no range given: pass at least one selection or cursor")
    for start, end in ranges:
        _check_range(doc, start, end)
    if not doc.source.strip(_WHITESPACE):
        raise EmptySourceError("the document is empty: there is no code to infill")
    spans = sorted((_span_for_range(doc, s, e, mode) for s, e in ranges),
                   key=lambda span: (span.start_byte, span.end_byte))
    return _merge_overlapping(doc, spans, mode)


def span_for_range(doc: SourceDocument, start: int, end: int, mode: str = "node") -> MaskedSpan:
    """The span for one range; see `masked_spans`."""
    return masked_spans(doc, [(start, end)], mode)[0]


def _check_range(doc: SourceDocument, start: int, end: int) -> None:
    size = len(doc.source)
    if not (isinstance(start, int) and isinstance(end, int)):
        raise InvalidRangeError(f"range bounds must be integers, got {start!r}, {end!r}")
    if start > end:
        raise InvalidRangeError(f"range {start}..{end} is reversed (start after end)")
    if start < 0 or end > size:
        raise InvalidRangeError(
            f"range {start}..{end} is outside the document, which has {size} bytes"
        )
    doc.index.char_offset(start)  # raises when inside a multi-byte character
    doc.index.char_offset(end)


def _merge_overlapping(doc: SourceDocument, spans: list[MaskedSpan], mode: str) -> list[MaskedSpan]:
    merged: list[MaskedSpan] = []
    for span in spans:
        while merged and merged[-1].end_byte > span.start_byte:
            previous = merged.pop()
            span = _span_for_range(doc, min(previous.start_byte, span.start_byte),
                                   max(previous.end_byte, span.end_byte), mode)
        merged.append(span)
    return merged


# -- one range ---------------------------------------------------------------------------------

def _span_for_range(doc: SourceDocument, start: int, end: int, mode: str) -> MaskedSpan:
    source = doc.source
    while start < end and source[start] in _WHITESPACE:
        start += 1
    while end > start and source[end - 1] in _WHITESPACE:
        end -= 1
    if start == end:
        probe = _cursor_probe(source, start)
        if probe is None and mode == "node":
            raise NothingToInfillError(
                "the cursor is on a blank line: put it on a statement or select code"
            )
        if probe is not None:  # on a blank line, block mode looks at the cursor itself
            start, end = probe, probe + 1
        cursor = True
    else:
        cursor = False
    node = doc.root.descendant_for_byte_range(start, end)
    if mode == "block":
        return _block_span(doc, node, start, end)
    return _node_span(doc, node, start, end, cursor)


def _cursor_probe(source: bytes, pos: int) -> int | None:
    """A byte of code the cursor at `pos` touches on its line, or None on a blank line."""
    size = len(source)
    if pos < size and source[pos] not in _WHITESPACE:
        return pos
    if pos > 0 and source[pos - 1] not in _WHITESPACE:
        return pos - 1
    after = pos
    while after < size and source[after] in b" \t\f\v":
        after += 1
    if after < size and source[after] not in _LINE_BREAK:
        return after
    before = pos - 1
    while before >= 0 and source[before] in b" \t\f\v":
        before -= 1
    if before >= 0 and source[before] not in _LINE_BREAK:
        return before
    return None


def _node_span(doc: SourceDocument, node: tree_sitter.Node, start: int, end: int,
               cursor: bool) -> MaskedSpan:
    table = doc.grammar.table
    root = doc.root
    current: tree_sitter.Node | None = node
    came_from: tree_sitter.Node | None = None
    while current is not None:
        kind = current.kind_id
        is_container = current == root or table.is_body[kind]
        if is_container and not cursor:
            run = _children_run(current, start, end)
            if not run:
                raise NothingToInfillError("the selection covers no code")
            return _make_span(doc, run, "statements", current)
        if is_container and came_from is not None and came_from in body_members(current):
            # a member that is no statement: a block's tail expression, a comment
            return _make_span(doc, [came_from], "statements", current)
        if table.is_statement[kind] and not is_container:
            return _make_span(doc, [current], "statements", current.parent)
        if table.is_expression[kind] and not cursor:
            return _expression_span(doc, current)
        came_from = current
        current = current.parent
    raise NothingToInfillError("no statement encloses the cursor: put it on a statement or select code")


def _expression_span(doc: SourceDocument, node: tree_sitter.Node) -> MaskedSpan:
    """An expression, or the statement it fills completely."""
    table = doc.grammar.table
    current = node
    while current.parent is not None and current.parent.byte_range == node.byte_range:
        current = current.parent
        if current == doc.root or table.is_body[current.kind_id]:
            break
        if table.is_statement[current.kind_id]:
            return _make_span(doc, [current], "statements", current.parent)
    return _make_span(doc, [node], "expression", node.parent)


def body_members(body: tree_sitter.Node) -> list[tree_sitter.Node]:
    """The named children of a body that make its content: after the label of a labelled body
    (`case 0:` in a switch case, Java's switch label), which ends at the body's own ':'."""
    children = body.children
    for i, child in enumerate(children):
        if child.type == ":" and not child.is_named:
            return [c for c in children[i + 1:] if c.is_named]
    return body.named_children


def _children_run(container: tree_sitter.Node, start: int, end: int) -> list[tree_sitter.Node]:
    """Members of `container` that intersect [start, end)."""
    run = []
    for child in body_members(container):
        if child.end_byte <= start:
            continue
        if child.start_byte >= end:
            break
        run.append(child)
    return run


def _own_body(doc: SourceDocument, node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The first body of a compound statement, function or clause, looking through its header
    parts but not into nested statements or expressions (a lambda in an argument list)."""
    table = doc.grammar.table
    for field in ("body", "consequence"):
        child = node.child_by_field_name(field)
        if child is None:
            continue
        if table.is_body[child.kind_id]:
            return child
        # Go's `block` holds its statements in a `statement_list`
        inner = [c for c in child.named_children if table.is_body[c.kind_id]]
        if inner:
            return inner[0]
    pending = list(node.named_children)
    while pending:
        child = pending.pop(0)
        if table.is_body[child.kind_id]:
            return child
        if not (table.is_statement[child.kind_id] or table.is_expression[child.kind_id]):
            pending.extend(child.named_children)
    return None


def _block_span(doc: SourceDocument, node: tree_sitter.Node, start: int, end: int) -> MaskedSpan:
    table = doc.grammar.table
    current: tree_sitter.Node | None = node
    while current is not None and current != doc.root:
        if table.is_body[current.kind_id]:
            return _body_span(doc, current)
        body = _own_body(doc, current)
        if body is not None and end <= body.start_byte:
            return _body_span(doc, body)  # the selection is in the header before this body
        current = current.parent
    raise NothingToInfillError(
        "no function or compound statement encloses the selection: use node mode or select code"
    )


def _body_span(doc: SourceDocument, body: tree_sitter.Node) -> MaskedSpan:
    children = body_members(body)
    if not children:
        raise NothingToInfillError(f"the {body.type} is empty: there is no code to rewrite in it")
    return _make_span(doc, children, "body", body)


def _make_span(doc: SourceDocument, run: Sequence[tree_sitter.Node], kind: str,
               parent: tree_sitter.Node | None) -> MaskedSpan:
    return span_of_bytes(doc, run[0].start_byte, run[-1].end_byte,
                         tuple(node.type for node in run), kind,
                         parent.type if parent is not None else "")


def span_of_bytes(doc: SourceDocument, start: int, end: int, node_types: tuple[str, ...],
                  kind: str, parent_type: str) -> MaskedSpan:
    """The MaskedSpan of bytes [start, end): its lines and the indent of its first line."""
    index = doc.index
    first_line = index.line_of_byte(start)
    last_line = index.line_of_byte(max(start, end - 1))
    line_start = index.line_start_byte(first_line)
    prefix = doc.source[line_start:start]
    indent = prefix[: len(prefix) - len(prefix.lstrip(b" \t"))].decode("utf-8")
    return MaskedSpan(
        start_byte=start,
        end_byte=end,
        start_line=first_line + 1,
        end_line=last_line + 1,
        node_types=node_types,
        kind=kind,
        parent_type=parent_type,
        indent=indent,
        text=doc.source[start:end].decode("utf-8"),
    )
