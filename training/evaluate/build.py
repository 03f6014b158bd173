"""Builds an infill benchmark from the TEST split of the corpus (files training never sees): whole
statements, blocks and expressions cut out as an editor user selects them, in the same format.

Per file of the test split that parses and fits the engine's default context (1,024 tokens for
the whole file, so the model can see all of it), the candidates are
- statements: a selection of 1-3 lines from a code line's first character, grown by the syntax
  layer (`node` mode) to the whole statements it touches (a header line takes its compound
  statement);
- expression: an expression node's bytes selected exactly (`node` mode keeps it an expression);
- body: a cursor on a function's or compound statement's header in `block` mode: its body.
Trivial middles (`pass`, a bare name or literal, fewer than `min_chars` characters that are not
whitespace), docstrings, comments and long middles are skipped. Then tasks are drawn, one kind at
a time in turn, from the file used least so far; every draw is seeded, so a seed and a corpus
give the same benchmark.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import tree_sitter

from engine.errors import AstdiffuseError
from engine.infill import InfillOptions
from engine.syntax import MaskedSpan, SourceDocument, masked_spans
from training.corpus import CorpusConfig, CorpusFile, build_corpus

from .tasks import InfillTask

KINDS: tuple[str, ...] = ("statements", "expression", "body")
MODE_OF_KIND = {"statements": "node", "expression": "node", "body": "block"}
LINE_COUNTS = (1, 1, 1, 2, 3)  # how many lines a statements selection covers, drawn uniformly
# A middle of one node of these types is too easy (or too arbitrary) to say anything.
TRIVIAL_TYPES = frozenset({
    "pass_statement", "break_statement", "continue_statement", "identifier", "string",
    "concatenated_string", "integer", "float", "true", "false", "none", "ellipsis",
    "comment", "line_comment", "block_comment", "number", "null", "string_literal",
})
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment"})
BYTES_PER_TOKEN = 3.5  # without a tokenizer: the project's 8,192-token BPE gives 3.67 on the
#   test split, so this slightly overestimates a file's tokens (keeps fewer files, never more)
SKIP_REASONS = ("trivial", "docstring", "comment", "too_long")


class BenchmarkBuildError(AstdiffuseError):
    """The benchmark cannot be built with these settings (no file qualifies, a bad option)."""


@dataclass(frozen=True)
class BuildConfig:
    """What to build from which corpus."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)  # roots, languages, split rule
    n: int = 200  # tasks wanted (fewer when the split runs out; the summary says so)
    seed: int = 0  # one seed, one benchmark
    kinds: tuple[str, ...] = KINDS  # span kinds to draw, in turn
    max_file_tokens: int = InfillOptions().context_tokens  # whole file <= the engine's default
    #   context (0: any size)
    tokenizer: str | None = None  # tokenizer.json (or its directory) that counts file tokens;
    #   None: bytes / BYTES_PER_TOKEN
    max_lines: int = 10  # longest middle, in lines
    max_bytes: int = 600  # longest middle, in bytes
    min_chars: int = 4  # a middle needs this many characters that are not whitespace

    def validate(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise BenchmarkBuildError(f"kinds must be some of {', '.join(KINDS)}, not "
                                      f"{', '.join(self.kinds) or 'none'}")
        for name in ("n", "max_lines", "max_bytes"):
            if getattr(self, name) < 1:
                raise BenchmarkBuildError(f"{name} must be at least 1")
        if self.max_file_tokens < 0:
            raise BenchmarkBuildError("max_file_tokens must be >= 0 (0: no limit)")


@dataclass
class Candidate:
    """A span that could become a task."""

    file: CorpusFile
    span: MaskedSpan
    mode: str


def build_benchmark(config: BuildConfig = BuildConfig()) -> tuple[list[InfillTask], dict]:
    """The tasks, in the order drawn (so the first N of them are balanced too), and a summary:
    tasks per kind, files used and left out, candidates and skips per reason."""
    config.validate()
    corpus = build_corpus(config.corpus)
    files = corpus.split("test")
    count_tokens = _token_counter(config.tokenizer)
    rng = random.Random(config.seed)
    pools: dict[str, dict[int, list[Candidate]]] = {kind: {} for kind in config.kinds}
    skipped: Counter = Counter()
    file_notes: Counter = Counter()
    for index, corpus_file in enumerate(files):
        text = corpus_file.read_text()
        if config.max_file_tokens and count_tokens(text) > config.max_file_tokens:
            file_notes["too_large"] += 1
            continue
        try:
            doc = SourceDocument(text, corpus_file.language)
        except AstdiffuseError:
            file_notes["unreadable"] += 1
            continue
        if doc.root.has_error:  # the reference program must parse for validity to mean much
            file_notes["unparsable"] += 1
            continue
        file_notes["eligible"] += 1
        for kind in config.kinds:
            found = []
            for span in _unique(_candidates(doc, kind, rng)):
                reason = _reject_reason(span, config)
                if reason:
                    skipped[reason] += 1
                else:
                    found.append(Candidate(corpus_file, span, MODE_OF_KIND[kind]))
            if found:
                rng.shuffle(found)
                pools[kind][index] = found
    candidates = {kind: sum(len(v) for v in pools[kind].values()) for kind in config.kinds}
    chosen = _draw(pools, config.kinds, config.n, rng)
    tasks = [_task(c) for c in chosen]
    by_kind = Counter(t.kind for t in tasks)
    summary = {
        "tasks": len(tasks), "requested": config.n, "seed": config.seed,
        "by_kind": {kind: by_kind.get(kind, 0) for kind in config.kinds},
        "files": {"test_split": len(files), "used": len({t.extra["path"] for t in tasks}),
                  "eligible": file_notes["eligible"], "too_large": file_notes["too_large"],
                  "unparsable": file_notes["unparsable"], "unreadable": file_notes["unreadable"]},
        "candidates": candidates,
        "skipped": {reason: skipped.get(reason, 0) for reason in SKIP_REASONS},
        "max_file_tokens": config.max_file_tokens,
        "token_count": (f"tokenizer {config.tokenizer}" if config.tokenizer
                        else f"estimated as bytes / {BYTES_PER_TOKEN}"),
        "roots": [str(r) for r in config.corpus.resolved_roots()],
        "languages": list(config.corpus.resolved_languages()),
    }
    return tasks, summary


def format_summary(summary: dict) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary["by_kind"].items())
    files = summary["files"]
    lines = [f"built {summary['tasks']} tasks ({kinds}) of {summary['requested']} requested, "
             f"seed {summary['seed']}",
             f"files: {files['used']} used of {files['eligible']} eligible in the test split's "
             f"{files['test_split']} ({files['too_large']} over {summary['max_file_tokens']} "
             f"tokens, {summary['token_count']}; {files['unparsable']} do not parse)",
             "candidates: " + ", ".join(f"{k} {v}" for k, v in summary["candidates"].items()),
             "skipped: " + ", ".join(f"{k} {v}" for k, v in summary["skipped"].items())]
    if summary["tasks"] < summary["requested"]:
        lines.append(f"warning: only {summary['tasks']} of {summary['requested']} tasks: the "
                     "test split ran out of candidates (more --root, or a larger "
                     "--max-file-tokens)")
    if summary["tasks"] < 200:
        lines.append("note: figures over fewer than 200 tasks move by several points between "
                     "seeds")
    return "\n".join(lines)


