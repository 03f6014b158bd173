"""A tokenized training example with its per-token syntax metadata: what shards store, what
masking strategies read, what the collator batches."""

from __future__ import annotations

from dataclasses import dataclass

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
