"""From decoded canvas rows to candidate edits: the span texts (pads deleted), the new document,
its validity (parses, same node kinds), and which tokens to remask when it is broken."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..syntax import SourceDocument, check_replacement
from ..syntax.validity import ErrorRegion, edit_errors
from .canvas import Canvas
from .request import Candidate, SpanEdit
from .vocab import InfillTokenizer


@dataclass
class DecodedRow:
    """One canvas row read back: per span the slot positions of its kept tokens and their text."""

    row: int
    texts: list[str]  # new text of each span's token-aligned region
    positions: list[list[int]]  # per span: canvas positions of the tokens in its text
    token_ends: list[list[int]]  # per span: byte end of each of those tokens within its text
    new_source: bytes = b""
    parses: bool = False
    same_kind: list[bool] = dataclasses.field(default_factory=list)
    errors: list[ErrorRegion] = dataclasses.field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.parses and all(self.same_kind)


def decode_row(canvas: Canvas, ids: torch.Tensor, row: int, tokenizer: InfillTokenizer,
               template: bool = False) -> DecodedRow:
    """Span texts of `row` of `ids` [B, L] (CPU). A span ends at its first end token (pad or
    end-of-text: models pad the tail of a span with them, and Dream-style models may write
    anything after); stray masks (a capped run) are dropped.

    `template` (keep_anchors: the slot holds the user's kept tokens between the generated
    ones): an end token is only deleted, so that no kept token after it is lost."""
    ends_at = set(tokenizer.end_ids)
    never = tokenizer.special_ids  # no special token is ever written into the user's text
    values = ids[row].tolist()
    texts, positions, ends = [], [], []
    for start, length in canvas.slots[row]:
        kept = []
        for p in range(start, start + length):
            if values[p] in ends_at:
                if template:
                    continue
                break
            if values[p] != tokenizer.mask_id and values[p] not in never:
                kept.append(p)
        tokens = [values[p] for p in kept]
        texts.append(tokenizer.decode(tokens))
        # byte end of each token: decode prefixes (spans are short; exact for multi-byte chars)
        ends.append([len(tokenizer.decode(tokens[:k + 1]).encode("utf-8"))
                     for k in range(len(tokens))])
        positions.append(kept)
    return DecodedRow(row, texts, positions, ends)


def judge(doc: SourceDocument, canvas: Canvas, decoded: DecodedRow,
          kind_rule: bool = True) -> DecodedRow:
    """Apply every span's text (last span first, so earlier offsets hold) and check each.

    `kind_rule=False` (exact holes): a span need not re-form nodes of the replaced kind; only
    garbage (a NUL, undecodable bytes) makes it wrong, and the file must still parse."""
    current = doc
    same: list[bool] = []
    for span, (a, b), text in reversed(list(zip(canvas.spans, canvas.regions, decoded.texts))):
        region = dataclasses.replace(span, start_byte=a, end_byte=b)
        check = check_replacement(current, region, text)
        # A NUL or an undecodable byte sequence is never code the user wants, whatever the
        # parser makes of it.
        garbage = "\x00" in text or ("\ufffd" in text and "\ufffd" not in span.text)
        same.append((check.same_kind or not kind_rule) and not garbage)
        current = SourceDocument.generated(check.new_source, doc.grammar)
    decoded.same_kind = same[::-1]
    decoded.new_source = current.source
    decoded.parses, decoded.errors = edit_errors(doc, current.tree)
    return decoded


def repair_positions(canvas: Canvas, decoded: DecodedRow, logp: torch.Tensor) -> list[int]:
    """Canvas positions to remask in a broken row: the tokens touching an error region (and one
    neighbour each side, where a missing token most likely belongs); when no error falls on a
    span's tokens but the span is of another kind, or an error touches the span where it wrote
    nothing (it emptied a Python block), the least likely third of that span's slot."""
    out: set[int] = set()
    shift = 0
    for i, ((a, b), text) in enumerate(zip(canvas.regions, decoded.texts)):
        start = a + shift
        shift += len(text.encode("utf-8")) - (b - a)
        slot_start, slot_len = canvas.slots[decoded.row][i]
        hit = False
        begin = 0
        for position, end in zip(decoded.positions[i], decoded.token_ends[i]):
            lo, hi = start + begin, start + end
            if any(e.start_byte <= hi and e.end_byte >= lo for e in decoded.errors):
                out.update(p for p in (position - 1, position, position + 1)
                           if slot_start <= p < slot_start + slot_len)
                hit = True
            begin = end
        # an error at the span but at none of its tokens: the span wrote nothing there (a
        # missing token at its edge; a Python block it emptied, which sits at the header's
        # colon, only whitespace before the span)
        end_ = start + len(text.encode("utf-8"))
        touched = any((e.start_byte <= end_ and e.end_byte >= start)
                      or (e.kind == "empty" and e.end_byte <= start
                          and not decoded.new_source[e.end_byte:start].strip())
                      for e in decoded.errors)
        if not hit and (touched or not (decoded.same_kind[i] and decoded.parses)):
            slot = list(range(slot_start, slot_start + slot_len))
            if decoded.errors and decoded.same_kind[i] and not touched:
                continue  # this span is fine; the error is elsewhere
            ranked = sorted(slot, key=lambda p: float(logp[decoded.row, p]))
            out.update(ranked[:max(1, slot_len // 3)])
    return sorted(out)


def span_edits(doc: SourceDocument, canvas: Canvas, decoded: DecodedRow) -> list[SpanEdit]:
    """Each span's edit in the original document, trimmed back to the span's own bytes when the
    model kept the context bytes its first / last token shared with the span."""
    edits = []
    for i, (span, (a, b), text) in enumerate(zip(canvas.spans, canvas.regions, decoded.texts)):
        lead = doc.source[a:span.start_byte].decode("utf-8")
        tail = doc.source[span.end_byte:b].decode("utf-8")
        start, end, new = a, b, text
        if text.startswith(lead) and text.endswith(tail) and len(text) >= len(lead) + len(tail):
            start, end, new = span.start_byte, span.end_byte, text[len(lead):len(text) - len(tail)]
        _, length = canvas.slots[decoded.row][i]
        edits.append(SpanEdit(
            start_byte=start, end_byte=end, start_line=span.start_line, end_line=span.end_line,
            kind=span.kind, node_types=list(span.node_types),
            old_text=doc.source[start:end].decode("utf-8"), new_text=new, mask_tokens=length,
            tokens=len(decoded.positions[i])))
    return edits


def rank_key(candidate: Candidate) -> tuple:
    """Valid before invalid; then one that wrote code before one that only deleted code the
    user selected (a deletion stays a candidate, after the rewrites); then the score."""
    deleted = all(not e.new_text.strip() for e in candidate.spans) and \
        any(e.old_text.strip() for e in candidate.spans)
    return (candidate.valid, not deleted, candidate.score)


def ranked(candidates) -> list[Candidate]:
    return sorted(candidates, key=rank_key, reverse=True)
