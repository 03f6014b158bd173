"""The syntax layer over every file of the Python standard library (and npm's JavaScript when
Node is installed): no exception, and figures for node types that fell to the default tier."""

import sysconfig
from collections import Counter
from pathlib import Path

import pytest
from tokenizers.pre_tokenizers import ByteLevel

from engine.errors import AstdiffuseError, NothingToInfillError, SourceDecodeError
from engine.syntax import (SourceDocument, annotate_tokens, check_replacement, get_grammar,
                           masked_spans)
from engine.syntax.node_tables import TIER_INDEX

pytestmark = pytest.mark.slow

STDLIB = Path(sysconfig.get_paths()["stdlib"])
NPM = Path("/usr/lib/node_modules/npm")
PRETOKENIZER = ByteLevel(add_prefix_space=False, use_regex=True)


def sweep(files, language):
    grammar = get_grammar(language)
    stats = Counter()
    unknown = Counter()
    default_types = Counter()
    for path in files:
        try:
            doc = SourceDocument(path.read_bytes(), grammar)
        except SourceDecodeError:
            stats["rejected_not_utf8"] += 1
            continue
        stats["files"] += 1
        stats["parse_errors"] += doc.root.has_error
        offsets = [span for _, span in PRETOKENIZER.pre_tokenize_str(doc.text)]
        structure = annotate_tokens(doc, offsets, unit="char")
        assert len(structure) == len(offsets)
        stats["tokens"] += len(structure)
        unknown.update(structure.unknown_types)
        defaults = structure.tiers == TIER_INDEX["default"]
        stats["default_tokens"] += int(defaults.sum())
        default_types.update(t for t, d in zip(structure.node_types(), defaults) if d)
        lines = doc.index.line_count
        for line in range(0, lines, 25):
            start, end = doc.index.line_span(line)
            last = doc.index.line_span(min(lines - 1, line + 3))[1]
            cursor = doc.index.byte_offset(start + len(doc.index.line_text(line)) // 2)
            selection = (doc.index.byte_offset(start), doc.index.byte_offset(last))
            for mode in ("node", "block"):
                try:
                    spans = masked_spans(doc, [(cursor, cursor), selection], mode)
                except NothingToInfillError:
                    stats["nothing_to_infill"] += 1
                    continue
                except AstdiffuseError as err:  # empty files
                    stats[type(err).__name__] += 1
                    continue
                stats["spans"] += len(spans)
                if line % 100 == 0 and not doc.root.has_error:
                    # putting a span's own text back re-forms the same nodes
                    check = check_replacement(doc, spans[0], spans[0].text)
                    assert check.ok, (str(path), spans[0].start_line, spans[0].node_types)
                    stats["replacements_checked"] += 1
    return stats, unknown, default_types


def _report(report_figure, name, stats, unknown, default_types):
    report_figure(f"{name} sweep", dict(stats))
    report_figure(f"{name} node types unknown to the table (fell to default)",
                  f"{len(unknown)} types, {sum(unknown.values())} nodes {dict(unknown.most_common(10))}")
    share = stats["default_tokens"] / max(1, stats["tokens"])
    report_figure(f"{name} node types with default-tier tokens",
                  f"{len(default_types)} types, {share:.1%} of tokens; most: "
                  f"{dict(default_types.most_common(8))}")


def test_python_standard_library(report_figure):
    files = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)
    assert len(files) > 500
    stats, unknown, default_types = sweep(files, "python")
    assert stats["files"] > 500 and stats["spans"] > 10_000
    _report(report_figure, "stdlib", stats, unknown, default_types)


def test_npm_javascript(report_figure):
    files = sorted(NPM.rglob("*.js")) if NPM.is_dir() else []
    if not files:
        pytest.skip("no npm installation with JavaScript files on this machine")
    stats, unknown, default_types = sweep(files, "javascript")
    _report(report_figure, "npm", stats, unknown, default_types)
