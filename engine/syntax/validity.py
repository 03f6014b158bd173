"""Validity of generated code: does it parse, where are the errors, does an infill re-form a node
of the same kind as the code it replaced.

A sampler uses `error_regions` to remask what tree-sitter marks as ERROR or MISSING, and
`check_replacement` to accept or reject a candidate edit.

Some code the grammars accept the language does not: tree-sitter-python parses an indented
block with no statement in it (`def f():` followed by a dedent), CPython raises SyntaxError.
The node tables name such node types (`nonempty`); `empty_nodes` finds them, and an edit that
leaves more of them than the document had does not parse.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache

import tree_sitter

from ..errors import InvalidRangeError
from .document import SourceDocument
from .languages import Grammar, get_grammar
from .selection import MaskedSpan, body_members

_WHITESPACE = b" \t\r\n\f\v"


@dataclass(frozen=True)
class ErrorRegion:
    """Bytes [start_byte, end_byte) tree-sitter could not parse (`error`), or the place where it
    assumed a token that is not there (`missing`, zero width; `node_type` names the token), or a
    node the language requires to hold something that is empty (`empty`; see `empty_nodes`)."""

    start_byte: int
    end_byte: int
    kind: str
    node_type: str


@dataclass(frozen=True)
class ReplacementCheck:
    """What an edit did to the document's syntax."""

    parses: bool  # the whole new document parses without ERROR or MISSING nodes, and the edit
    #   left no node of a `nonempty` type empty
    same_kind: bool  # the new bytes form whole nodes of the same kind as the replaced span
    node_types: tuple[str, ...]  # types of the nodes the new bytes form ((), when they don't)
    error_regions: tuple[ErrorRegion, ...]  # errors in the new document (and its empty nodes,
    #   when the edit added some)
    new_source: bytes  # the document after the edit
    new_span: tuple[int, int]  # bytes of the replacement in new_source

    @property
    def ok(self) -> bool:
        return self.parses and self.same_kind


def parses(source: bytes | str, language: str | Grammar) -> bool:
    """Whether the text parses with no ERROR or MISSING node and no empty node of a type the
    language requires to hold something (`empty_nodes`)."""
    grammar = get_grammar(language) if isinstance(language, str) else language
    data = source.encode("utf-8") if isinstance(source, str) else source
    tree = grammar.parse(data)
    return not tree.root_node.has_error and not empty_nodes(tree, grammar)


def empty_nodes(tree_or_doc: tree_sitter.Tree | SourceDocument,
                grammar: Grammar | None = None) -> list[ErrorRegion]:
    """Nodes of the table's `nonempty` types holding nothing but comments (kind "empty"), in
    document order. `grammar` is needed with a bare tree."""
    if isinstance(tree_or_doc, SourceDocument):
        tree, grammar = tree_or_doc.tree, tree_or_doc.grammar
    else:
        tree = tree_or_doc
    query = _nonempty_query(grammar)
    if query is None:
        return []
    found = []
    for nodes in tree_sitter.QueryCursor(query).captures(tree.root_node).values():
        for node in nodes:
            if all(child.type == "comment" for child in node.named_children):
                found.append(ErrorRegion(node.start_byte, node.end_byte, "empty", node.type))
    return sorted(found, key=lambda r: (r.start_byte, r.end_byte))


@lru_cache(maxsize=None)
def _nonempty_query(grammar: Grammar) -> tree_sitter.Query | None:
    kinds = sorted(grammar.table.table.nonempty)
    return tree_sitter.Query(grammar.language, " ".join(f"({kind}) @node" for kind in kinds)) \
        if kinds else None


# How many empty nodes a document had: a request judges many candidate edits of one document.
_EMPTY_BEFORE: "weakref.WeakKeyDictionary[SourceDocument, int]" = weakref.WeakKeyDictionary()


def edit_errors(before: SourceDocument, tree: tree_sitter.Tree) -> tuple[bool, list[ErrorRegion]]:
    """Whether `tree`, an edit of `before`, parses, and if not, its error regions: the ERROR and
    MISSING nodes, and its empty nodes (`empty_nodes`) when it has more than `before` had (an
    edit that empties a Python block)."""
    empty = empty_nodes(tree, before.grammar)
    if empty:
        had = _EMPTY_BEFORE.get(before)
        if had is None:
            had = _EMPTY_BEFORE[before] = len(empty_nodes(before))
        if len(empty) <= had:
            empty = []
    if not tree.root_node.has_error and not empty:
        return True, []
    return False, sorted(error_regions(tree) + empty, key=lambda r: (r.start_byte, r.end_byte))


def error_regions(tree_or_doc: tree_sitter.Tree | SourceDocument,
                  within: tuple[int, int] | None = None) -> list[ErrorRegion]:
    """ERROR and MISSING nodes in document order, optionally only those touching `within`."""
    tree = tree_or_doc.tree if isinstance(tree_or_doc, SourceDocument) else tree_or_doc
    regions: list[ErrorRegion] = []
    pending = [tree.root_node]
    while pending:
        node = pending.pop()
        if not node.has_error:
            continue
        if node.is_error:
            regions.append(ErrorRegion(node.start_byte, node.end_byte, "error", "ERROR"))
        elif node.is_missing:
            regions.append(ErrorRegion(node.start_byte, node.end_byte, "missing", node.type))
        pending.extend(reversed(node.children))
    if within is not None:
        lo, hi = within
        regions = [r for r in regions if r.start_byte <= hi and r.end_byte >= lo]
    return sorted(regions, key=lambda r: (r.start_byte, r.end_byte))


