"""The reference sampler the benchmark (`python -m engine.bench`) compares the engine against:
the textbook masked-diffusion decoder with none of the engine's shortcuts.

Every step is a FULL forward over the whole window (`model.logits`, logits at every position,
no key/value cache), and exactly ONE token is unmasked per step: the still-masked span position
whose greedy (argmax) token is the most probable. So a canvas with n mask tokens takes exactly n
forward passes. No length candidates (one canvas row), no parallel decoding, no anchored order,
no repair.
"""

from __future__ import annotations

import torch

from ..syntax import SourceDocument
from .candidates import decode_row, span_edits
from .canvas import Canvas
from .request import SpanEdit
from .vocab import InfillTokenizer


@torch.no_grad()
def naive_infill(model, tokenizer: InfillTokenizer, canvas_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, editable: torch.Tensor
                 ) -> tuple[torch.Tensor, int]:
    """Decode every mask token of `canvas_ids` [B, L] (B is 1 in the benchmark) that lies in
    `editable` [B, L], one per row per full forward, greedy.

    Returns the decoded ids [B, L] (a copy; the input is left alone) and the number of forward
    passes run (the largest number of masks in a row).
    """
    ids = canvas_ids.clone()
    editable = editable.to(ids.device).bool()
    mask_id = tokenizer.mask_id
    masked = (ids == mask_id) & editable
    rows = torch.arange(ids.shape[0], device=ids.device)
    passes = 0
    while bool(masked.any()):
        logits = model.logits(ids, attention_mask=attention_mask).float()  # [B, L, V]
        passes += 1
        logits[..., mask_id] = -torch.inf  # the absorbing state is never an answer
        confidence, token = torch.softmax(logits, dim=-1).max(dim=-1)  # [B, L]
        confidence = confidence.masked_fill(~masked, -torch.inf)
        position = confidence.argmax(dim=-1)  # [B]: the most confident masked position
        todo = masked[rows, position]  # rows with no mask left take no token
        ids[rows[todo], position[todo]] = token[rows[todo], position[todo]]
        masked[rows[todo], position[todo]] = False
    return ids, passes


def naive_span_edits(doc: SourceDocument, canvas: Canvas, ids: torch.Tensor, row: int,
                     tokenizer: InfillTokenizer) -> list[SpanEdit]:
    """The span edits of `row` of decoded `ids` [B, L], read back exactly as the engine reads
    its candidates (`decode_row`: pads and end tokens deleted; `span_edits`: trimmed to the
    span's own bytes when the context bytes the edge tokens shared were kept)."""
    return span_edits(doc, canvas, decode_row(canvas, ids.cpu(), row, tokenizer))


def naive_span_texts(doc: SourceDocument, canvas: Canvas, ids: torch.Tensor, row: int,
                     tokenizer: InfillTokenizer) -> list[str]:
    """The new text of each span of `row` (see `naive_span_edits`)."""
    return [edit.new_text for edit in naive_span_edits(doc, canvas, ids, row, tokenizer)]
