"""AnchorTree anchor weights: how hard the anchor loss pulls on each token of an example.

Keywords and identifiers are anchors with weight gamma * decay ** max(0, depth - d0); the rest 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.syntax.node_tables import ANCHOR_INDEX

ANCHOR_CLASS_IDS = (ANCHOR_INDEX["keyword"], ANCHOR_INDEX["identifier"])  # classes that anchor


@dataclass(frozen=True)
class AnchorWeights:
    """Parameters of the anchor weight. Defaults: full weight down to depth 2 (a top-level
    statement's keyword and a definition's name in Python), then 10% less per level, so a
    name six levels down weighs 0.9**4 ~ 0.66 of one at the top."""

    gamma: float = 1.0  # weight of a shallow anchor (scales the whole anchor loss term)
    decay: float = 0.9  # factor per level of depth below d0, in (0, 1]
    d0: int = 2  # depth (root = 0) down to which anchors keep the full weight gamma

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, not {self.gamma}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must lie in (0, 1], not {self.decay}")
        if self.d0 < 0:
            raise ValueError(f"d0 must be >= 0, not {self.d0}")

    def weights(self, anchors: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """float32 [L]: gamma * decay ** max(0, depth - d0) for keyword / identifier tokens, 0 for
        the others; `anchors` [L] indexes ANCHOR_CLASSES, `depths` [L] counts from the root."""
        anchors = np.asarray(anchors)
        depths = np.asarray(depths, dtype=np.float64)
        if anchors.shape != depths.shape:
            raise ValueError(f"anchors {anchors.shape} and depths {depths.shape} differ in shape")
        below = np.maximum(0.0, depths - self.d0)
        weights = self.gamma * np.power(self.decay, below)
        return np.where(np.isin(anchors, ANCHOR_CLASS_IDS), weights, 0.0).astype(np.float32)


def anchor_weights(example, params: AnchorWeights = AnchorWeights()) -> np.ndarray:
    """float32 [L]: the anchor weight of each token of a `TokenizedExample`."""
    return params.weights(example.anchors, example.depths)
