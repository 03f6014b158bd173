"""The canvas: a bounded window of context tokens around the masked spans, each span replaced by
mask tokens, one row per length candidate (and sample), run as one batch.

Length rule (the infill length is unknown):
- With a length hint (the editor: the replaced code's token count h is a fair guess), row k
  gives every span round(h * f_k) + PAD_SLACK mask tokens, f = 1, 1.5, 0.6, 2, 0.4, ...
- Without one (evaluation: the reference length is never used), the base is a typical size
  of the span's kind (DEFAULT_LENGTHS) with f = 1, 2, 0.5, 4, 0.25, ...
- Explicit `lengths` replace both. The model ends a span early by emitting pad (or end-of-text)
  tokens, which are deleted, so a row only needs to be long enough; the candidates are then
  ranked by validity and model score.
The family's frame (`InfillTokenizer.frame_start` / `frame_end`: Dream's bos, DreamOn's bos and
eos, a masked LM's [CLS] and [SEP]) encloses the window, as the model was trained.
Spans are cut on token boundaries: the replaced bytes are those of the tokens that overlap the
span (a leading space that byte-level BPE glues to the first token goes with it), as in training.
Exact holes (`cut_at_spans=True`, request mode `exact`) instead tokenize the text between the
spans piece by piece, so each span's tokens are exactly its bytes and a span may be empty (an
insertion point: mask tokens between two context tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AstdiffuseError
from ..syntax import MaskedSpan, SourceDocument, annotate_tokens
from .request import InvalidRequestError
from .vocab import OTHER, InfillTokenizer

DEFAULT_LENGTHS = {"expression": 12, "statements": 24, "body": 48}  # tokens, by span kind
HINT_FACTORS = (1.0, 1.5, 0.6, 2.0, 0.4, 3.0)
NO_HINT_FACTORS = (1.0, 2.0, 0.5, 4.0, 0.25, 8.0)
PAD_SLACK = 4  # extra mask tokens over the hint, for the model's pads to absorb
_BYTES_PER_TOKEN = 16  # generous: how much text to tokenize per context token wanted


class SpanOutsideCanvasError(AstdiffuseError):
    """The spans (and the code between them) do not fit the canvas budget."""


class SpansOverlapError(AstdiffuseError):
    """Two spans share a token; the canvas cannot mask them separately."""


@dataclass
class Canvas:
    """One batch of canvases over the same context. Positions index the canvas, bytes the doc."""

    input_ids: torch.Tensor  # long [B, L]: context, mask tokens (and kept anchors) in spans
    attention_mask: torch.Tensor  # long [B, L]: 0 on the right padding of shorter rows
    editable: torch.Tensor  # bool [B, L]: positions inside span slots
    slots: list[list[tuple[int, int]]]  # per row, per span: (first position, length)
    regions: list[tuple[int, int]]  # per span: bytes of the doc the span's tokens covered
    spans: list[MaskedSpan]
    old_tokens: list[int]  # per span: tokens of the replaced text
    prefix_tokens: int  # context tokens before the first span
    suffix_tokens: int  # context tokens after the last span

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]


def length_candidates(kind: str, old_tokens: int, count: int, hint: bool,
                      lengths: list[int] | None = None) -> list[int]:
    """Mask lengths to try for one span, best guess first (see the module docstring)."""
    if lengths:
        return list(dict.fromkeys(int(n) for n in lengths))
    if hint and old_tokens > 0:  # an insertion point replaced nothing: no length to hint at
        base, factors, slack = old_tokens, HINT_FACTORS, PAD_SLACK
    else:
        base, factors, slack = DEFAULT_LENGTHS.get(kind, 24), NO_HINT_FACTORS, 0
    out: list[int] = []
    for factor in factors:
        n = max(2, round(base * factor) + slack)
        if n not in out:
            out.append(n)
        if len(out) == count:
            break
    return out


def build_canvas(doc: SourceDocument, spans: list[MaskedSpan], tokenizer: InfillTokenizer, *,
                 budget: int, length_count: int = 3, length_hint: bool = True,
                 lengths: list[int] | None = None, samples: int = 1,
                 keep_anchors: bool = False, cut_at_spans: bool = False) -> Canvas:
    """Tokenize the text around `spans` (sorted, disjoint) and lay out the batch.

    `cut_at_spans`: tokenize the pieces between span edges separately, so every span is exactly
    its own bytes (possibly none): the exact-hole mode (`engine.infill.exact`).
    """
    spans = sorted(spans, key=lambda s: s.start_byte)
    lo, hi = _text_window(doc, spans[0].start_byte, spans[-1].end_byte, budget)
    if cut_at_spans:
        edges = [lo] + [b for s in spans for b in (s.start_byte, s.end_byte)] + [hi]
        ids, offsets = _encode_pieces(tokenizer, doc.source, edges)
        token_ranges = [_token_range(offsets, s, allow_empty=True) for s in spans]
        regions = [(s.start_byte, s.end_byte) for s in spans]
    else:
        ids, offsets = tokenizer.encode(doc.source[lo:hi].decode("utf-8"))
        offsets = offsets + lo
        token_ranges = [_token_range(offsets, s) for s in spans]
        regions = [(int(offsets[a, 0]), int(offsets[b - 1, 1])) for a, b in token_ranges]
    for (_, end), (start, _) in zip(token_ranges, token_ranges[1:]):
        if end > start:
            raise SpansOverlapError("two selected spans share a token; select them as one range")
    old = [b - a for a, b in token_ranges]

    if keep_anchors:
        if any(a == b for a, b in token_ranges):
            raise InvalidRequestError("keep_anchors needs code to keep, and an insertion point "
                                      "(an empty range) has none")
        templates = [[_anchor_template(doc, ids, offsets, a, b, tokenizer)]
                     for a, b in token_ranges]
    else:
        per_span = [length_candidates(s.kind, n, length_count, length_hint, lengths)
                    for s, n in zip(spans, old)]
        rows = max(len(c) for c in per_span)
        templates = [[[tokenizer.mask_id] * c[min(r, len(c) - 1)] for r in range(rows)]
                     for c in per_span]
    row_count = len(templates[0])
    gaps = [ids[b:a2] for (_, b), (a2, _) in zip(token_ranges, token_ranges[1:])]
    frame_start, frame_end = tokenizer.frame_start, tokenizer.frame_end
    fixed = sum(len(g) for g in gaps) + len(frame_start) + len(frame_end)
    longest = max(sum(len(t[r]) for t in templates) for r in range(row_count))
    context = budget - fixed - longest
    if context < 0:
        raise SpanOutsideCanvasError(
            f"the selection needs {fixed + longest} canvas tokens ({longest} masked, {fixed} "
            f"between the spans) but the canvas holds {budget}; select less code, or fewer "
            "spans further apart, or raise the context budget (contextTokens)")
    first, last = token_ranges[0][0], token_ranges[-1][1]
    prefix_n, suffix_n = _split_context(context, first, len(ids) - last)
    prefix, suffix = ids[first - prefix_n:first], ids[last:last + suffix_n]

    batch: list[list[int]] = []
    slots: list[list[tuple[int, int]]] = []
    for r in range(row_count):
        row, row_slots = list(frame_start) + list(prefix), []
        for i, template in enumerate(templates):
            row_slots.append((len(row), len(template[r])))
            row.extend(template[r])
            if i < len(gaps):
                row.extend(gaps[i])
        row.extend(suffix)
        row.extend(frame_end)
        batch.extend([row] * samples)
        slots.extend([row_slots] * samples)
    width = max(len(row) for row in batch)
    input_ids = torch.full((len(batch), width), tokenizer.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    editable = torch.zeros((len(batch), width), dtype=torch.bool)
    for b, (row, row_slots) in enumerate(zip(batch, slots)):
        input_ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[b, :len(row)] = 1
        for start, length in row_slots:
            editable[b, start:start + length] = True
    return Canvas(input_ids, attention_mask, editable, slots, regions, spans, old,
                  prefix_n, suffix_n)


def _text_window(doc: SourceDocument, start: int, end: int, budget: int) -> tuple[int, int]:
    """Bytes [lo, hi) around [start, end) to tokenize, cut at line starts so the tokens at the
    window's edges are those of the whole file."""
    reach = budget * _BYTES_PER_TOKEN
    source = doc.source
    lo = max(0, start - reach)
    if lo > 0:
        lo = source.rfind(b"\n", 0, lo) + 1
    hi = min(len(source), end + reach)
    if hi < len(source):
        newline = source.find(b"\n", hi)
        hi = len(source) if newline < 0 else newline + 1
    return lo, hi


