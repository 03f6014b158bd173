"""The tokenizer as the infill path needs it: source text -> ids with byte offsets, ids -> text,
the mask / pad / end ids, and the syntax layer's anchor classes applied to the vocabulary.

A token's anchor class is what the node tables say about its text: a keyword of the language, an
identifier, or other. The sampler's anchored order uses it on the tokens the model predicts.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from ..errors import AstdiffuseError
from ..offsets import TextIndex
from ..syntax import get_grammar
from ..syntax.node_tables import ANCHOR_INDEX

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_OPENERS, _CLOSERS = "([{", ")]}"
KEYWORD, IDENTIFIER, OTHER = (ANCHOR_INDEX[name] for name in ("keyword", "identifier", "other"))


class MissingMaskTokenError(AstdiffuseError):
    """The tokenizer has no mask token, so nothing can be masked for the model to fill."""


class InfillTokenizer:
    """Wraps a transformers fast tokenizer (ours from `tokenizer.json`, or a model's own).

    `mask_id` must exist (MissingMaskTokenError otherwise). `end_ids` end a span early and are
    deleted from its text: the pad and end-of-text roles, and the family's own end tokens
    (`end_tokens`: DiffuCoder's <|dlm_pad|>, whatever its pad role says). `expand_id` (DreamOn's
    <|expand|>) turns one mask into two while decoding. `special_ids` are every special token
    but the mask: none of them is ever written into the user's text. `frame_start` /
    `frame_end` are the ids the family's canvas starts and ends with (its `frame` roles, e.g.
    ("bos_token", "eos_token"); a role the tokenizer lacks falls back to `fallback_ids`, the
    model config's ids).
    """

    def __init__(self, tokenizer, mask_token_id: int | None = None, *,
                 end_tokens: tuple = (), expand_token: str | None = None,
                 frame: tuple = (None, None), fallback_ids: dict | None = None):
        from tokenizers import Tokenizer

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise AstdiffuseError("the infill engine needs a fast (Rust `tokenizers`) tokenizer; "
                                  f"got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        # Source text is text: a literal "<|mask|>" in a file must not become the mask token.
        self._encoder = Tokenizer.from_str(backend.to_str())
        self._encoder.encode_special_tokens = True
        mask = mask_token_id if mask_token_id is not None else tokenizer.mask_token_id
        if mask is None:
            raise MissingMaskTokenError(
                "the tokenizer has no mask token, so spans cannot be masked; use the tokenizer "
                "the model was trained with (it defines <|mask|>), or pass mask_token_id")
        self.mask_id = int(mask)
        self.vocab_size = len(tokenizer)
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else eos if eos is not None else self.mask_id)
        named = {int(i) for i in (self.token_id(t) for t in end_tokens) if i is not None}
        self.end_ids = sorted(({int(i) for i in (pad, eos) if i is not None} | named)
                              - {self.mask_id})
        self.expand_id = self.token_id(expand_token) if expand_token else None
        added = backend.get_added_tokens_decoder()
        special = {int(i) for i, token in added.items() if token.special}
        special |= {int(i) for i in tokenizer.all_special_ids}
        self.special_ids = frozenset(special | set(self.end_ids)
                                     | ({self.expand_id} if self.expand_id is not None else set())
                                     ) - {self.mask_id}
        fallback_ids = fallback_ids or {}
        self.frame_start, self.frame_end = (
            [] if role is None else [i for i in [self._role_id(role, fallback_ids)]
                                     if i is not None]
            for role in frame)

    def token_id(self, token: str | None) -> int | None:
        """The id of the token string `token`, or None when the vocabulary lacks it."""
        if token is None:
            return None
        index = self.tokenizer.backend_tokenizer.token_to_id(token)
        return None if index is None else int(index)

    def _role_id(self, role: str, fallback_ids: dict) -> int | None:
        index = getattr(self.tokenizer, f"{role}_id", None) if role.endswith("_token") else None
        if index is None:
            index = fallback_ids.get(role.removesuffix("_token") + "_token_id")
        return None if index is None else int(index)

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """ids int64 [n] and byte offsets int64 [n, 2] of `text` (no special tokens added)."""
        encoding = self._encoder.encode(text, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        chars = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        if text.isascii():
            return ids, chars
        return ids, TextIndex(text).byte_offsets(chars.ravel()).reshape(-1, 2)

    def decode(self, ids) -> str:
        """Text of `ids` exactly (no clean-up of spaces)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    def token_texts(self) -> list[str]:
        """The decoded text of every token id, once."""
        return _token_texts(self)

    def anchor_classes(self, language: str) -> np.ndarray:
        """int8 [vocab]: KEYWORD, IDENTIFIER or OTHER for each token id in `language`."""
        return _anchor_classes(self, get_grammar(language).name)

    def bracket_delta(self) -> np.ndarray:
        """int8 [vocab]: opening minus closing brackets in each token's text (nesting proxy)."""
        return _bracket_delta(self)

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=8)
def _token_texts(tokenizer: InfillTokenizer) -> list[str]:
    # one batched call into the Rust tokenizer: Qwen-family vocabularies hold 150k tokens
    return tokenizer.tokenizer.batch_decode([[i] for i in range(tokenizer.vocab_size)],
                                            skip_special_tokens=False,
                                            clean_up_tokenization_spaces=False)


@lru_cache(maxsize=32)
def _anchor_classes(tokenizer: InfillTokenizer, language: str) -> np.ndarray:
    keywords = get_grammar(language).table.table.keywords
    classes = np.full(tokenizer.vocab_size, OTHER, dtype=np.int8)
    for i, text in enumerate(tokenizer.token_texts()):
        word = text.strip()
        if i == tokenizer.mask_id or i in tokenizer.special_ids or not word:
            continue
        if word in keywords:
            classes[i] = KEYWORD
        elif _IDENTIFIER.match(word):
            classes[i] = IDENTIFIER
    return classes


@lru_cache(maxsize=8)
def _bracket_delta(tokenizer: InfillTokenizer) -> np.ndarray:
    delta = np.zeros(tokenizer.vocab_size, dtype=np.int8)
    for i, text in enumerate(tokenizer.token_texts()):
        delta[i] = sum(text.count(c) for c in _OPENERS) - sum(text.count(c) for c in _CLOSERS)
    return delta
