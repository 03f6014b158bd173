"""Editor selections -> what the engine masks: LSP ranges (in the negotiated position encoding)
to UTF-8 byte ranges, the document's language, and the syntax-tree spans a selection covers.

All position arithmetic is `engine.offsets.TextIndex`'s; this module only checks and converts.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from lsprotocol import types

from engine.errors import InvalidRangeError, UnsupportedLanguageError
from engine.offsets import POSITION_ENCODINGS, TextIndex
from engine.syntax import (MaskedSpan, SourceDocument, get_grammar, grammar_for_path,
                           masked_spans, supported_languages)

from .errors import InvalidArgumentsError


def encoding_name(kind: Any) -> str:
    """The engine's name ("utf-8" / "utf-16" / "utf-32") of an LSP PositionEncodingKind (an
    enum, its string value, or None: UTF-16, the protocol's default)."""
    value = getattr(kind, "value", kind) or "utf-16"
    if value not in POSITION_ENCODINGS:
        raise ValueError(f"unknown position encoding {value!r}")
    return value


def parse_range(raw: Any, where: str = "range") -> types.Range:
    """An LSP Range from a client's JSON (or a Range already); malformed -> InvalidArgumentsError
    naming `where`."""
    if isinstance(raw, types.Range):
        return raw
    if not isinstance(raw, dict):
        raise InvalidArgumentsError(f"{where} must be an LSP Range object "
                                    "{start: {line, character}, end: {line, character}}")
    points = []
    for end in ("start", "end"):
        point = raw.get(end)
        if not isinstance(point, dict):
            raise InvalidArgumentsError(f"{where}.{end} must be a position {{line, character}}")
        numbers = []
        for name in ("line", "character"):
            value = point.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentsError(
                    f"{where}.{end}.{name} must be a non-negative whole number, not {value!r}")
            numbers.append(value)
        points.append(types.Position(*numbers))
    return types.Range(*points)


def byte_range(index: TextIndex, rng: types.Range, encoding: str,
               where: str = "range") -> tuple[int, int]:
    """UTF-8 byte offsets [start, end) of an LSP range; a position past the end of its line
    means the end of the line (LSP), a line outside the document or a reversed range is an
    InvalidRangeError that names `where`."""
    try:
        start = index.byte_at(rng.start.line, rng.start.character, encoding)
        end = index.byte_at(rng.end.line, rng.end.character, encoding)
    except InvalidRangeError as err:
        raise InvalidRangeError(f"{where}: {err}") from None
    if end < start:
        raise InvalidRangeError(
            f"{where}: ends ({rng.end.line}:{rng.end.character}) before it starts "
            f"({rng.start.line}:{rng.start.character})")
    return start, end


def byte_ranges(index: TextIndex, ranges: list[types.Range], encoding: str
                ) -> list[tuple[int, int]]:
    """`byte_range` of each range (`ranges[i]` named in errors)."""
    return [byte_range(index, rng, encoding, f"ranges[{i}]") for i, rng in enumerate(ranges)]


def document_language(language_id: str | None, uri: str) -> str:
    """The engine's language of a document: its LSP languageId, or (when the client sent none or
    one we do not know) the file extension of its URI; UnsupportedLanguageError otherwise."""
    if language_id:
        try:
            return get_grammar(language_id).name
        except UnsupportedLanguageError:
            pass
    path = unquote(urlsplit(uri).path)
    try:
        return grammar_for_path(PurePosixPath(path)).name
    except UnsupportedLanguageError:
        raise UnsupportedLanguageError(language_id or PurePosixPath(path).suffix or uri,
                                       supported_languages()) from None


def plan_spans(text: str, language: str, ranges: list[tuple[int, int]],
               mode: str = "node") -> list[MaskedSpan]:
    """The spans the engine will mask for these byte ranges (the same rule it applies), so that
    a request fails fast (nothing to infill, empty document) before any model work."""
    return masked_spans(SourceDocument(text, language), ranges, mode)


def span_ranges(index: TextIndex, spans: list[MaskedSpan], encoding: str) -> list[types.Range]:
    """The LSP range of each span, in the client's encoding."""
    return [types.Range(types.Position(*index.position_of_byte(span.start_byte, encoding)),
                        types.Position(*index.position_of_byte(span.end_byte, encoding)))
            for span in spans]
