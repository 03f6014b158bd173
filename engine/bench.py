"""Latency benchmark of the infill engine against the naive reference sampler.

    python -m engine.bench [--model DIR] [--spans N] [--seed K] [--threads T] [--device D] [--json]

A fixed set of spans (deterministic from --seed): single statements picked by a cursor in
`node` mode, cut from the Python files of the standard library's TEST split (`engine.splits`,
the split training never sees) whose tokenized length is at least --min-file-tokens (1000), so
each statement sits in a full canvas window (the engine's budget, 1024 tokens). Spans the
canvas cannot hold are skipped.

For each span, in the same process, one after the other:
- engine: `InfillEngine.infill` with the default options except `length_hint=False` (an
  evaluation must not see the reference length) and `candidates=1`;
- naive: `engine.infill.naive.naive_infill` on the canvas row the engine's first length
  candidate uses: a full forward per step, one token unmasked per step, no repair.
Both are timed end to end from the request's text (parse, span, canvas, sampling, read-back)
with time.perf_counter, after one warm-up request each that is not counted. Exact match: the
span's new text equals the original span text, surrounding whitespace stripped.

Prints JSON with --json (keys: speedup = naive p50 / engine p50 latency, engine, naive, spans,
model, device, threads, torch, canvas_tokens_mean, mask_tokens_mean, machine), else a short
markdown table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .benchmarks.published_layouts import SHAPES
from .errors import AstdiffuseError
from .infill import (DEFAULT_MODEL_DIR, ByteRange, InfillEngine, InfillOptions, InfillRequest,
                     SpanOutsideCanvasError, build_canvas)
from .infill.naive import naive_infill, naive_span_texts
from .splits import split_of
from .syntax import SourceDocument, masked_spans

LANGUAGE = "python"
# Directories training.corpus never enters (virtual environments, caches).
EXCLUDE_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git", ".venv"}
MIN_FILE_TOKENS = 1000  # a file this long fills the canvas window around any of its statements
MAX_SPAN_TOKENS = 64  # a single statement, not a page of code
# Statements that hold a body: a cursor on their header takes the whole compound statement.
COMPOUND = frozenset({
    "function_definition", "class_definition", "decorated_definition", "if_statement",
    "for_statement", "while_statement", "try_statement", "with_statement", "match_statement",
})


@dataclass(frozen=True)
class BenchSpan:
    """One statement to infill: a cursor in a file of the test split."""

    path: str
    cursor: int  # byte offset of the cursor (start of the statement's first line's code)
    text: str  # the span's original text


def stdlib_test_files() -> list[Path]:
    """The Python files of the stdlib's TEST split: the path-hash rule `training.corpus` uses
    (`engine.splits.split_of`), so training never saw them."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if EXCLUDE_DIRS & set(relative.parts[:-1]):
            continue
        if split_of(relative.as_posix()) == "test":
            files.append(path)
    return files


def select_spans(files: list[Path], engine: InfillEngine, count: int, seed: int,
                 budget: int, min_file_tokens: int = MIN_FILE_TOKENS) -> list[BenchSpan]:
    """`count` single statements, deterministic from `seed`: files of at least
    `min_file_tokens` tokens in a seeded order, one statement each per round (a random line's
    first code byte as the cursor), until `count` are found or the files run out."""
    rng = random.Random(seed)
    docs: list[tuple[Path, SourceDocument, list[int]]] = []
    for path in sorted(files):
        try:
            doc = SourceDocument.from_path(path, LANGUAGE)
        except (AstdiffuseError, OSError):
            continue
        if len(engine.tokenizer.encode(doc.text)[0]) < min_file_tokens:
            continue
        docs.append((path, doc, _code_line_starts(doc.source)))
    rng.shuffle(docs)
    chosen: list[BenchSpan] = []
    seen: set[tuple[str, int]] = set()
    tries = {str(path): 0 for path, _, _ in docs}
    while len(chosen) < count and docs:
        for path, doc, lines in list(docs):
            if len(chosen) == count:
                break
            span = None
            while span is None and tries[str(path)] < 50:  # a few lines each, not all of them
                tries[str(path)] += 1
                cursor = rng.choice(lines)
                span = _statement_at(doc, cursor, engine, budget)
                if span is not None and (str(path), span.start_byte) in seen:
                    span = None
            if span is None:
                docs.remove((path, doc, lines))
                continue
            seen.add((str(path), span.start_byte))
            chosen.append(BenchSpan(str(path), cursor, span.text))
    return chosen


