"""A tokenized training example with its per-token syntax metadata: what shards store, what
masking strategies read, what the collator batches."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class TokenizedExample:
    """One window of one source file; arrays of length L unless said otherwise."""

    input_ids: np.ndarray  # int32 [L]: token ids
    tiers: np.ndarray  # int8 [L]: index into engine.syntax.TIERS
    depths: np.ndarray  # int16 [L]: depth of the token's node (root = 0)
    anchors: np.ndarray  # int8 [L]: index into engine.syntax.ANCHOR_CLASSES
    node_spans: np.ndarray  # int32 [M, 5]: token_start, token_end (exclusive), tier, role, depth
    #   of named nodes (role: index into engine.syntax.annotate.NODE_ROLES), token ranges
    #   relative to this window, only nodes wholly inside it
    path: str = ""  # source file, relative to its corpus root
    language: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)

    @classmethod
    def from_structure(cls, input_ids, structure, path: str = "",
                       language: str = "") -> "TokenizedExample":
        """A whole file's example from its token ids [L] and the `TokenStructure` that
        `annotate_tokens(..., node_spans=True)` gave for the same tokens."""
        return cls(
            input_ids=np.asarray(input_ids, dtype=np.int32).reshape(-1),
            tiers=structure.tiers.astype(np.int8),
            depths=np.clip(structure.depths, 0, np.iinfo(np.int16).max).astype(np.int16),
            anchors=structure.anchors.astype(np.int8),
            node_spans=structure.node_spans.astype(np.int32).reshape(-1, 5),
            path=path, language=language)

    def window(self, start: int, stop: int) -> "TokenizedExample":
        """Tokens [start, stop) as an example of their own: copies of the arrays, and the node
        spans wholly inside, re-based to the window's first token."""
        start, stop = max(0, start), min(len(self), stop)
        spans = self.node_spans.reshape(-1, 5)
        inside = spans[(spans[:, 0] >= start) & (spans[:, 1] <= stop)].copy()
        inside[:, :2] -= start
        return replace(self, input_ids=self.input_ids[start:stop].copy(),
                       tiers=self.tiers[start:stop].copy(),
                       depths=self.depths[start:stop].copy(),
                       anchors=self.anchors[start:stop].copy(), node_spans=inside)
