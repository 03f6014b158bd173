"""engine.offsets: UTF-16 / code point / UTF-8 conversions, on non-ASCII text, emoji and CRLF."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidRangeError
from engine.offsets import TextIndex

TEXT = "a = 'é'\r\nb = '😀x'\rc\n\n"  # CRLF, lone CR, LF, empty line; é is 2 bytes, 😀 4 bytes


def test_lines_split_on_lf_crlf_and_lone_cr():
    index = TextIndex(TEXT)
    assert index.line_count == 5
    assert [index.line_text(i) for i in range(5)] == ["a = 'é'", "b = '😀x'", "c", "", ""]


def test_utf16_positions_count_surrogate_pairs():
    index = TextIndex(TEXT)
    x_offset = TEXT.index("x")
    assert index.position_at(x_offset, "utf-16") == (1, 7)  # 😀 is two UTF-16 code units
    assert index.position_at(x_offset, "utf-32") == (1, 6)
    assert index.position_at(x_offset, "utf-8") == (1, 9)  # 😀 is four bytes
    assert index.offset_at(1, 7, "utf-16") == x_offset
    assert index.offset_at(1, 6, "utf-32") == x_offset
    assert index.offset_at(1, 9, "utf-8") == x_offset


def test_bytes_and_code_points():
    index = TextIndex(TEXT)
    x_offset = TEXT.index("x")
    x_byte = TEXT.encode().index(b"x")
    assert index.byte_offset(x_offset) == x_byte
    assert index.char_offset(x_byte) == x_offset
    assert index.byte_at(1, 7) == x_byte
    assert index.position_of_byte(x_byte) == (1, 7)
    assert index.line_of_byte(x_byte) == 1
    assert index.line_start_byte(1) == TEXT.encode().index(b"b")


def test_byte_inside_a_character_is_an_error():
    index = TextIndex("é")
    with pytest.raises(InvalidRangeError, match="inside a multi-byte"):
        index.char_offset(1)


def test_position_inside_surrogate_pair_snaps_to_its_start():
    index = TextIndex("😀b")
    assert index.offset_at(0, 1, "utf-16") == 0
    assert index.offset_at(0, 2, "utf-16") == 1


def test_character_past_line_end_clamps_to_line_end():
    index = TextIndex("ab\r\ncd")
    assert index.offset_at(0, 99) == 2  # before the CRLF, as the LSP specification says


def test_line_past_the_end_is_an_error_but_end_of_document_is_accepted():
    index = TextIndex("ab\ncd")
    assert index.offset_at(2, 0) == 5  # clients send (line_count, 0) for the end
    with pytest.raises(InvalidRangeError, match="outside the document"):
        index.offset_at(2, 1)
    with pytest.raises(InvalidRangeError):
        index.offset_at(7, 0)
    with pytest.raises(InvalidRangeError):
        index.offset_at(-1, 0)
    with pytest.raises(InvalidRangeError):
        index.byte_offset(6)


def test_unknown_encoding_is_rejected():
    with pytest.raises(ValueError, match="position encoding"):
        TextIndex("x").offset_at(0, 0, "utf-7")


def test_vectorised_byte_offsets_match_scalar():
    text = "héllo 😀 wörld\n"
    index = TextIndex(text)
    offsets = list(range(len(text) + 1))
    assert index.byte_offsets(offsets).tolist() == [index.byte_offset(o) for o in offsets]


_text = st.lists(
    st.sampled_from(list("ab \t") + ["\n", "\r\n", "\r", "é", "😀", "中", "\u2028"]),
    max_size=60,
).map("".join)


@given(_text, st.data())
def test_round_trip_offsets_positions_and_bytes(text, data):
    index = TextIndex(text)
    offset = data.draw(st.integers(0, len(text)))
    byte = index.byte_offset(offset)
    assert len(text[:offset].encode()) == byte
    assert index.char_offset(byte) == offset
    for encoding in ("utf-8", "utf-16", "utf-32"):
        line, character = index.position_at(offset, encoding)
        # An offset between \r and \n of a CRLF is not a position of its own: it maps to the
        # end of the line, which maps back to the \r.
        expected = offset
        if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
            expected = offset - 1
        assert index.offset_at(line, character, encoding) == expected


@given(_text)
def test_lines_agree_with_str_splitlines_on_lsp_breaks(text):
    # str.splitlines also splits on \u2028 and friends, which LSP does not; compare on
    # a text where those are replaced.
    plain = text.replace("\u2028", " ")
    index = TextIndex(plain)
    expected = plain.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert [index.line_text(i) for i in range(index.line_count)] == expected
