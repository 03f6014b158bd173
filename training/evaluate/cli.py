"""`python -m training.evaluate`: score a model on an infill benchmark, or build a benchmark from
the corpus's test split (`python -m training.evaluate build --out bench.jsonl`).

    python -m training.evaluate --benchmark PATH [--model M] [--device auto] [--limit N]
        [--seed K] [--steps S] [--repair-rounds R] [--candidates C] [--json]
        [--samples OUT.jsonl] [--plot-steps S1,S2,... --plot OUT.png]
    python -m training.evaluate build --out bench.jsonl [--root DIR ...] [--n N] [--seed K]
        [--languages python]

Exit status: 0 when the run finished, 2 on bad input (benchmark file, options, model, device),
130 when interrupted. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import AstdiffuseError
from training.corpus import CorpusConfig, add_corpus_arguments, config_from_args

from .build import KINDS, BuildConfig, build_benchmark, format_summary
from .harness import EvalSettings, evaluate, stderr_progress
from .plot import parse_steps, sweep_steps, write_sweep
from .runner import DEFAULT_TIMEOUT_S
from .tasks import read_tasks, write_tasks

ROWS = (("exact match (as-is)", "exact_match"),
        ("exact match (whitespace-normalized)", "exact_match_normalized"),
        ("syntax valid (prompt + completion + suffix parses)", "syntax_valid"),
        ("non-empty and parses", "nonempty_and_parses"),
        ("CPython compiles it (Python tasks)", "python_compiles"),
        ("pass@1", "pass@1"))


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
        epilog="Build a benchmark from the test split: python -m training.evaluate build --help")
    parser.add_argument("--benchmark", required=True, metavar="PATH",
                        help="HumanEval-Infilling JSONL, plain or gzip (told by its bytes)")
    parser.add_argument("--model", default=None, metavar="M",
                        help="model directory (default: the shipped default model)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N tasks")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="sampler seed, the same for every task (default 0)")
    parser.add_argument("--steps", type=int, default=None, metavar="S",
                        help="denoising steps (default: the engine's, half the masked tokens)")
    parser.add_argument("--repair-rounds", type=int, default=2, metavar="R",
                        help="parse-guided repair rounds (default 2)")
    parser.add_argument("--candidates", type=int, default=3, metavar="C",
                        help="length candidates the engine runs and ranks; its best one is "
                             "scored (default 3)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"per execution test (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="torch CPU threads (default: torch's own setting)")
    parser.add_argument("--baseline", choices=("empty",), default=None,
                        help="no model: score every hole left empty (syntax validity's floor)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of a markdown table")
    parser.add_argument("--samples", type=Path, metavar="OUT.jsonl",
                        help="write each task's completion and its scores here")
    parser.add_argument("--plot-steps", metavar="S1,S2,...",
                        help="also run the set at each of these step counts (with --plot)")
    parser.add_argument("--plot", type=Path, metavar="OUT.png",
                        help="quality against steps as a PNG, the numbers beside it as .json")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate build",
        description="Build an infill benchmark (HumanEval-Infilling JSONL, gzip when OUT ends "
                    "in .gz) from the corpus's TEST split; see training.evaluate.build.")
    parser.add_argument("--out", type=Path, required=True, metavar="bench.jsonl")
    add_corpus_arguments(parser)
    defaults = BuildConfig()
    parser.add_argument("--n", type=int, default=defaults.n, help="tasks (default 200)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed (default 0)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"span kinds drawn in turn (default {','.join(KINDS)})")
    parser.add_argument("--max-file-tokens", type=int, default=defaults.max_file_tokens,
                        help="only files of at most this many tokens, the engine's default "
                             "context (default 1024; 0: any)")
    parser.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="tokenizer.json (or its directory) that counts a file's tokens "
                             "(default: bytes / 3.5)")
    parser.add_argument("--max-lines", type=int, default=defaults.max_lines,
                        help="longest middle in lines (default 10)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["build"]:
            return _build(build_parser().parse_args(argv[1:]))
        return _evaluate(evaluate_parser(), argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _build(args: argparse.Namespace) -> int:
    try:
        corpus: CorpusConfig = config_from_args(args)
        config = BuildConfig(corpus=corpus, n=args.n, seed=args.seed,
                             kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
                             max_file_tokens=args.max_file_tokens, tokenizer=args.tokenizer,
                             max_lines=args.max_lines)
        tasks, summary = build_benchmark(config)
        if not tasks:
            print("error: no task could be built: the test split has no file that qualifies "
                  "(see the summary below)\n" + format_summary(summary), file=sys.stderr)
            return 2
        path = write_tasks(args.out, tasks)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary["out"] = str(path)
    print(json.dumps(summary, indent=1) if args.json else
          format_summary(summary) + f"\nwrote {path}")
    return 0


def _evaluate(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    args = parser.parse_args(argv)
    for name, least in (("limit", 1), ("steps", 1), ("candidates", 1), ("repair_rounds", 0),
                        ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    if (args.plot_steps is None) != (args.plot is None):
        parser.error("--plot-steps and --plot go together")
    if args.baseline and args.plot_steps:
        parser.error("--baseline runs no model, so there are no steps to plot")
    progress = None if args.quiet else stderr_progress
    try:
        plot_steps = parse_steps(args.plot_steps) if args.plot_steps else None
        tasks = read_tasks(args.benchmark)
        import torch

        from engine.infill import InfillEngine

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        engine = None if args.baseline else InfillEngine.load(args.model, device=args.device)
        settings = EvalSettings(benchmark=str(args.benchmark), model=args.model,
                                device=args.device, seed=args.seed, steps=args.steps,
                                repair_rounds=args.repair_rounds, candidates=args.candidates,
                                limit=args.limit, timeout_s=args.timeout,
                                baseline=args.baseline or "")
        report, scores = evaluate(engine, tasks, settings, progress=progress)
        if args.samples is not None:
            _write_samples(args.samples, scores)
        if plot_steps is not None:
            points = sweep_steps(engine, tasks, settings, plot_steps, known=report,
                                 progress=progress)
            png, numbers = write_sweep(points, args.plot)
            report["plot"] = {"png": str(png), "json": str(numbers), "steps": plot_steps}
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report["command"] = "python -m training.evaluate " + " ".join(argv)
    print(json.dumps(report, indent=1) if args.json else markdown(report))
    return 0


def _write_samples(path: Path, scores) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for score in scores:
            out.write(json.dumps(score.to_dict(), ensure_ascii=False) + "\n")


def markdown(report: dict) -> str:
    steps = report["steps"] if report["steps"] is not None else "auto (half the masks)"
    head = f"benchmark {report['benchmark']}: n={report['n']} ({report['n_with_tests']} with tests)"
    if report.get("baseline") == "empty":
        head += ", no model: every hole left empty"
    else:
        head += (f", model {report['model']}, device {report['device']}, seed {report['seed']}, "
                 f"steps {steps}, repair rounds {report['repair_rounds']}, length candidates "
                 f"{report['candidates']}, no length hint, {report['seconds']} s")
    lines = [head, ""]
    kinds = report.get("by_kind", {})
    header = "| metric | all |" + "".join(f" {k} |" for k in kinds)
    lines += [header, "|---|---:|" + "---:|" * len(kinds)]
    for label, key in ROWS:
        values = [report] + list(kinds.values())
        cells = ["-" if v[key] is None else f"{v[key]:.3f}" for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(f"| n | {report['n']} |" + "".join(f" {v['n']} |" for v in kinds.values()))
    if "plot" in report:
        lines += ["", f"plot: {report['plot']['png']} (numbers: {report['plot']['json']})"]
    return "\n".join(lines)
