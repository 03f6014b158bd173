"""Throughput of the syntax layer: parse + per-token annotation, in MB/s, over a source tree.

    python -m engine.benchmarks.syntax_throughput [--root DIR] [--language python] [--limit N]

Default tree: the Python standard library of the running interpreter. Tokens come from the
byte-level pre-tokenizer of `tokenizers` (timed apart, it is not the syntax layer's work).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sysconfig
import time
from pathlib import Path

from tokenizers.pre_tokenizers import ByteLevel

from ..errors import AstdiffuseError
from ..syntax import SourceDocument, annotate_tokens, get_grammar
from ..syntax.languages import SPECS


def source_files(root: Path, language: str) -> list[Path]:
    extensions = next(spec.extensions for spec in SPECS if spec.name == language)
    files = [p for p in root.rglob("*") if p.suffix in extensions and p.is_file()
             and "site-packages" not in p.parts]
    return sorted(files)


def run(root: Path, language: str, limit: int | None) -> dict:
    grammar = get_grammar(language)
    files = source_files(root, language)[:limit]
    pretokenizer = ByteLevel(add_prefix_space=False, use_regex=True)
    totals = {"parse_s": 0.0, "annotate_s": 0.0, "pretokenize_s": 0.0}
    size = tokens = rejected = 0
    for path in files:
        data = path.read_bytes()
        started = time.perf_counter()
        try:
            doc = SourceDocument(data, grammar)
        except AstdiffuseError:
            rejected += 1  # not UTF-8 (a few test files in the standard library on purpose)
            continue
        parsed = time.perf_counter()
        offsets = [span for _, span in pretokenizer.pre_tokenize_str(doc.text)]
        pretokenized = time.perf_counter()
        annotate_tokens(doc, offsets, unit="char")
        done = time.perf_counter()
        totals["parse_s"] += parsed - started
        totals["pretokenize_s"] += pretokenized - parsed
        totals["annotate_s"] += done - pretokenized
        size += len(data)
        tokens += len(offsets)
    megabytes = size / 1e6
    syntax_s = totals["parse_s"] + totals["annotate_s"]
    return {
        "benchmark": "syntax_throughput",
        "root": str(root),
        "language": language,
        "files": len(files) - rejected,
        "files_rejected": rejected,
        "megabytes": round(megabytes, 3),
        "tokens": tokens,
        **{k: round(v, 3) for k, v in totals.items()},
        "parse_mb_per_s": round(megabytes / totals["parse_s"], 2),
        "annotate_mb_per_s": round(megabytes / totals["annotate_s"], 2),
        "parse_and_annotate_mb_per_s": round(megabytes / syntax_s, 2),
        "annotated_tokens_per_s": round(tokens / totals["annotate_s"]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="tree of source files (default: the standard library)")
    parser.add_argument("--language", default="python")
    parser.add_argument("--limit", type=int, help="at most this many files")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.root, args.language, args.limit), indent=2))


if __name__ == "__main__":
    main()
