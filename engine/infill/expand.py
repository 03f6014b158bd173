"""Variable-length decoding for models trained to grow and shrink a span (DreamOn): the canvas
holds a few masks per span; a mask decoded as the expand token becomes two masks, one decoded
as an end token is deleted, so the span finds its own length. Per step: a full forward over
each row, the draw and order of `engine.infill.orders` (DreamOn's sampler is Dream's), the
schedule of `engine.infill.sampler` (ceil(masks / steps left) positions, plus any above the
threshold), then the rows are rebuilt. A span grows by at most `expand_budget` tokens; past it
the expand token is never drawn (DreamOn subtracts 1e9 from its logit there)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .orders import ORDERS, draw, sampling_distribution
from .sampler import RowGroup, stopped_groups


@dataclass
class ExpandingRow:
    """One canvas row as lists: its tokens, which are masks still to decode, which the model
    wrote, their log-probabilities, and each position's span (-1: context)."""

    tokens: list[int]
    masked: list[bool]
    generated: list[bool]
    logp: list[float]
    span_of: list[int]
    grown: list[int]  # per span: tokens added by expansion so far

    def slots(self, spans: int) -> list[tuple[int, int]]:
        """(first position, length) of each span; an emptied span sits where it was."""
        out, last = [], 0
        for span in range(spans):
            where = [p for p, s in enumerate(self.span_of) if s == span]
            if where:
                last = where[-1] + 1
                out.append((where[0], len(where)))
            else:
                before = [p for p, s in enumerate(self.span_of) if 0 <= s < span]
                out.append(((before[-1] + 1) if before else _first_after(self.span_of, span),
                            0))
        return out


def _first_after(span_of: list[int], span: int) -> int:
    later = [p for p, s in enumerate(span_of) if s > span]
    return later[0] if later else len(span_of)


def rows_from_state(ids: torch.Tensor, attention: torch.Tensor, masked: torch.Tensor,
                    slots: list[list[tuple[int, int]]]) -> list[ExpandingRow]:
    """ExpandingRows of a stacked canvas batch (right padding dropped)."""
    out = []
    for r in range(ids.shape[0]):
        length = int(attention[r].sum())
        span_of = [-1] * length
        for index, (start, size) in enumerate(slots[r]):
            for p in range(start, start + size):
                span_of[p] = index
        row_masked = masked[r, :length].tolist()
        out.append(ExpandingRow(ids[r, :length].tolist(), row_masked, list(row_masked),
                                [0.0] * length, span_of, [0] * len(slots[r])))
    return out