def _code_line_starts(source: bytes) -> list[int]:
    """Byte offset of the first non-blank character of each line that is neither blank nor a
    comment."""
    out, pos = [], 0
    for line in source.split(b"\n"):
        stripped = line.lstrip(b" \t")
        if stripped.strip() and not stripped.startswith(b"#"):
            out.append(pos + len(line) - len(stripped))
        pos += len(line) + 1
    return out


def _statement_at(doc: SourceDocument, cursor: int, engine: InfillEngine, budget: int):
    """The single simple statement a cursor at `cursor` selects, or None (a compound statement,
    a docstring, a comment, too long, or a canvas that cannot hold it)."""
    try:
        spans = masked_spans(doc, [(cursor, cursor)], "node")
    except AstdiffuseError:
        return None
    if len(spans) != 1:
        return None
    span = spans[0]
    docstring = span.text.lstrip("rbuRBUfF").startswith(("'", '"'))
    if span.kind != "statements" or len(span.node_types) != 1 or docstring \
            or span.node_types[0] in COMPOUND or span.node_types[0] == "comment":
        return None
    tokens = len(engine.tokenizer.encode(span.text)[0])
    if not 2 <= tokens <= MAX_SPAN_TOKENS:
        return None
    try:
        build_canvas(doc, [span], engine.tokenizer, budget=budget, length_count=1,
                     length_hint=False)
    except SpanOutsideCanvasError:
        return None
    return span


# -- one span, both ways -----------------------------------------------------------------------

def run_engine(engine: InfillEngine, text: str, cursor: int,
               overrides: dict | None = None) -> dict:
    options = engine.default_options(**{"length_hint": False, "candidates": 1,
                                        **(overrides or {})})
    request = InfillRequest(text=text, language=LANGUAGE, ranges=[ByteRange(cursor, cursor)],
                            mode="node", options=options)
    began = time.perf_counter()
    result = engine.infill(request)
    seconds = time.perf_counter() - began
    best = result.best
    return {"seconds": seconds, "new_text": best.spans[0].new_text if best else "",
            "tokens": sum(s.mask_tokens for s in best.spans) if best else 0,
            "forward_passes": result.timings.forward_passes,
            "full_passes": result.timings.full_passes, "steps": result.steps,
            "canvas_tokens": result.timings.canvas_tokens, "batch": result.timings.batch,
            "sampling_ms": result.timings.sampling_ms, "repair_ms": result.timings.repair_ms}


def one_row_canvas(engine: InfillEngine, text: str, cursor: int, budget: int):
    """(document, canvas) of the statement at `cursor`: one row, one length, no length hint,
    as the naive sampler and the step costs run it."""
    doc = SourceDocument(text, LANGUAGE)
    spans = masked_spans(doc, [(cursor, cursor)], "node")
    return doc, build_canvas(doc, spans, engine.tokenizer, budget=budget, length_count=1,
                             length_hint=False)


def run_naive(engine: InfillEngine, text: str, cursor: int, budget: int) -> dict:
    began = time.perf_counter()
    doc, canvas = one_row_canvas(engine, text, cursor, budget)
    device = engine.device
    ids, passes = naive_infill(engine.model, engine.tokenizer, canvas.input_ids.to(device),
                               canvas.attention_mask.to(device), canvas.editable.to(device))
    texts = naive_span_texts(doc, canvas, ids, 0, engine.tokenizer)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "new_text": texts[0], "tokens": int(canvas.editable[0].sum()),
            "forward_passes": passes, "canvas_tokens": int(canvas.attention_mask[0].sum()),
            "mask_tokens": int(canvas.editable[0].sum())}


def summarize(runs: list[dict], references: list[str]) -> dict:
    ms = np.array([r["seconds"] * 1000.0 for r in runs])
    seconds = sum(r["seconds"] for r in runs)
    exact = [r["new_text"].strip() == ref.strip() for r, ref in zip(runs, references)]
    return {
        "latency_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(ms, 95)), 2),
        "latency_ms_mean": round(float(ms.mean()), 2),
        "forward_passes_mean": round(float(np.mean([r["forward_passes"] for r in runs])), 2),
        "tokens_per_s": round(sum(r["tokens"] for r in runs) / seconds, 1) if seconds else 0.0,
        "exact_match": round(sum(exact) / len(exact), 4),
    }


def canvas_budget(engine: InfillEngine, overrides: dict | None = None) -> int:
    """The canvas the engine builds with these options (the naive sampler gets the same)."""
    return min(engine.default_options(**(overrides or {})).context_tokens,
               engine.max_tokens or 10 ** 9)