# -- candidates ------------------------------------------------------------------------------

def _candidates(doc: SourceDocument, kind: str, rng: random.Random) -> Iterator[MaskedSpan]:
    if kind == "statements":
        lines = _code_lines(doc.source)
        for i, (start, _) in enumerate(lines):
            last = min(len(lines) - 1, i + rng.choice(LINE_COUNTS) - 1)
            yield from _spans(doc, start, lines[last][1], "node", "statements")
    elif kind == "expression":
        table = doc.grammar.table
        for node in _walk(doc.root):
            if table.is_expression[node.kind_id] and node.type not in TRIVIAL_TYPES:
                for span in _spans(doc, node.start_byte, node.end_byte, "node", "expression"):
                    if (span.start_byte, span.end_byte) == node.byte_range:
                        yield span
    else:
        table = doc.grammar.table
        for node in _walk(doc.root):
            body = node.child_by_field_name("body")
            if body is not None and table.is_body[body.kind_id]:
                yield from _spans(doc, node.start_byte, node.start_byte, "block", "body")


def _spans(doc: SourceDocument, start: int, end: int, mode: str,
           kind: str) -> Iterator[MaskedSpan]:
    try:
        spans = masked_spans(doc, [(start, end)], mode)
    except AstdiffuseError:
        return
    if len(spans) == 1 and spans[0].kind == kind:
        yield spans[0]


