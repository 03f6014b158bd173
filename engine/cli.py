"""Command line of the engine: `python -m engine spans FILE ...` shows what a selection masks.

Lines are 1-based and inclusive; `--range L:C-L:C` columns are 1-based characters as editors
show them, the end being where the cursor stands after the selection. Errors go to stderr with
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import AstdiffuseError, InvalidRangeError
from .syntax import (MODES, MaskedSpan, SourceDocument, annotate_tokens, masked_spans,
                     supported_languages)
from .syntax.document import DEFAULT_MAX_BYTES
from .tokens import load_source_encoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="astdiffuse engine: structural code infill with masked-diffusion models.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    spans = commands.add_parser(
        "spans",
        help="show the whole syntax-tree nodes a selection masks",
        description="Map selections (line ranges, column ranges or cursors) of a source file to "
                    "the minimal runs of whole syntax-tree nodes that cover them.",
    )
    spans.add_argument("file", type=Path, help="source file (UTF-8)")
    spans.add_argument("--lines", action="append", default=[], metavar="A:B",
                       help="select lines A to B, 1-based and inclusive ('A' alone: one line); "
                            "repeat for several selections")
    spans.add_argument("--range", action="append", default=[], metavar="L:C-L:C",
                       help="select from line:column to line:column (1-based; the end is the "
                            "cursor position after the selection); 'L:C' alone is a cursor")
    spans.add_argument("--mode", choices=MODES, default="node",
                       help="node: grow the selection to whole nodes (a cursor picks its "
                            "statement); block: the body of the enclosing compound statement "
                            "or function (default: %(default)s)")
    spans.add_argument("--language", choices=supported_languages(),
                       help="language of the file (default: from its extension)")
    spans.add_argument("--tokens", action="store_true",
                       help="also show each token of the spans with its node type, depth, "
                            "TreeDiff tier and anchor class")
    spans.add_argument("--tokenizer", type=Path, metavar="TOKENIZER_JSON",
                       help="tokenizer.json for --tokens (default: byte-level pre-tokenization "
                            "of the `tokenizers` library)")
    spans.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                       help="refuse files larger than this (default: %(default)s)")
    spans.add_argument("--json", action="store_true", help="print one JSON object")
    commands.add_parser("languages", help="list the supported languages")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "spans":
            return _spans(args, parser)
        if args.command == "languages":
            print("\n".join(supported_languages()))
            return 0
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot read {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    parser.print_help()
    return 1


def _spans(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.lines and not args.range:
        parser.error("spans: give at least one --lines A:B or --range L:C-L:C")
    doc = SourceDocument.from_path(args.file, args.language, max_bytes=args.max_bytes)
    ranges = [_line_range(doc, spec) for spec in args.lines]
    ranges += [_column_range(doc, spec) for spec in args.range]
    spans = masked_spans(doc, ranges, args.mode)
    tokens = _span_tokens(doc, spans, args.tokenizer) if args.tokens else None
    if args.json:
        out = {"file": str(args.file), "language": doc.language, "mode": args.mode,
               "spans": [span.to_dict() for span in spans]}
        if tokens is not None:
            out["tokenizer"] = str(args.tokenizer) if args.tokenizer else "bytelevel-pretokenizer"
            for entry, span_tokens in zip(out["spans"], tokens):
                entry["tokens"] = span_tokens
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        _print_spans(args.file, doc, spans, tokens)
    return 0


def _parse_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidRangeError(f"{what} must be a whole number, not {text!r}") from None
    if value < 1:
        raise InvalidRangeError(f"{what} is 1-based: {value} is not a valid {what}")
    return value


def _check_line(doc: SourceDocument, line: int) -> None:
    if line > doc.index.line_count:
        raise InvalidRangeError(
            f"line {line} is past the end of the file, which has {doc.index.line_count} lines"
        )


def _line_range(doc: SourceDocument, spec: str) -> tuple[int, int]:
    first, _, last = spec.partition(":")
    start_line = _parse_int(first, "line")
    end_line = _parse_int(last, "line") if last else start_line
    if end_line < start_line:
        raise InvalidRangeError(f"--lines {spec}: the end line comes before the start line")
    _check_line(doc, start_line)
    _check_line(doc, end_line)
    index = doc.index
    start = index.byte_offset(index.line_span(start_line - 1)[0])
    end = index.byte_offset(index.line_span(end_line - 1)[1])
    return start, end


def _point(doc: SourceDocument, spec: str) -> int:
    line_text, sep, column_text = spec.partition(":")
    if not sep:
        raise InvalidRangeError(f"position {spec!r} must be LINE:COLUMN")
    line = _parse_int(line_text, "line")
    column = _parse_int(column_text, "column")
    _check_line(doc, line)
    start, end = doc.index.line_span(line - 1)
    if column - 1 > end - start:
        raise InvalidRangeError(
            f"column {column} is past the end of line {line}, which has {end - start} characters"
        )
    return doc.index.byte_offset(start + column - 1)


def _column_range(doc: SourceDocument, spec: str) -> tuple[int, int]:
    first, sep, last = spec.partition("-")
    start = _point(doc, first)
    end = _point(doc, last) if sep else start
    if end < start:
        raise InvalidRangeError(f"--range {spec}: the end comes before the start")
    return start, end


def _token_offsets(doc: SourceDocument, tokenizer_path: Path | None) -> list[tuple[int, int]]:
    """Character offsets of the whole document's tokens."""
    if tokenizer_path is None:
        from tokenizers.pre_tokenizers import ByteLevel

        pieces = ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str(doc.text)
        return [offsets for _, offsets in pieces]
    try:
        tokenizer = load_source_encoder(tokenizer_path)
    except Exception as err:  # the library raises a bare Exception on a bad file
        raise InvalidRangeError(f"cannot load tokenizer {tokenizer_path}: {err}") from None
    return list(tokenizer.encode(doc.text, add_special_tokens=False).offsets)


