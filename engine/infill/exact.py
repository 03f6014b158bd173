"""Exact holes: request ranges taken verbatim as byte ranges of the text (an empty range is an
insertion point), for evaluation on prefix/suffix benchmarks where a hole is not a syntax node.

In `exact` mode nothing grows to whole nodes: each range becomes a `MaskedSpan` of kind
`statements` (so the canvas's length rule gives it the statements' default sizes) over exactly
its bytes, the canvas cuts its tokenization at the range's edges (`build_canvas(...,
cut_at_spans=True)`), and a candidate is valid when the whole file parses; there is no
same-kind rule, since an arbitrary hole replaced no node.
"""

from __future__ import annotations

from typing import Iterable

from ..errors import InvalidRangeError
from ..syntax import MaskedSpan, SourceDocument
from ..syntax.selection import span_of_bytes

EXACT_MODE = "exact"
EXACT_KIND = "statements"  # the length rule's kind for an exact hole (24 tokens, x2, x0.5)


def exact_spans(doc: SourceDocument, ranges: Iterable[tuple[int, int]]) -> list[MaskedSpan]:
    """One span per byte range [start, end) of `doc`, exactly those bytes, sorted.

    Ranges that overlap, touch or repeat become one span over their union (two holes with no
    byte between them are one hole to the canvas). Raises InvalidRangeError for a range that is
    reversed, outside the document or cuts a UTF-8 character.
    """
    checked = []
    for start, end in ranges:
        if not (isinstance(start, int) and isinstance(end, int)):
            raise InvalidRangeError(f"range bounds must be integers, got {start!r}, {end!r}")
        if start > end:
            raise InvalidRangeError(f"range {start}..{end} is reversed (start after end)")
        if start < 0 or end > len(doc.source):
            raise InvalidRangeError(f"range {start}..{end} is outside the document, which has "
                                    f"{len(doc.source)} bytes")
        doc.index.char_offset(start)  # raises inside a multi-byte character
        doc.index.char_offset(end)
        checked.append((start, end))
    if not checked:
        raise InvalidRangeError("no range given: pass at least one byte range or insertion point")
    merged: list[list[int]] = []
    for start, end in sorted(checked):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [_span(doc, start, end) for start, end in merged]


def _span(doc: SourceDocument, start: int, end: int) -> MaskedSpan:
    node = doc.root.descendant_for_byte_range(start, end)
    while node is not None and not node.is_named:
        node = node.parent
    return span_of_bytes(doc, start, end, (), EXACT_KIND,
                         node.type if node is not None else "")