def _unique(spans: Iterator[MaskedSpan]) -> Iterator[MaskedSpan]:
    seen: set[tuple[int, int]] = set()
    for span in spans:
        key = (span.start_byte, span.end_byte)
        if key not in seen:
            seen.add(key)
            yield span


def _walk(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Named nodes in document order."""
    cursor = root.walk()
    while True:
        if cursor.node.is_named:
            yield cursor.node
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return


def _code_lines(source: bytes) -> list[tuple[int, int]]:
    """(first non-blank byte, end before the line break) of every line with code (not blank,
    not a comment)."""
    out, pos = [], 0
    for line in source.split(b"\n"):
        stripped = line.lstrip(b" \t")
        if stripped.strip() and not stripped.startswith((b"#", b"//")):
            out.append((pos + len(line) - len(stripped), pos + len(line.rstrip(b" \t\r"))))
        pos += len(line) + 1
    return out


def _reject_reason(span: MaskedSpan, config: BuildConfig) -> str:
    text = span.text
    if span.end_line - span.start_line + 1 > config.max_lines \
            or len(text.encode("utf-8")) > config.max_bytes:
        return "too_long"
    if all(t in COMMENT_TYPES for t in span.node_types):
        return "comment"
    if span.node_types == ("expression_statement",) \
            and text.lstrip("rbuRBUfF").startswith(("'", '"')):
        return "docstring"
    if (len(span.node_types) == 1 and span.node_types[0] in TRIVIAL_TYPES) \
            or len("".join(text.split())) < config.min_chars:
        return "trivial"
    return ""


def _draw(pools: dict[str, dict[int, list[Candidate]]], kinds: tuple[str, ...], n: int,
          rng: random.Random) -> list[Candidate]:
    """Kinds in turn; for each, the next candidate of the file used least so far (ties: a
    seeded order of the files). Overlapping tasks are fine; the same bytes twice are not."""
    files = sorted({f for pool in pools.values() for f in pool})
    rng.shuffle(files)
    rank = {f: i for i, f in enumerate(files)}
    used: Counter = Counter()
    seen: set[tuple[str, int, int]] = set()
    chosen: list[Candidate] = []
    while len(chosen) < n and any(any(pool.values()) for pool in pools.values()):
        for kind in kinds:
            if len(chosen) == n:
                break
            pool = pools[kind]
            while True:
                open_files = [f for f, left in pool.items() if left]
                if not open_files:
                    break
                index = min(open_files, key=lambda f: (used[f], rank[f]))
                candidate = pool[index].pop()
                key = (candidate.file.relative_path, candidate.span.start_byte,
                       candidate.span.end_byte)
                if key in seen:
                    continue
                seen.add(key)
                used[index] += 1
                chosen.append(candidate)
                break
    return chosen


def _task(candidate: Candidate) -> InfillTask:
    source = candidate.file.read_text().encode("utf-8")
    span = candidate.span
    language = candidate.file.language
    return InfillTask(
        task_id=f"{language}/{candidate.file.relative_path}@{span.start_byte}-{span.end_byte}",
        prompt=source[:span.start_byte].decode("utf-8"),
        suffix=source[span.end_byte:].decode("utf-8"),
        canonical_solution=span.text, language=language, kind=span.kind, mode=candidate.mode,
        start_byte=span.start_byte, end_byte=span.end_byte,
        extra={"path": candidate.file.relative_path, "start_line": span.start_line,
               "end_line": span.end_line, "node_types": list(span.node_types)})


def _token_counter(tokenizer: str | None):
    """A function text -> token count: the tokenizer's, or the byte estimate."""
    if tokenizer is None:
        return lambda text: math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)
    from engine.tokens import load_source_encoder

    try:
        encoder = load_source_encoder(tokenizer)
    except (OSError, ValueError) as err:
        raise BenchmarkBuildError(f"cannot load the tokenizer {tokenizer}: {err}") from None
    return lambda text: len(encoder.encode(text, add_special_tokens=False).ids)