def check_replacement(doc: SourceDocument, span: MaskedSpan, new_text: str | bytes) -> ReplacementCheck:
    """Replace `span`'s bytes with `new_text`, reparse, and judge the result.

    Same kind means: for an `expression` span, the new bytes are one expression; for a
    `statements` span, a run of one or more whole statements of the same parent (comments, and
    members of the kinds the old run had, allowed); for a `body` span, all of a body's members.
    A span of one member that is no statement (a tail expression) must stay one such node.
    """
    if not (0 <= span.start_byte <= span.end_byte <= len(doc.source)):
        raise InvalidRangeError("the span does not belong to this document")
    new_bytes = new_text.encode("utf-8") if isinstance(new_text, str) else bytes(new_text)
    source = doc.source[: span.start_byte] + new_bytes + doc.source[span.end_byte:]
    start, end = span.start_byte, span.start_byte + len(new_bytes)
    tree = reparse(doc, source, span.start_byte, span.end_byte, end)
    nodes = _exact_cover(doc.grammar, tree.root_node, source, start, end)
    same = nodes is not None and _same_kind(doc.grammar, span, nodes)
    parses_, errors = edit_errors(doc, tree)
    return ReplacementCheck(
        parses=parses_,
        same_kind=same,
        node_types=tuple(n.type for n in nodes) if nodes else (),
        error_regions=tuple(errors),
        new_source=source,
        new_span=(start, end),
    )


def reparse(doc: SourceDocument, new_source: bytes, start: int, old_end: int,
            new_end: int) -> tree_sitter.Tree:
    """Parse `new_source`, which is `doc.source` with bytes [start, old_end) replaced by
    new_source[start:new_end], incrementally: tree-sitter reuses the unchanged subtrees, so
    checking a candidate costs about the size of the edit, not of the file."""
    edited = doc.tree.copy()
    edited.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end,
                start_point=_point(doc.source, start), old_end_point=_point(doc.source, old_end),
                new_end_point=_point(new_source, new_end))
    return doc.grammar.parser().parse(new_source, edited)


def _point(source: bytes, byte: int) -> tuple[int, int]:
    """tree-sitter's (row, byte column) of a byte offset; rows end at \n only."""
    return source.count(b"\n", 0, byte), byte - (source.rfind(b"\n", 0, byte) + 1)


def _exact_cover(grammar: Grammar, root: tree_sitter.Node, source: bytes, start: int,
                 end: int) -> list[tree_sitter.Node] | None:
    """The run of sibling nodes whose bytes are exactly [start, end), or else exactly those bytes
    without surrounding whitespace; None when no run of whole nodes has them."""
    cover = _cover(grammar, root, start, end)
    if cover is None:
        while start < end and source[start] in _WHITESPACE:
            start += 1
        while end > start and source[end - 1] in _WHITESPACE:
            end -= 1
        cover = _cover(grammar, root, start, end)
    return cover


def _cover(grammar: Grammar, root: tree_sitter.Node, start: int,
           end: int) -> list[tree_sitter.Node] | None:
    if start == end:
        return None
    node = root.descendant_for_byte_range(start, end)
    if node is None:
        return None
    is_body = grammar.table.is_body
    if node.byte_range == (start, end):
        if node == root or is_body[node.kind_id]:
            members = body_members(node)
            if members and (members[0].start_byte, members[-1].end_byte) == (start, end):
                return members  # a run that fills a whole body
            if node == root:
                return None
        # A single node: taken at its outermost below the enclosing body, so a one-statement
        # body gives the statement, not the body.
        while (node.parent is not None and node.parent.byte_range == (start, end)
               and node.parent != root and not is_body[node.parent.kind_id]):
            node = node.parent
        return [node]
    run = [c for c in node.children if c.start_byte >= start and c.end_byte <= end]
    if run and run[0].start_byte == start and run[-1].end_byte == end:
        # separators between the members (`;` between Python statements, after JS fields)
        # are part of the run's bytes but no members of it
        return [c for c in run if c.is_named] or None
    return None


def _same_kind(grammar: Grammar, span: MaskedSpan, nodes: list[tree_sitter.Node]) -> bool:
    table = grammar.table

    def chain(node: tree_sitter.Node) -> list[tree_sitter.Node]:
        """The node and its descendants that span exactly the same bytes."""
        out = [node]
        while out[-1].child_count == 1 and out[-1].children[0].byte_range == node.byte_range:
            out.append(out[-1].children[0])
        return out

    if any(n.is_error or n.has_error for n in nodes):
        return False
    if span.kind == "expression":
        return len(nodes) == 1 and any(table.is_expression[n.kind_id] for n in chain(nodes[0]))
    names = table.table
    if len(span.node_types) == 1 and span.node_types[0] not in names.statements:
        # one member that is no statement (a Rust block's tail expression, a comment): the new
        # bytes must be one node of its type, or one expression where it was an expression
        old_type = span.node_types[0]
        if len(nodes) != 1:
            return False
        types = {n.type for n in chain(nodes[0])}
        if old_type in names.expressions:
            return bool(types & names.expressions)
        return old_type in types
    # a run: statements, comments, and members of the kinds the old run had (a hash-bang line)
    old_types = set(span.node_types)
    for node in nodes:
        if not (node.is_extra or node.type in old_types
                or any(table.is_statement[c.kind_id] for c in chain(node))):
            return False
    if old_types & names.statements and all(node.is_extra for node in nodes):
        return False  # statements replaced by comments alone: the code is gone, not rewritten
    parent = nodes[0].parent
    parent_type = parent.type if parent is not None else ""
    if span.kind == "body":
        if parent is None or not table.is_body[parent.kind_id]:
            return False
        members = body_members(parent)
        return nodes[0] == members[0] and nodes[-1] == members[-1]
    return parent_type == span.parent_type
