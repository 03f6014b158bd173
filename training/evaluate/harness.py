"""Infills every task of a benchmark through the engine's exact-hole mode and scores it: the
model sees `prompt + suffix` with an insertion point between them, never the reference middle.

One path for every task: a HumanEval-style task and a task built from the test split both become
the document `prompt + suffix` and the empty byte range at `len(prompt.encode())`, in request mode
`exact`, with `length_hint=False` (the reference's length must not reach the sampler either).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

from engine.errors import AstdiffuseError
from engine.infill import EXACT_MODE, ByteRange, InfillOptions, InfillRequest
from engine.syntax import get_grammar

from .metrics import TaskScore, score_completion, summarize
from .runner import DEFAULT_TIMEOUT_S, RunLimits
from .tasks import InfillTask


class EvaluationError(AstdiffuseError):
    """The engine's answer does not fit the task (it rewrote the context around the hole)."""


@dataclass(frozen=True)
class EvalSettings:
    """How a benchmark is run; every field is reported beside the figures."""

    benchmark: str = ""  # the benchmark file
    model: str | None = None  # model directory; None: the shipped default model
    device: str = "auto"
    seed: int = 0  # the sampler's seed, the same for every task (a run replays exactly)
    steps: int | None = None  # denoising steps; None: the engine's default (half the masks)
    repair_rounds: int = 2  # parse-guided repair rounds (the engine's default)
    candidates: int = 3  # length candidates the engine runs and ranks; its best one is scored
    limit: int | None = None  # only the first N tasks
    timeout_s: float = DEFAULT_TIMEOUT_S  # per execution test
    baseline: str = ""  # "empty": score the hole left empty, no model (what validity flatters)

    def to_dict(self) -> dict:
        return asdict(self)


def request_for(task: InfillTask, options: InfillOptions) -> InfillRequest:
    """The engine request of a task: `prompt + suffix`, an insertion point between them."""
    point = len(task.prompt.encode("utf-8"))
    return InfillRequest(text=task.prompt + task.suffix, language=task.language,
                         ranges=[ByteRange(point, point)], mode=EXACT_MODE, options=options)


def options_for(engine, settings: EvalSettings) -> InfillOptions:
    """The engine's options for evaluation: the model family's sampling defaults, the run's
    settings, one returned candidate and never a length hint."""
    return engine.default_options(seed=settings.seed, steps=settings.steps,
                                  repair_rounds=settings.repair_rounds,
                                  length_candidates=settings.candidates, candidates=1,
                                  length_hint=False, lengths=None, keep_anchors=False)


def infill_task(engine, task: InfillTask, options: InfillOptions) -> tuple[str, bool]:
    """The engine's best middle for `task` and whether the engine judged it valid (parses)."""
    result = engine.infill(request_for(task, options))
    best = result.best
    if best is None:
        return "", False
    (edit,) = best.spans
    if best.text != task.prompt + edit.new_text + task.suffix:
        raise EvaluationError(f"task {task.task_id}: the engine's file is not prompt + middle + "
                              "suffix; an exact hole must leave the context alone")
    return edit.new_text, best.valid


def evaluate(engine, tasks: list[InfillTask], settings: EvalSettings, *,
             progress: Callable[[str], None] | None = None) -> tuple[dict, list[TaskScore]]:
    """Run `tasks` (the first `settings.limit`) through `engine` and score them; returns the
    report (metrics, then the settings) and each task's score. With `settings.baseline ==
    "empty"` no model runs (`engine` may be None): every middle is left empty."""
    tasks = tasks[:settings.limit] if settings.limit is not None else tasks
    for language in sorted({t.language for t in tasks}):
        get_grammar(language)  # an unknown language fails before any model work
    if settings.baseline not in ("", "empty"):
        raise EvaluationError(f"unknown baseline {settings.baseline!r}; the one there is: empty")
    empty = settings.baseline == "empty"
    options = None if empty else options_for(engine, settings)
    limits = RunLimits(timeout_s=settings.timeout_s)
    scores: list[TaskScore] = []
    began = time.monotonic()
    for i, task in enumerate(tasks, start=1):
        error = ""
        try:
            completion, engine_valid = ("", None) if empty \
                else infill_task(engine, task, options)
        except EvaluationError:
            raise
        except AstdiffuseError as err:  # counted as a failure, never skipped
            completion, engine_valid, error = "", False, f"{type(err).__name__}: {err}"
        score = score_completion(task, completion, limits=limits)
        score.engine_valid, score.error = engine_valid, error
        scores.append(score)
        if progress is not None:
            progress(_progress_line(i, len(tasks), task, scores, time.monotonic() - began))
    report = summarize(scores)
    report.update(settings.to_dict())
    report.update(model="none (empty middle)" if empty
                  else settings.model or getattr(engine, "name", ""),
                  device=str(getattr(engine, "device", settings.device)),
                  limit=settings.limit, length_hint=False,
                  engine_valid=None if empty else round(
                      sum(bool(s.engine_valid) for s in scores) / max(1, len(scores)), 4),
                  seconds=round(time.monotonic() - began, 1))
    return report, scores


def _progress_line(i: int, n: int, task: InfillTask, scores: list[TaskScore],
                   seconds: float) -> str:
    means = summarize(scores)
    last = scores[-1]
    passed = {None: "-", True: "pass", False: last.status or "fail"}[last.passed]
    pass_mean = "-" if means["pass@1"] is None else f"{means['pass@1']:.3f}"
    return (f"evaluate: {i}/{n} {task.task_id} em={int(last.exact_match)} "
            f"parses={int(last.syntax_valid)} test={passed} | means: em "
            f"{means['exact_match']:.3f} em-norm {means['exact_match_normalized']:.3f} syntax "
            f"{means['syntax_valid']:.3f} nonempty+parses {means['nonempty_and_parses']:.3f} "
            f"pass@1 {pass_mean} ({seconds:.0f} s)")


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
