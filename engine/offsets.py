"""Conversions between UTF-8 byte offsets, code-point offsets and LSP positions.

tree-sitter speaks UTF-8 bytes, Python strings code points, LSP UTF-16 code units by default
(or UTF-8 / UTF-32 when negotiated). This is the only module that does arithmetic on positions.

Line breaks are "\\n", "\\r\\n" and a lone "\\r", as the LSP specification defines them. Lines and
characters are 0-based here, as in LSP; the CLI converts to 1-based for people.
"""

from __future__ import annotations

import bisect
import re
from typing import Literal

import numpy as np

from .errors import InvalidRangeError

PositionEncoding = Literal["utf-8", "utf-16", "utf-32"]
POSITION_ENCODINGS: tuple[str, ...] = ("utf-8", "utf-16", "utf-32")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _unit_length(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == "utf-16":
        return 2 if code > 0xFFFF else 1
    if encoding == "utf-8":
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return 1


class TextIndex:
    """Line table of one text, for converting offsets and positions in both directions.

    Built once per document version; conversions cost O(log lines + line length).
    """

    def __init__(self, text: str):
        self.text = text
        self.data = text.encode("utf-8")
        self._ascii = len(self.data) == len(text)
        self._byte_of_char: np.ndarray | None = None
        starts = [0]
        ends = []
        for match in _LINE_BREAK.finditer(text):
            ends.append(match.start())
            starts.append(match.end())
        ends.append(len(text))
        self._line_starts = starts  # code-point offset where each line begins
        self._line_ends = ends  # code-point offset where each line's content ends (before its break)
        self._line_start_bytes = [self.byte_offset(s) for s in starts]

    # -- lines -------------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        """Number of lines; a text that ends with a line break has an empty last line."""
        return len(self._line_starts)

    def line_span(self, line: int) -> tuple[int, int]:
        """Code-point offsets [start, end) of a line's content, without its line break."""
        self._check_line(line)
        return self._line_starts[line], self._line_ends[line]

    def line_text(self, line: int) -> str:
        start, end = self.line_span(line)
        return self.text[start:end]

    def line_of_offset(self, offset: int) -> int:
        """0-based line that contains a code-point offset (a break belongs to its line)."""
        self._check_offset(offset)
        return bisect.bisect_right(self._line_starts, offset) - 1

    def line_of_byte(self, byte: int) -> int:
        """0-based line that contains a UTF-8 byte offset."""
        if not 0 <= byte <= len(self.data):
            raise InvalidRangeError(
                f"byte offset {byte} is outside the document (0..{len(self.data)})"
            )
        return bisect.bisect_right(self._line_start_bytes, byte) - 1

    def line_start_byte(self, line: int) -> int:
        self._check_line(line)
        return self._line_start_bytes[line]

    # -- code points <-> bytes ---------------------------------------------------------------

    def _byte_table(self) -> np.ndarray:
        if self._byte_of_char is None:
            codes = np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)
            widths = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
            table = np.zeros(len(codes) + 1, dtype=np.int64)
            np.cumsum(widths, out=table[1:])
            self._byte_of_char = table
        return self._byte_of_char

    def byte_offset(self, offset: int) -> int:
        """UTF-8 byte offset of a code-point offset (0 <= offset <= len(text))."""
        self._check_offset(offset)
        if self._ascii:
            return offset
        return int(self._byte_table()[offset])

    def char_offset(self, byte: int) -> int:
        """Code-point offset of a UTF-8 byte offset; the byte must start a character."""
        if not 0 <= byte <= len(self.data):
            raise InvalidRangeError(
                f"byte offset {byte} is outside the document (0..{len(self.data)})"
            )
        if self._ascii:
            return byte
        table = self._byte_table()
        index = int(np.searchsorted(table, byte))
        if table[index] != byte:
            raise InvalidRangeError(f"byte offset {byte} falls inside a multi-byte UTF-8 character")
        return index

    def byte_offsets(self, offsets: np.ndarray | list[int]) -> np.ndarray:
        """Vectorised `byte_offset` for many code-point offsets (token offsets, say)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.size and (offsets.min() < 0 or offsets.max() > len(self.text)):
            raise InvalidRangeError(f"offsets must lie in 0..{len(self.text)}")
        if self._ascii:
            return offsets
        return self._byte_table()[offsets]

    # -- LSP positions -----------------------------------------------------------------------

    def offset_at(self, line: int, character: int, encoding: str = "utf-16") -> int:
        """Code-point offset of an LSP position.

        A character past the end of its line means the end of the line (as the LSP specification
        says); a position inside a surrogate pair or a multi-byte sequence snaps to the start of
        that character. The position just past the last line, character 0, is the end of the
        text (clients send it for whole-document ranges); any other line out of range is an error.
        """
        _check_encoding(encoding)
        if line < 0 or character < 0:
            raise InvalidRangeError(f"negative position {line}:{character}")
        if line == self.line_count and character == 0:
            return len(self.text)
        self._check_line(line)
        start, end = self._line_starts[line], self._line_ends[line]
        if encoding == "utf-32":
            return min(start + character, end)
        units = 0
        for offset in range(start, end):
            units += _unit_length(self.text[offset], encoding)
            if units > character:
                return offset
        return end

    def position_at(self, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
        """LSP (line, character) of a code-point offset."""
        _check_encoding(encoding)
        line = self.line_of_offset(offset)
        start = self._line_starts[line]
        end = min(offset, self._line_ends[line])
        if encoding == "utf-32":
            return line, end - start
        return line, sum(_unit_length(c, encoding) for c in self.text[start:end])

    def byte_at(self, line: int, character: int, encoding: str = "utf-16") -> int:
        """UTF-8 byte offset of an LSP position."""
        return self.byte_offset(self.offset_at(line, character, encoding))

    def position_of_byte(self, byte: int, encoding: str = "utf-16") -> tuple[int, int]:
        """LSP (line, character) of a UTF-8 byte offset."""
        return self.position_at(self.char_offset(byte), encoding)

    # -- checks ------------------------------------------------------------------------------

    def _check_line(self, line: int) -> None:
        if not 0 <= line < self.line_count:
            raise InvalidRangeError(
                f"line {line} is outside the document, which has lines 0..{self.line_count - 1}"
            )

    def _check_offset(self, offset: int) -> None:
        if not 0 <= offset <= len(self.text):
            raise InvalidRangeError(
                f"offset {offset} is outside the document (0..{len(self.text)})"
            )


def _check_encoding(encoding: str) -> None:
    if encoding not in POSITION_ENCODINGS:
        raise ValueError(f"position encoding must be one of {POSITION_ENCODINGS}, not {encoding!r}")
