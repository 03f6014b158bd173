"""Per-token structure: for each token of any tokenizer, the syntax-tree facts training and
sampling use — node type, depth, TreeDiff tier and anchor class.

The node of a token is the deepest node whose byte span intersects the token's (AnCoder's rule;
the leftmost one on a tie). A token that touches no leaf (whitespace, the text between escapes in
a string) gets the smallest node that contains it. Depth counts edges from the root (depth 0).
The tier is that of the nearest ancestor-or-self whose type sets one (see `node_tables`); the
anchor class (keyword / identifier / other) is that of the node when it is a leaf, else `other`.

With `node_spans=True` it also gives the token range of every named node below the root (the
AST spans TreeDiff's span masking and the infill masking draw from): the tokens that intersect
the node, so a token straddling two siblings (`):`) belongs to both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import tree_sitter

from ..errors import InvalidRangeError
from .document import SourceDocument
from .node_tables import (ANCHOR_CLASSES, ANCHOR_INDEX, DEFAULT_TIER, INHERIT, TIERS,
                          UNKNOWN, CompiledTable)

OffsetUnit = Literal["byte", "char"]

NODE_ROLES: tuple[str, ...] = ("statement", "expression", "body", "other")


@dataclass
class TokenStructure:
    """Structure of N tokens; all arrays have shape [N]."""

    kind_ids: np.ndarray  # int32: tree-sitter kind id of each token's node
    depths: np.ndarray  # int32: depth of that node (root = 0)
    tiers: np.ndarray  # int8: index into TIERS
    anchors: np.ndarray  # int8: index into ANCHOR_CLASSES
    language: tree_sitter.Language = field(repr=False)
    unknown_types: Counter = field(default_factory=Counter)  # type -> nodes that fell to default
    # int32 [M, 5] with node_spans=True: token_start, token_end (exclusive), tier, role, depth of
    # each named node below the root that covers a token, in document order
    node_spans: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.kind_ids)

    def node_type(self, i: int) -> str:
        return _kind_name(self.language, int(self.kind_ids[i]))

    def node_types(self) -> list[str]:
        names: dict[int, str] = {}
        return [names.setdefault(k, _kind_name(self.language, k)) for k in self.kind_ids.tolist()]

    def tier_names(self) -> list[str]:
        return [TIERS[t] for t in self.tiers.tolist()]

    def anchor_names(self) -> list[str]:
        return [ANCHOR_CLASSES[a] for a in self.anchors.tolist()]

    def rows(self) -> list[dict]:
        """One dict per token: node_type, depth, tier, anchor."""
        return [
            {"node_type": n, "depth": d, "tier": t, "anchor": a}
            for n, d, t, a in zip(self.node_types(), self.depths.tolist(), self.tier_names(),
                                  self.anchor_names())
        ]


def _kind_name(language: tree_sitter.Language, kind_id: int) -> str:
    if kind_id >= language.node_kind_count:
        return "ERROR"
    return language.node_kind_for_id(kind_id) or "ERROR"


@dataclass
class _Leaves:
    starts: np.ndarray
    ends: np.ndarray
    depths: np.ndarray
    kinds: np.ndarray
    tiers: np.ndarray
    unknown: Counter
    named: list[tuple[int, int, int, int, int]]  # start, end, tier, kind id, depth


def _collect_leaves(tree: tree_sitter.Tree, table: CompiledTable, with_named: bool) -> _Leaves:
    """One depth-first pass: every non-empty leaf with its depth and effective tier (and, when
    asked, every named node below the root)."""
    tier_of = table.tier.tolist()
    starts, ends, depths, kinds, tiers = [], [], [], [], []
    named: list[tuple[int, int, int, int, int]] = []
    unknown: Counter = Counter()
    cursor = tree.walk()
    inherited = [DEFAULT_TIER]  # effective tier of each ancestor of the cursor's node
    while True:
        node = cursor.node
        kind = node.kind_id
        code = tier_of[kind]
        if code == INHERIT:
            code = inherited[-1]
        elif code == UNKNOWN:
            unknown[kind] += 1
            code = DEFAULT_TIER
        if with_named and node.is_named and len(inherited) > 1:
            named.append((node.start_byte, node.end_byte, code, kind, len(inherited) - 1))
        if cursor.goto_first_child():
            inherited.append(code)
            continue
        start, end = node.start_byte, node.end_byte
        if end > start:
            starts.append(start)
            ends.append(end)
            depths.append(len(inherited) - 1)
            kinds.append(kind)
            tiers.append(code)
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return _Leaves(np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64),
                               np.array(depths, dtype=np.int32), np.array(kinds, dtype=np.int32),
                               np.array(tiers, dtype=np.int8), unknown, named)
            inherited.pop()


def annotate_tokens(doc: SourceDocument, offsets: Sequence[tuple[int, int]] | np.ndarray,
                    unit: OffsetUnit = "byte", node_spans: bool = False) -> TokenStructure:
    """Structure of tokens given their [start, end) offsets in bytes of `doc.source` or in
    characters (code points) of `doc.text` — `offset_mapping` of a transformers tokenizer is
    in characters. Tokens may overlap (byte-level BPE splits a multi-byte character into
    tokens that share its character offsets); each is looked up on its own."""
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if unit == "char":
        spans = doc.index.byte_offsets(spans.ravel()).reshape(-1, 2)
    elif unit != "byte":
        raise ValueError(f"unit must be 'byte' or 'char', not {unit!r}")
    if spans.size:
        if spans.min() < 0 or spans.max() > len(doc.source):
            raise InvalidRangeError(f"token offsets must lie in 0..{len(doc.source)} bytes")
        if (spans[:, 1] < spans[:, 0]).any():
            raise InvalidRangeError("a token ends before it starts")
    table = doc.grammar.table
    leaves = _collect_leaves(doc.tree, table, node_spans)
    count = len(spans)
    kind_ids = np.zeros(count, dtype=np.int32)
    depths = np.zeros(count, dtype=np.int32)
    tiers = np.full(count, DEFAULT_TIER, dtype=np.int8)
    starts, ends = spans[:, 0], spans[:, 1]
    # Leaves are disjoint and sorted: token t intersects leaves first[t] .. last[t] (inclusive).
    first = np.searchsorted(leaves.ends, starts, side="right")
    last = np.searchsorted(leaves.starts, ends, side="left") - 1
    hits = (first <= last) & (ends > starts)
    single = hits & (first == last)
    chosen = np.where(single, first, 0)
    multi = np.nonzero(hits & ~single)[0]
    for t in multi.tolist():  # a token over several leaves: the deepest, leftmost on a tie
        window = leaves.depths[first[t]:last[t] + 1]
        chosen[t] = first[t] + int(np.argmax(window))
    picked = np.nonzero(hits)[0]
    leaf = chosen[picked]
    kind_ids[picked] = leaves.kinds[leaf]
    depths[picked] = leaves.depths[leaf]
    tiers[picked] = leaves.tiers[leaf]
    _fill_gaps(doc, table, np.nonzero(~hits)[0], starts, ends, kind_ids, depths, tiers)
    anchors = table.anchor[kind_ids]
    is_leaf_kind = np.zeros(count, dtype=bool)
    is_leaf_kind[picked] = True
    anchors = np.where(is_leaf_kind, anchors, ANCHOR_INDEX["other"]).astype(np.int8)
    unknown = Counter({_kind_name(doc.grammar.language, k): n for k, n in leaves.unknown.items()})
    spans = _node_token_spans(table, leaves.named, starts, ends) if node_spans else None
    return TokenStructure(kind_ids, depths, tiers, anchors, doc.grammar.language, unknown, spans)


def _node_token_spans(table: CompiledTable, named: list[tuple[int, int, int, int, int]],
                      starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Token ranges [first, last + 1) of the tokens intersecting each named node."""
    if not named or not len(starts):
        return np.zeros((0, 5), dtype=np.int32)
    nodes = np.array(named, dtype=np.int64)
    node_start, node_end, tier, kind, depth = nodes.T
    # Tokens are sorted by start; ends are sorted too for tokenizers' offsets (checked below).
    first = np.searchsorted(ends, node_start, side="right")
    last = np.searchsorted(starts, node_end, side="left")
    if (np.diff(ends) < 0).any():  # unsorted ends (overlapping odd offsets): exact slow path
        first = np.array([np.argmax(ends > s) if (ends > s).any() else len(ends)
                          for s in node_start])
    role = np.full(len(nodes), NODE_ROLES.index("other"), dtype=np.int64)
    role[table.is_expression[kind]] = NODE_ROLES.index("expression")
    role[table.is_statement[kind]] = NODE_ROLES.index("statement")
    role[table.is_body[kind]] = NODE_ROLES.index("body")
    keep = last > first
    out = np.stack([first, last, tier, role, depth], axis=1)[keep]
    return out.astype(np.int32)


