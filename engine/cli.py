"""Command line of the engine.

- `python -m engine spans FILE ...` shows the whole syntax-tree nodes a selection masks.
- `python -m engine infill FILE ...` rewrites them with a masked-diffusion model and prints the
  new file (or a unified diff, or JSON); exit status 1 when no candidate is valid code.
- `python -m engine languages` lists the supported languages.

Lines are 1-based and inclusive; `--range L:C-L:C` columns are 1-based characters as editors
show them, the end being where the cursor stands after the selection. Errors go to stderr with
exit status 2; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
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
    _add_selection_arguments(spans)
    spans.add_argument("--tokens", action="store_true",
                       help="also show each token of the spans with its node type, depth, "
                            "TreeDiff tier and anchor class")
    spans.add_argument("--tokenizer", type=Path, metavar="TOKENIZER_JSON",
                       help="tokenizer.json for --tokens (default: byte-level pre-tokenization "
                            "of the `tokenizers` library)")
    spans.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                       help="refuse files larger than this (default: %(default)s)")
    spans.add_argument("--json", action="store_true", help="print one JSON object")
    _add_infill_parser(commands)
    commands.add_parser("languages", help="list the supported languages")
    models = commands.add_parser("models", help="list the model families and the published "
                                                "checkpoints `pull` knows by a short name")
    models.add_argument("--markdown", choices=("checkpoints", "families"),
                        help="print a markdown table: the checkpoints (the README's) or the "
                             "families (docs/real-models.md's)")
    pull = commands.add_parser(
        "pull", help="download a published model into the local Hugging Face cache",
        description="Download a published checkpoint (config, tokenizer and safetensors files "
                    "only; never its Python code or pickles) into the Hugging Face cache "
                    "(HF_HOME), with a progress bar; an interrupted download continues where it "
                    "stopped. Afterwards `infill --model NAME` runs it offline.")
    pull.add_argument("name", help="a short name (`python -m engine models`) or a hub id "
                                   "(org/name)")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main)")
    pull.add_argument("--token", help="a hub token for gated or private models (default: "
                                      "HF_TOKEN or the one `hf auth login` saved)")
    pull.add_argument("--no-verify", dest="verify", action="store_false",
                      help="skip the SHA-256 check of the weight files after the download")
    return parser


def _add_selection_arguments(command: argparse.ArgumentParser) -> None:
    """FILE and the selection: --lines, --range, --mode, --language (spans and infill)."""
    command.add_argument("file", type=Path, help="source file (UTF-8)")
    command.add_argument("--lines", action="append", default=[], metavar="A:B",
                         help="select lines A to B, 1-based and inclusive ('A' alone: one "
                              "line); repeat for several selections")
    command.add_argument("--range", action="append", default=[], metavar="L:C-L:C",
                         help="select from line:column to line:column (1-based; the end is the "
                              "cursor position after the selection); 'L:C' alone is a cursor")
    command.add_argument("--mode", choices=MODES, default="node",
                         help="node: grow the selection to whole nodes (a cursor picks its "
                              "statement); block: the body of the enclosing compound statement "
                              "or function (default: %(default)s)")
    command.add_argument("--language", choices=supported_languages(),
                         help="language of the file (default: from its extension)")


def _add_infill_parser(commands) -> None:
    infill = commands.add_parser(
        "infill",
        help="rewrite the selected code with a masked-diffusion model",
        description="Mask the whole syntax-tree nodes the selections cover (as `spans` shows "
                    "them) and infill them jointly with a masked-diffusion model, conditioned "
                    "on the code around them. Prints the new file of the best candidate "
                    "(or a unified diff, or JSON).",
        epilog="Exit status: 0 when the best candidate is valid (it parses and keeps the node "
               "kinds it replaced); 1 when no candidate is valid (the best one is still printed, "
               "with a warning on stderr); 2 on bad input (file, selection, options, model, "
               "device); 130 when interrupted.",
    )
    _add_selection_arguments(infill)
    model = infill.add_argument_group("model")
    model.add_argument("--model", metavar="PATH|NAME",
                       help="directory of a saved model with its tokenizer, or a published "
                            "model pulled before (a short name `python -m engine models` lists, "
                            "or a hub id); default: the shipped default model")
    model.add_argument("--download", action="store_true",
                       help="download --model from the hub first if it is not here yet (as "
                            "`python -m engine pull NAME`); nothing downloads without it")
    model.add_argument("--family", metavar="NAME",
                       help="the model's family, when detecting it from config.json and the "
                            "tokenizer fails or guesses wrong (`python -m engine models` lists "
                            "them)")
    model.add_argument("--trust-remote-code", action="store_true",
                       help="allow a model of another layout to run the Python code in its "
                            "directory (never needed for the families above)")
    model.add_argument("--device-map", choices=("auto",), default=None,
                       help="spread a Dream / LLaDA model too big for one GPU over the GPUs and "
                            "the CPU (needs the accelerate package)")
    model.add_argument("--device", default="auto",
                       help="auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or "
                            "cuda:N (default: %(default)s)")
    sampling = infill.add_argument_group("sampling")
    sampling.add_argument("--candidates", type=int, default=3, metavar="N",
                          help="return at most N ranked candidates (--json lists them; "
                               "default: %(default)s)")
    sampling.add_argument("--steps", type=int, metavar="S",
                          help="denoising steps per run (default: half the masked tokens)")
    sampling.add_argument("--seed", type=int, default=0, metavar="K",
                          help="random seed; the same seed replays a run exactly "
                               "(default: %(default)s)")
    sampling.add_argument("--temperature", type=float, default=None, metavar="T",
                          help="sampling temperature, 0 for greedy (default: the model "
                               "family's, else 0.3)")
    sampling.add_argument("--order", choices=("confidence", "margin", "entropy"), default=None,
                          help="which masked positions go first (default: the model family's, "
                               "else confidence)")
    sampling.add_argument("--top-p", type=float, default=None, metavar="P",
                          help="nucleus sampling mass (default: the model family's, else 0.95)")
    sampling.add_argument("--as-published", action="store_true",
                          help="decode as the model's authors do: switch off the engine's own "
                               "additions (anchored order, threshold parallel decoding, repair)")
    sampling.add_argument("--keep-anchors", action="store_true",
                          help="keep the spans' keywords and identifiers and regenerate the "
                               "rest")
    sampling.add_argument("--no-length-hint", dest="length_hint", action="store_false",
                          help="do not guess the new code's length from the replaced code's")
    sampling.add_argument("--context-tokens", type=int, default=1024, metavar="N",
                          help="canvas budget in tokens, context and masks of all spans "
                               "together (capped by the model's length; default: %(default)s)")
    output = infill.add_argument_group("output")
    formats = output.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true",
                         help="print one JSON object: the candidates (whole new file, span "
                              "edits, score, validity), valid, message, steps, timings, model, "
                              "device")
    formats.add_argument("--diff", action="store_true",
                         help="print a unified diff of the best candidate against FILE")
    output.add_argument("--progress", action="store_true",
                        help="print each denoising step and the first span's partial text on "
                             "stderr")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "spans":
            return _spans(args, parser)
        if args.command == "infill":
            return _infill(args, parser)
        if args.command == "languages":
            print("\n".join(supported_languages()))
            return 0
        if args.command == "models":
            return _models(args.markdown)
        if args.command == "pull":
            return _pull(args)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:
            print(f"error: {err}", file=sys.stderr)
        else:
            print(f"error: cannot read {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    parser.print_help()
    return 1


def _selection(args: argparse.Namespace, parser: argparse.ArgumentParser,
               max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[SourceDocument, list[tuple[int, int]]]:
    """The document and the byte ranges its --lines and --range options select."""
    if not args.lines and not args.range:
        parser.error(f"{args.command}: give at least one --lines A:B or --range L:C-L:C")
    doc = SourceDocument.from_path(args.file, args.language, max_bytes=max_bytes)
    ranges = [_line_range(doc, spec) for spec in args.lines]
    ranges += [_column_range(doc, spec) for spec in args.range]
    return doc, ranges


def _spans(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    doc, ranges = _selection(args, parser, args.max_bytes)
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


def _infill(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # torch and the model code load only for this command (spans and languages start fast)
    from .infill import ByteRange, InfillEngine, InfillOptions, InfillRequest, to_dict
    from .model.adapter import ModelNotFoundError

    doc, ranges = _selection(args, parser)
    chosen = dict(steps=args.steps, candidates=args.candidates, seed=args.seed,
                  keep_anchors=args.keep_anchors, length_hint=args.length_hint,
                  context_tokens=args.context_tokens)
    chosen.update({name: getattr(args, name) for name in ("temperature", "order", "top_p")
                   if getattr(args, name) is not None})  # else the model family's defaults
    if args.as_published:
        from .model.families import AUTHORS_ONLY

        chosen.update(AUTHORS_ONLY)
    request = InfillRequest(text=doc.text, language=doc.language,
                            ranges=[ByteRange(start, end) for start, end in ranges],
                            mode=args.mode, options=InfillOptions(**chosen))
    request.check()  # bad options: before loading
    if args.model is not None and Path(args.model).is_file():  # transformers would unpickle it
        raise ModelNotFoundError(args.model, f"--model {args.model} is a file; pass the directory "
                                             "the model was saved to (config.json, "
                                             "model.safetensors and tokenizer.json)")
    model = args.model
    if model is not None:
        from .hub import locate

        model = locate(model, download=args.download)
    with _quiet_transformers():
        engine = InfillEngine.load(model, device=args.device, family=args.family,
                                   trust_remote_code=args.trust_remote_code,
                                   device_map=args.device_map)
    request.options = engine.default_options(**chosen)
    result = engine.infill(request, progress=_print_progress if args.progress else None)
    best = result.best
    if args.json:
        print(json.dumps(to_dict(result), ensure_ascii=False, indent=2))
    elif best is not None and args.diff:
        sys.stdout.write(_unified_diff(args.file, doc.text, best.text))
    elif best is not None:
        sys.stdout.write(best.text)
    if result.valid:
        return 0
    print(f"warning: {result.message}", file=sys.stderr)
    return 1


def _models(markdown: str | None = None) -> int:
    from .model.families import SPECS, checkpoints_table, families_table

    if markdown:
        print(checkpoints_table() if markdown == "checkpoints" else families_table())
        return 0
    for spec in SPECS:
        print(f"{spec.name}: {spec.title}")
        for checkpoint in spec.checkpoints:
            print(f"    {checkpoint.short:<26} {checkpoint.repo:<40} {checkpoint.size:>5}  "
                  f"{checkpoint.hardware}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from .hub import pull

    path = pull(args.name, revision=args.revision, token=args.token, verify=args.verify)
    print(path)
    print(f"pulled {args.name}; run it with: python -m engine infill FILE --lines A:B "
          f"--model {args.name}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _quiet_transformers():
    """No "Loading weights" progress bar from transformers on stderr while a model loads."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def _print_progress(event) -> None:
    """One line per denoising step on stderr: the step and the first span's partial text."""
    text = repr(event.spans[0] if event.spans else "")[1:-1]  # newlines etc. escaped: one line
    if len(text) > 60:
        text = text[:59] + "\u2026"
    phase = "" if event.phase == "denoise" else f" ({event.phase})"
    print(f"step {event.step}/{event.total}{phase}: {text}", file=sys.stderr, flush=True)


def _unified_diff(path: Path, old: str, new: str) -> str:
    """A unified diff with a/FILE and b/FILE headers; a last line without a newline is marked
    as git and patch expect."""
    name = path.as_posix().lstrip("/")
    out = []
    for line in difflib.unified_diff(_lines(old), _lines(new), f"a/{name}", f"b/{name}"):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _lines(text: str) -> list[str]:
    """Lines with their newline, split at "\\n" only (str.splitlines also splits at form
    feeds and other separators a generated span may hold)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


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