def _span_tokens(doc: SourceDocument, spans: list[MaskedSpan],
                 tokenizer_path: Path | None) -> list[list[dict]]:
    offsets = _token_offsets(doc, tokenizer_path)
    structure = annotate_tokens(doc, offsets, unit="char")
    rows = structure.rows()
    byte_of = doc.index.byte_offset
    result = []
    for span in spans:
        span_rows = []
        for (start, end), row in zip(offsets, rows):
            start_byte, end_byte = byte_of(start), byte_of(end)
            if start_byte < span.end_byte and end_byte > span.start_byte:
                span_rows.append({"text": doc.text[start:end], "start_byte": start_byte,
                                  "end_byte": end_byte, **row})
        result.append(span_rows)
    return result


def _print_spans(path: Path, doc: SourceDocument, spans: list[MaskedSpan],
                 tokens: list[list[dict]] | None) -> None:
    print(f"{path} ({doc.language}): {len(spans)} span{'s' if len(spans) != 1 else ''}")
    for number, span in enumerate(spans, 1):
        lines = (f"line {span.start_line}" if span.start_line == span.end_line
                 else f"lines {span.start_line}-{span.end_line}")
        print(f"\nspan {number}: {lines}, bytes {span.start_byte}-{span.end_byte}, "
              f"{span.kind} [{', '.join(span.node_types)}] in {span.parent_type}")
        for offset, line in enumerate((span.indent + span.text).splitlines()):
            print(f"  {span.start_line + offset:>5} | {line}")
        if tokens is not None:
            print(f"\n  {'token':<24} {'node type':<28} {'depth':>5}  {'tier':<9} anchor")
            for row in tokens[number - 1]:
                print(f"  {json.dumps(row['text'], ensure_ascii=False):<24} "
                      f"{row['node_type']:<28} {row['depth']:>5}  {row['tier']:<9} {row['anchor']}")
