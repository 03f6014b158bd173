"""Languages and documents: lookup by name, extension and LSP id; bad input gets typed errors."""

import pytest

from engine.errors import (AstdiffuseError, BinaryFileError, SourceDecodeError,
                           SourceTooLargeError, UnsupportedLanguageError)
from engine.syntax import (SourceDocument, get_grammar, grammar_for_lsp_id, grammar_for_path,
                           supported_languages)


@pytest.mark.parametrize("path, language", [
    ("a.py", "python"), ("a.pyi", "python"), ("x/y.JS", "javascript"), ("c.jsx", "javascript"),
    ("d.ts", "typescript"), ("e.tsx", "tsx"), ("f.go", "go"), ("g.rs", "rust"), ("H.java", "java"),
])
def test_language_from_extension(path, language):
    assert grammar_for_path(path).name == language


@pytest.mark.parametrize("lsp_id, language", [
    ("python", "python"), ("javascriptreact", "javascript"), ("typescriptreact", "tsx"),
    ("typescript", "typescript"), ("go", "go"), ("rust", "rust"), ("java", "java"),
])
def test_language_from_lsp_id(lsp_id, language):
    assert grammar_for_lsp_id(lsp_id).name == language
    assert get_grammar(lsp_id).name == language


def test_unsupported_language_is_a_typed_error_that_lists_the_supported_ones():
    with pytest.raises(UnsupportedLanguageError) as info:
        grammar_for_path("notes.cob")
    assert ".cob" in str(info.value) and "python" in str(info.value)
    with pytest.raises(UnsupportedLanguageError):
        grammar_for_lsp_id("cobol")
    with pytest.raises(UnsupportedLanguageError, match="no extension"):
        grammar_for_path("Makefile")
    assert isinstance(info.value, AstdiffuseError)
    assert "python" in supported_languages()


def test_document_from_bytes_and_str_agree():
    text = "s = 'héllo 😀'\n"
    by_bytes = SourceDocument(text.encode(), "python")
    by_str = SourceDocument(text, "python")
    assert by_bytes.source == by_str.source and by_bytes.text == by_str.text
    assert str(by_bytes.root) == str(by_str.root)


def test_binary_file_is_rejected():
    with pytest.raises(BinaryFileError, match="binary"):
        SourceDocument(b"\x7fELF\x00\x01\x02", "python")


def test_invalid_utf8_names_the_byte_and_line():
    with pytest.raises(SourceDecodeError, match="byte 11, line 2") as info:
        SourceDocument(b"x = 1\ny = '\xff'\n", "python")
    assert info.value.byte_offset == 11


def test_lone_surrogates_are_rejected():
    with pytest.raises(SourceDecodeError):
        SourceDocument("x = '\ud800'", "python")


def test_document_over_the_limit_is_rejected(tmp_path):
    with pytest.raises(SourceTooLargeError, match="over the limit"):
        SourceDocument(b"x = 1\n" * 100, "python", max_bytes=50)
    path = tmp_path / "big.py"
    path.write_bytes(b"#" * 200)
    with pytest.raises(SourceTooLargeError):
        SourceDocument.from_path(path, max_bytes=100)


def test_empty_document_parses():
    doc = SourceDocument(b"", "python")
    assert doc.root.type == "module" and not doc.root.has_error
    assert doc.index.line_count == 1


def test_from_path_uses_the_extension_unless_told(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("let x = 1;\n")
    with pytest.raises(UnsupportedLanguageError):
        SourceDocument.from_path(path)
    assert SourceDocument.from_path(path, "javascript").language == "javascript"
