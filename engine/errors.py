"""Typed errors a user of the engine can meet, each with a message that says what to do.

Every error derives from `AstdiffuseError`, so callers (the CLI, the Language Server) can catch
one class, show `str(err)` to the user and keep running.
"""

from __future__ import annotations


class AstdiffuseError(Exception):
    """Base class of every error the engine raises on bad input."""


class UnsupportedLanguageError(AstdiffuseError):
    """The file extension, LSP languageId or language name has no grammar here."""

    def __init__(self, requested: str, supported: list[str]):
        self.requested = requested
        self.supported = sorted(supported)
        super().__init__(
            f"unsupported language {requested!r}; supported languages: {', '.join(self.supported)}"
            " (pass one of them explicitly, e.g. --language python)"
        )


class SourceDecodeError(AstdiffuseError):
    """The bytes are not UTF-8 text (the engine reads and writes UTF-8 only)."""

    def __init__(self, message: str, byte_offset: int | None = None):
        self.byte_offset = byte_offset
        super().__init__(message)


class BinaryFileError(SourceDecodeError):
    """The bytes look like a binary file (they contain NUL bytes)."""


class SourceTooLargeError(AstdiffuseError):
    """The document is larger than the configured limit."""

    def __init__(self, size: int, limit: int):
        self.size = size
        self.limit = limit
        super().__init__(
            f"document is {size:,} bytes, over the limit of {limit:,} bytes; "
            "raise the limit (max_bytes) or select code in a smaller file"
        )


class EmptySourceError(AstdiffuseError):
    """There is no code in the document to select."""


class InvalidRangeError(AstdiffuseError):
    """A position or range lies outside the document or is reversed."""


class NothingToInfillError(AstdiffuseError):
    """The selection or cursor does not cover any code that can be masked."""