class ExpandingSampler:
    """Decodes `ExpandingRow`s with a model's `logits`; decisions per `RowGroup` (rows
    [start, stop) of one request, its options and random stream)."""

    def __init__(self, model, *, mask_id: int, expand_id: int, end_ids: list[int],
                 pad_id: int, groups: list[RowGroup]):
        self.model = model
        self.mask_id, self.expand_id, self.pad_id = mask_id, expand_id, pad_id
        self.end_ids = frozenset(end_ids)
        self.groups = groups
        self.forward_passes = 0

    def batch(self, rows: list[ExpandingRow]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids and attention [B, L] of `rows`, right-padded."""
        width = max(len(row.tokens) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row.tokens)] = torch.tensor(row.tokens, dtype=torch.long)
            attention[r, :len(row.tokens)] = 1
        return ids, attention

    def run(self, rows: list[ExpandingRow], steps: list[int], on_step=None) -> int:
        """Decode until no row has a mask left (or a guard on the step count trips); returns
        the steps taken. `steps` [groups]: the planned steps per group; `on_step(group, step,
        total, rows)` after each step of a group."""
        step = 0
        cap = 4 * max(steps) + sum(len(r.tokens) for r in rows) + sum(
            g.options.expand_budget * len(rows[g.start].grown) * 2 for g in self.groups) + 1
        owner = [0] * len(rows)  # each row's group
        for index, group in enumerate(self.groups):
            for r in range(*group.rows(len(rows)).indices(len(rows))):
                owner[r] = index
        while any(any(r.masked) for r in rows) and step < cap:
            for group in stopped_groups(self.groups):
                for row in rows[group.rows(len(rows))]:
                    row.masked = [False] * len(row.masked)
            busy = [r for r, row in enumerate(rows) if any(row.masked)]
            if not busy:
                break
            ids, attention = self.batch([rows[r] for r in busy])
            logits = self._masked_logits(ids, attention, [rows[r] for r in busy])
            self.forward_passes += 1
            for k, r in enumerate(busy):
                group = self.groups[owner[r]]
                self._step_row(rows[r], logits[k], group,
                               max(1, steps[owner[r]] - group.steps))
            step += 1
            for index in sorted({owner[r] for r in busy}):
                group = self.groups[index]
                group.steps += 1
                if on_step is not None:
                    mine = rows[group.rows(len(rows))]
                    left = any(any(row.masked) for row in mine)
                    on_step(group, group.steps,
                            group.steps + (max(0, steps[index] - group.steps) if left else 0),
                            mine)
        return step

    def _masked_logits(self, ids: torch.Tensor, attention: torch.Tensor,
                       rows: list[ExpandingRow]) -> list[torch.Tensor]:
        """Per row, the logits [n, V] at its masked positions (in position order)."""
        device = self.model.device
        where = [[p for p, m in enumerate(row.masked) if m] for row in rows]
        if hasattr(self.model, "logits_at"):
            index = torch.tensor([(r, p) for r, ps in enumerate(where) for p in ps])
            packed = self.model.logits_at(ids.to(device), attention.to(device), index[:, 0],
                                          index[:, 1])
            return list(packed.split([len(ps) for ps in where]))
        logits = self.model.logits(ids.to(device), attention_mask=attention.to(device))
        return [logits[r, ps] for r, ps in enumerate(where)]

    def _step_row(self, row: ExpandingRow, logits: torch.Tensor, group: RowGroup,
                  steps_left: int) -> None:
        """One step of one row; `logits` [n, V] at its masked positions."""
        options = group.options
        where = [p for p, m in enumerate(row.masked) if m]
        picked = logits.float()  # [n, V]
        for k, p in enumerate(where):  # no budget left for this span: never expand
            span = row.span_of[p]
            if row.grown[span] >= options.expand_budget:
                picked[k, self.expand_id] = float("-inf")
        probs = sampling_distribution(picked, options.temperature, options.top_p)
        drawn = draw(probs, options.temperature, group.generator)
        p_sampled = probs.gather(-1, drawn[:, None]).squeeze(-1)
        priority = ORDERS[options.order](probs, p_sampled)
        logp = torch.log_softmax(picked, dim=-1).gather(-1, drawn[:, None]).squeeze(-1)
        quota = math.ceil(len(where) / steps_left)
        ranked = priority.argsort(descending=True).tolist()
        chosen = set(ranked[:quota]) | {k for k in range(len(where))
                                        if float(p_sampled[k]) > options.threshold}
        expand, delete = set(), set()
        for k in sorted(chosen):
            p, token = where[k], int(drawn[k])
            span = row.span_of[p]
            if token == self.expand_id:
                if row.grown[span] < options.expand_budget:
                    expand.add(p)
                    row.grown[span] += 1
                continue  # over the budget this step: the mask stays for the next one
            if token in self.end_ids:
                delete.add(p)
            else:
                row.tokens[p], row.masked[p] = token, False
                row.logp[p] = max(float(logp[k]), -1e4)
        if expand or delete:
            _rebuild(row, expand, delete, self.mask_id)


def _rebuild(row: ExpandingRow, expand: set[int], delete: set[int], mask_id: int) -> None:
    """Apply one step's decisions: a deleted position goes, an expanded one becomes two masks."""
    fields = ("tokens", "masked", "generated", "logp", "span_of")
    new = {name: [] for name in fields}
    for p in range(len(row.tokens)):
        if p in delete:
            continue
        copies = 2 if p in expand else 1
        for _ in range(copies):
            if p in expand:
                values = (mask_id, True, True, 0.0, row.span_of[p])
            else:
                values = tuple(getattr(row, name)[p] for name in fields)
            for name, value in zip(fields, values):
                new[name].append(value)
    for name in fields:
        setattr(row, name, new[name])


def state_tensors(rows: list[ExpandingRow], pad_id: int):
    """(ids, attention, editable, masked, logp, generated) [B, L] of decoded rows."""
    width = max(len(r.tokens) for r in rows)
    shape = (len(rows), width)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    attention = torch.zeros(shape, dtype=torch.long)
    editable = torch.zeros(shape, dtype=torch.bool)
    masked = torch.zeros(shape, dtype=torch.bool)
    logp = torch.zeros(shape, dtype=torch.float32)
    generated = torch.zeros(shape, dtype=torch.bool)
    for r, row in enumerate(rows):
        n = len(row.tokens)
        ids[r, :n] = torch.tensor(row.tokens, dtype=torch.long)
        attention[r, :n] = 1
        editable[r, :n] = torch.tensor([s >= 0 for s in row.span_of])
        masked[r, :n] = torch.tensor(row.masked)
        logp[r, :n] = torch.tensor(row.logp)
        generated[r, :n] = torch.tensor(row.generated)
    return ids, attention, editable, masked, logp, generated