def _encode_pieces(tokenizer: InfillTokenizer, source: bytes,
                   edges: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """ids [n] and byte offsets [n, 2] of source[edges[0]:edges[-1]], tokenized piece by piece
    between consecutive edges, so a token never crosses an edge."""
    all_ids, all_offsets = [np.zeros(0, dtype=np.int64)], [np.zeros((0, 2), dtype=np.int64)]
    for lo, hi in zip(edges, edges[1:]):
        if hi > lo:
            ids, offsets = tokenizer.encode(source[lo:hi].decode("utf-8"))
            all_ids.append(ids)
            all_offsets.append(offsets + lo)
    return np.concatenate(all_ids), np.concatenate(all_offsets)


def _token_range(offsets: np.ndarray, span: MaskedSpan,
                 allow_empty: bool = False) -> tuple[int, int]:
    """Tokens [a, b) that overlap the span's bytes (a == b: none, for an insertion point)."""
    a = int(np.searchsorted(offsets[:, 1], span.start_byte, side="right"))
    b = int(np.searchsorted(offsets[:, 0], span.end_byte, side="left"))
    if b < a or (b == a and not allow_empty):
        raise SpanOutsideCanvasError("the span holds no token of the tokenized text")
    return a, b


def _split_context(budget: int, before: int, after: int) -> tuple[int, int]:
    """Context tokens taken before and after: two thirds of the budget before (code above a
    span says more about it), the rest after, and what one side cannot use goes to the other."""
    prefix = min(before, math.ceil(budget * 2 / 3))
    suffix = min(after, budget - prefix)
    prefix = min(before, budget - suffix)
    return prefix, suffix


def _anchor_template(doc: SourceDocument, ids: np.ndarray, offsets: np.ndarray, a: int, b: int,
                     tokenizer: InfillTokenizer) -> list[int]:
    """The span's own tokens with keywords and identifiers kept and every other token masked."""
    anchors = annotate_tokens(doc, offsets[a:b], unit="byte").anchors
    return [int(i) if cls != OTHER else tokenizer.mask_id
            for i, cls in zip(ids[a:b].tolist(), anchors.tolist())]