def step_costs(engine: InfillEngine, text: str, cursor: int, budget: int,
               repeats: int = 5) -> dict | None:
    """What one full pass and one cached step cost on the canvas of a span (one row, every span
    position active and wanted), median of `repeats`; None for a model with no cache."""
    if not hasattr(engine.model, "denoise_step"):
        return None
    _, canvas = one_row_canvas(engine, text, cursor, budget)
    device = engine.device
    ids, attention = canvas.input_ids.to(device), canvas.attention_mask.to(device)
    active = canvas.editable[0].nonzero().squeeze(-1).unsqueeze(0).to(device)
    want = torch.ones_like(active, dtype=torch.bool)

    def timed(cache):
        _synchronize(device)
        began = time.perf_counter()
        _, _, built = engine.model.denoise_step(ids, active, attention, cache=cache, want=want)
        _synchronize(device)
        return (time.perf_counter() - began) * 1000.0, built

    _, cache = timed(None)  # warm-up
    full = float(np.median([timed(None)[0] for _ in range(repeats)]))
    cached = float(np.median([timed(cache)[0] for _ in range(repeats)]))
    return {"full_pass_ms": round(full, 2), "cached_step_ms": round(cached, 2),
            "cached_share": round(cached / full, 4), "canvas_tokens": int(attention.sum()),
            "active_positions": int(active.shape[1])}


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def parameter_count(model) -> int:
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def benchmark(engine: InfillEngine, spans: list[BenchSpan], *, progress: bool = True,
              overrides: dict | None = None) -> dict:
    """Run every span through the engine (its options changed by `overrides`) and the naive
    sampler; the figures as a dict."""
    budget = canvas_budget(engine, overrides)
    texts = {s.path: Path(s.path).read_text(encoding="utf-8") for s in spans}
    warm = spans[0]
    run_engine(engine, texts[warm.path], warm.cursor, overrides)  # warm-up, not counted
    run_naive(engine, texts[warm.path], warm.cursor, budget)
    engine_runs, naive_runs = [], []
    for i, span in enumerate(spans):
        engine_runs.append(run_engine(engine, texts[span.path], span.cursor, overrides))
        naive_runs.append(run_naive(engine, texts[span.path], span.cursor, budget))
        if progress:
            print(f"bench: {i + 1}/{len(spans)} engine {engine_runs[-1]['seconds'] * 1000:.0f} ms"
                  f" ({engine_runs[-1]['forward_passes']} passes), naive "
                  f"{naive_runs[-1]['seconds'] * 1000:.0f} ms "
                  f"({naive_runs[-1]['forward_passes']} passes)", file=sys.stderr, flush=True)
    references = [s.text for s in spans]
    engine_figures = summarize(engine_runs, references)
    engine_figures.update(
        full_passes_mean=round(float(np.mean([r["full_passes"] for r in engine_runs])), 2),
        steps_mean=round(float(np.mean([r["steps"] for r in engine_runs])), 2),
        batch_mean=round(float(np.mean([r["batch"] for r in engine_runs])), 2),
        canvas_tokens_mean=round(float(np.mean([r["canvas_tokens"] for r in engine_runs])), 1),
        sampling_ms_mean=round(float(np.mean([r["sampling_ms"] for r in engine_runs])), 1),
        repair_ms_mean=round(float(np.mean([r["repair_ms"] for r in engine_runs])), 1),
        context_cache=bool(InfillOptions().use_cache and hasattr(engine.model, "denoise_step")))
    naive_figures = summarize(naive_runs, references)
    costs = step_costs(engine, texts[warm.path], warm.cursor, budget)
    speedup = naive_figures["latency_ms_p50"] / max(engine_figures["latency_ms_p50"], 1e-9)
    return {
        "benchmark": "engine_vs_naive",
        "speedup": round(speedup, 2),
        "engine": engine_figures,
        "naive": naive_figures,
        "step_costs": costs,
        "spans": len(spans),
        "model": {"path": engine.name, "parameters": parameter_count(engine.model)},
        "device": str(engine.device),
        "dtype": str(getattr(engine.model, "dtype", "")).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "canvas_tokens_mean": round(float(np.mean([r["canvas_tokens"] for r in naive_runs])), 1),
        "mask_tokens_mean": round(float(np.mean([r["mask_tokens"] for r in naive_runs])), 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"{platform.system()} {platform.release()}",
        "options": {"engine": "the model family's defaults with length_hint=False, candidates=1"
                             + "".join(f", {k}={v!r}" for k, v in (overrides or {}).items()),
                    "naive": "1 length candidate, greedy, 1 token per full forward, no repair"},
    }


def markdown(report: dict) -> str:
    rows = [("latency p50 (ms)", "latency_ms_p50"), ("latency p95 (ms)", "latency_ms_p95"),
            ("forward passes (mean)", "forward_passes_mean"), ("tokens/s", "tokens_per_s"),
            ("exact match", "exact_match")]
    lines = [f"model {report['model']['path']} ({report['model']['parameters']:,} parameters), "
             f"{report['spans']} spans, device {report['device']}, {report['threads']} threads, "
             f"torch {report['torch']}, {report['machine']}",
             f"canvas {report['canvas_tokens_mean']} tokens, {report['mask_tokens_mean']} masked "
             "(means); speedup (naive p50 / engine p50): " + f"{report['speedup']}x", "",
             "| | engine | naive |", "|---|---:|---:|"]
    for label, key in rows:
        lines.append(f"| {label} | {report['engine'][key]} | {report['naive'][key]} |")
    costs = report.get("step_costs")
    if costs:
        lines += ["", f"one full pass {costs['full_pass_ms']} ms, one cached step "
                      f"{costs['cached_step_ms']} ms ({costs['cached_share']:.1%} of it) over "
                      f"{costs['canvas_tokens']} canvas tokens, {costs['active_positions']} "
                      "active"]
    return "\n".join(lines)


def parse_overrides(items: list[str]) -> dict:
    """`--set` values as InfillOptions fields, typed like the defaults; checked by InfillOptions."""
    defaults = InfillOptions()
    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not hasattr(defaults, name):
            raise ValueError(f"--set {item!r}: expected OPTION=VALUE with an InfillOptions field")
        default = getattr(defaults, name)
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[name] = value.lower() in ("true", "1")
            elif isinstance(default, (int, float, str)):
                out[name] = type(default)(value)
            else:
                out[name] = json.loads(value)
        except ValueError:
            raise ValueError(f"--set {item!r}: {value!r} is not a valid {name}") from None
    InfillOptions(**out).check()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="saved model directory (default: the shipped default model)")
    parser.add_argument("--spans", type=int, default=20, help="spans to run (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the span choice (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own setting)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--min-file-tokens", type=int, default=MIN_FILE_TOKENS,
                        help=f"only files at least this many tokens long (default "
                             f"{MIN_FILE_TOKENS})")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="change one of the engine's InfillOptions (e.g. repair_rounds=0, "
                             "length_candidates=1), to see what each part costs; repeatable")
    parser.add_argument("--shape", choices=sorted(SHAPES),
                        help="instead of --model: a random-weight checkpoint of this published "
                             "shape, built locally (nothing is downloaded) in its family's "
                             "layout or --layout's")
    parser.add_argument("--layout", choices=["dream", "diffucoder", "dreamon", "open-dcoder",
                                             "coda"],
                        help="the layout --shape is built in (default: its family's)")
    parser.add_argument("--build-dir", type=Path, default=None,
                        help="where --shape's checkpoint is built and kept (default: a "
                             "temporary directory, removed)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.layout and not args.shape:
        parser.error("--layout goes with --shape")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    if args.spans < 1:
        parser.error("--spans must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="astdiffuse-bench-") as scratch:
        if args.shape:
            model_dir = built_checkpoint(args.shape, args.layout, args.build_dir
                                         or Path(scratch) / args.shape, args.device)
        else:
            model_dir = Path(args.model)
        return _run(args, model_dir, overrides)


def built_checkpoint(shape: str, layout: str | None, directory: Path, device: str) -> Path:
    """The random-weight checkpoint of `shape` in `directory`, built unless it is there."""
    from .benchmarks.published_layouts import make_shape_checkpoint

    if not (directory / "config.json").is_file():
        print(f"bench: building a random-weight {shape} checkpoint in {layout or 'its'} "
              f"layout in {directory}", file=sys.stderr, flush=True)
        where = "cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
        make_shape_checkpoint(shape, directory, layout=layout, device=where)
    return directory


def _run(args: argparse.Namespace, model_dir: Path, overrides: dict) -> int:
    if not (model_dir / "config.json").is_file():
        print(f"error: no model at {model_dir} (config.json is missing); pass --model DIR, or "
              "--shape NAME for a random-weight checkpoint of a published shape",
              file=sys.stderr)
        return 2
    try:
        engine = InfillEngine.load(model_dir, device=args.device)
        budget = canvas_budget(engine, overrides)
        spans = select_spans(stdlib_test_files(), engine, args.spans, args.seed, budget,
                             args.min_file_tokens)
        if not spans:
            print("error: no span found in the test split (no file is long enough?)",
                  file=sys.stderr)
            return 1
        if len(spans) < args.spans:
            print(f"bench: only {len(spans)} spans found", file=sys.stderr)
        report = benchmark(engine, spans, overrides=overrides)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.shape:
        report["model"].update(shape=args.shape, layout=args.layout or "the family's",
                               weights="random")
    print(json.dumps(report, indent=1) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