def _fill_gaps(doc: SourceDocument, table: CompiledTable, gap_tokens: np.ndarray,
               starts: np.ndarray, ends: np.ndarray, kind_ids: np.ndarray, depths: np.ndarray,
               tiers: np.ndarray) -> None:
    """Tokens that touch no leaf: the smallest node containing them, cached per node."""
    root = doc.root
    tier_of = table.tier.tolist()
    cache: dict[int, tuple[int, int]] = {}  # node id -> (depth, effective tier)

    def facts(node: tree_sitter.Node) -> tuple[int, int]:
        chain = []
        current: tree_sitter.Node | None = node
        while current is not None and current.id not in cache:
            chain.append(current)
            current = current.parent
        depth, tier = cache[current.id] if current is not None else (-1, DEFAULT_TIER)
        for ancestor in reversed(chain):
            code = tier_of[ancestor.kind_id]
            tier = tier if code == INHERIT else DEFAULT_TIER if code == UNKNOWN else code
            depth += 1
            cache[ancestor.id] = (depth, tier)
        return cache[node.id]

    for t in gap_tokens.tolist():
        start, end = int(starts[t]), int(ends[t])
        node = root.descendant_for_byte_range(start, end) if end > start else root
        if node is None:
            node = root
        kind_ids[t] = node.kind_id
        depths[t], tiers[t] = facts(node)
