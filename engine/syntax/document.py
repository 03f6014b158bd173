"""A parsed source document: checked UTF-8 bytes, their text, the tree-sitter tree, a line index.

All bad input is rejected here with a typed error, before any other part of the engine sees it:
binary data, invalid UTF-8, documents over the size limit, unknown languages.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import tree_sitter

from ..errors import BinaryFileError, SourceDecodeError, SourceTooLargeError
from ..offsets import TextIndex
from .languages import Grammar, get_grammar, grammar_for_path

DEFAULT_MAX_BYTES = 8 * 1024 * 1024  # far above any hand-written source file; keeps memory bounded
_BINARY_SNIFF = 8192


def decode_source(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Check that bytes are UTF-8 source text and decode them."""
    if len(data) > max_bytes:
        raise SourceTooLargeError(len(data), max_bytes)
    if b"\x00" in data[:_BINARY_SNIFF]:
        raise BinaryFileError(
            "the file looks binary (it contains NUL bytes); select code in a text file",
            byte_offset=data.index(b"\x00"),
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SourceDecodeError(
            f"the file is not valid UTF-8 (byte {err.start}, line {line}: {err.reason}); "
            "re-save it as UTF-8",
            byte_offset=err.start,
        ) from None


class SourceDocument:
    """One version of one document, parsed.

    `source` is the UTF-8 bytes tree-sitter sees; `text` the same as a str. Byte offsets index
    `source`, code-point offsets `text`; `index` converts between them and LSP positions.
    """

    def __init__(self, source: bytes | str, grammar: Grammar | str, *,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        if isinstance(grammar, str):
            grammar = get_grammar(grammar)
        if isinstance(source, str):
            text = source
            data = source.encode("utf-8", errors="surrogatepass")
            if len(data) > max_bytes:
                raise SourceTooLargeError(len(data), max_bytes)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise SourceDecodeError(
                    "the text contains lone surrogates and cannot be encoded as UTF-8"
                ) from None
            if "\x00" in text[:_BINARY_SNIFF]:
                raise BinaryFileError("the text contains NUL characters; it looks binary")
        else:
            data = bytes(source)
            text = decode_source(data, max_bytes=max_bytes)
        self.source: bytes = data
        self.text: str = text
        self.grammar: Grammar = grammar
        self.tree: tree_sitter.Tree = grammar.parse(data)

    @classmethod
    def from_path(cls, path: str | Path, language: str | None = None, *,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> "SourceDocument":
        """Read a file; the language comes from its extension unless given."""
        path = Path(path)
        grammar = get_grammar(language) if language else grammar_for_path(path)
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceTooLargeError(size, max_bytes)
        return cls(path.read_bytes(), grammar, max_bytes=max_bytes)

    @classmethod
    def generated(cls, source: bytes, grammar: Grammar) -> "SourceDocument":
        """A document the engine built from model output: parsed, without the input checks
        (generated text may hold a NUL; the engine judges such text invalid itself)."""
        doc = cls.__new__(cls)
        doc.source = source
        doc.text = source.decode("utf-8", errors="replace")
        doc.grammar = grammar
        doc.tree = grammar.parse(source)
        return doc

    @property
    def language(self) -> str:
        return self.grammar.name

    @property
    def root(self) -> tree_sitter.Node:
        return self.tree.root_node

    @cached_property
    def index(self) -> TextIndex:
        return TextIndex(self.text)

    def __len__(self) -> int:
        return len(self.source)

    def __repr__(self) -> str:
        return f"SourceDocument({self.language}, {len(self.source)} bytes)"
