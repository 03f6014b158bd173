"""Infill evaluation: benchmark files (HumanEval-Infilling format), a benchmark built from the
corpus's test split, the engine run on each hole, isolated execution tests and the metrics."""

from .build import BenchmarkBuildError, BuildConfig, build_benchmark
from .harness import EvalSettings, EvaluationError, evaluate, infill_task, request_for
from .metrics import METRICS, TaskScore, normalize_middle, score_completion, summarize
from .runner import RunLimits, RunOutcome, program_for, run_program
from .tasks import BenchmarkFormatError, InfillTask, read_tasks, write_tasks

__all__ = [
    "METRICS", "BenchmarkBuildError", "BenchmarkFormatError", "BuildConfig", "EvalSettings",
    "EvaluationError", "InfillTask", "RunLimits", "RunOutcome", "TaskScore", "build_benchmark",
    "evaluate", "infill_task", "normalize_middle", "program_for", "read_tasks", "request_for",
    "run_program", "score_completion", "summarize", "write_tasks",
]
