"""Which split (train / validation / test) a source file belongs to: a hash of its path only, so
training (`training.corpus`) and the engine's benchmark agree on the test files."""

from __future__ import annotations

import hashlib
from typing import Sequence


def split_bucket(relative_path: str, salt: str = "") -> float:
    """A number in [0, 1) from the SHA-1 of the (salted) relative path: uniform, stable."""
    digest = hashlib.sha1((salt + relative_path).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_of(relative_path: str, fractions: Sequence[float] = (0.90, 0.05, 0.05),
             salt: str = "") -> str:
    """The split of a file: depends only on its relative path (and the salt), so adding or
    removing other files never moves it."""
    bucket = split_bucket(relative_path, salt)
    if bucket < fractions[0]:
        return "train"
    if bucket < fractions[0] + fractions[1]:
        return "validation"
    return "test"
