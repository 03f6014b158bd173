"""The supported languages: grammar wheels, file extensions, LSP languageIds and node tables.

A language is looked up by name, file extension or LSP languageId; anything else is an
`UnsupportedLanguageError` that lists what is supported.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import PurePath

import tree_sitter

from ..errors import UnsupportedLanguageError
from .node_tables import CompiledTable, compile_table, load_table


@dataclass(frozen=True)
class LanguageSpec:
    """Where a language's grammar and table come from and how editors name it."""

    name: str  # our name, used on the command line and in results
    grammar_module: str  # the official grammar wheel's module
    grammar_function: str  # the function in it that returns the language pointer
    table: str  # node table in tables/<table>.json
    extensions: tuple[str, ...]  # file extensions, lower case, with the dot
    lsp_ids: tuple[str, ...]  # LSP languageIds (VS Code's identifiers)


SPECS: tuple[LanguageSpec, ...] = (
    LanguageSpec("python", "tree_sitter_python", "language", "python",
                 (".py", ".pyi", ".pyw"), ("python",)),
    LanguageSpec("javascript", "tree_sitter_javascript", "language", "javascript",
                 (".js", ".mjs", ".cjs", ".jsx"), ("javascript", "javascriptreact")),
    LanguageSpec("typescript", "tree_sitter_typescript", "language_typescript", "typescript",
                 (".ts", ".mts", ".cts"), ("typescript",)),
    LanguageSpec("tsx", "tree_sitter_typescript", "language_tsx", "typescript",
                 (".tsx",), ("typescriptreact",)),
    LanguageSpec("go", "tree_sitter_go", "language", "go", (".go",), ("go",)),
    LanguageSpec("rust", "tree_sitter_rust", "language", "rust", (".rs",), ("rust",)),
    LanguageSpec("java", "tree_sitter_java", "language", "java", (".java",), ("java",)),
)

_BY_NAME = {spec.name: spec for spec in SPECS}
_BY_EXTENSION = {ext: spec for spec in SPECS for ext in spec.extensions}
_BY_LSP_ID = {lsp_id: spec for spec in SPECS for lsp_id in spec.lsp_ids}


def supported_languages() -> list[str]:
    return [spec.name for spec in SPECS]


class Grammar:
    """A loaded language: tree-sitter `Language`, compiled node table, per-thread parsers."""

    def __init__(self, spec: LanguageSpec):
        self.spec = spec
        self.name = spec.name
        module = importlib.import_module(spec.grammar_module)
        self.language = tree_sitter.Language(getattr(module, spec.grammar_function)())
        self._local = threading.local()

    @cached_property
    def table(self) -> CompiledTable:
        return compile_table(load_table(self.spec.table), self.language)

    def parser(self) -> tree_sitter.Parser:
        """A parser owned by the calling thread (tree-sitter parsers are not thread-safe)."""
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = tree_sitter.Parser(self.language)
        return parser

    def parse(self, source: bytes) -> tree_sitter.Tree:
        return self.parser().parse(source)

    def __repr__(self) -> str:
        return f"Grammar({self.name!r})"


@lru_cache(maxsize=None)
def _grammar(name: str) -> Grammar:
    return Grammar(_BY_NAME[name])


def get_grammar(name: str) -> Grammar:
    """Grammar by our language name (`python`, `tsx`, ...); also accepts an LSP languageId."""
    key = name.strip().lower()
    spec = _BY_NAME.get(key) or _BY_LSP_ID.get(key)
    if spec is None:
        raise UnsupportedLanguageError(name, supported_languages())
    return _grammar(spec.name)


def grammar_for_path(path: str | PurePath) -> Grammar:
    """Grammar by file extension."""
    suffix = PurePath(path).suffix.lower()
    spec = _BY_EXTENSION.get(suffix)
    if spec is None:
        shown = suffix or f"{PurePath(path).name} (no extension)"
        raise UnsupportedLanguageError(shown, supported_languages())
    return _grammar(spec.name)


def grammar_for_lsp_id(language_id: str) -> Grammar:
    """Grammar by LSP languageId (`python`, `typescriptreact`, ...)."""
    spec = _BY_LSP_ID.get(language_id)
    if spec is None:
        raise UnsupportedLanguageError(language_id, supported_languages())
    return _grammar(spec.name)
