"""Scores of one completion (exact match as-is and whitespace-normalized, syntax validity,
non-empty and parses, the execution test) and their means over a benchmark.

Whitespace normalization (`normalize_middle`): strip the middle's leading and trailing
whitespace, strip every line's leading and trailing whitespace, and drop blank lines. It forgives
indentation and trailing newlines; since it also forgets relative indentation, two Python
middles that nest differently can match, so it is an upper bound on the as-is figure.

Syntax validity is the syntax layer's (`engine.syntax.parses`: no ERROR or MISSING node, and no
empty Python block, which tree-sitter-python accepts and CPython does not). It is still more
lenient than CPython (names, `return` outside a function, ...), so for Python tasks
`python_compiles` also asks CPython's compiler (`compile`, which runs nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.syntax import parses

from .runner import RunLimits, program_for, run_program
from .tasks import InfillTask

METRICS = ("exact_match", "exact_match_normalized", "syntax_valid", "nonempty_and_parses",
           "python_compiles", "pass@1")


def normalize_middle(text: str) -> str:
    """The middle with surrounding whitespace, each line's own and blank lines removed."""
    lines = (line.strip() for line in text.strip().splitlines())
    return "\n".join(line for line in lines if line)


@dataclass
class TaskScore:
    """How one completion did; `passed` is None when the task has no execution test."""

    task_id: str
    kind: str
    completion: str
    exact_match: bool
    exact_match_normalized: bool
    syntax_valid: bool  # prompt + completion + suffix parses without ERROR or MISSING nodes
    nonempty_and_parses: bool  # the same, and the completion holds more than whitespace
    python_compiles: bool | None  # CPython compiles the whole program (None: not Python)
    passed: bool | None
    status: str = ""  # the test run's passed | failed | timeout; "" without a test
    engine_valid: bool | None = None  # what the engine itself judged (None: not from it)
    error: str = ""  # why there is no completion (an engine error on this task)

    def to_dict(self) -> dict:
        return asdict(self)


def score_completion(task: InfillTask, completion: str, *, run_tests: bool = True,
                     limits: RunLimits = RunLimits()) -> TaskScore:
    """Score `completion` as the middle of `task`; the test runs in a subprocess."""
    whole = task.prompt + completion + task.suffix
    valid = parses(whole, task.language)
    compiles = _compiles(whole) if task.language == "python" else None
    passed, status = None, ""
    if run_tests and task.has_test:
        outcome = run_program(program_for(task.prompt, completion, task.suffix, task.test,
                                          task.entry_point), limits)
        passed, status = outcome.passed, outcome.status
    return TaskScore(
        task_id=task.task_id, kind=task.kind, completion=completion,
        exact_match=completion == task.canonical_solution,
        exact_match_normalized=normalize_middle(completion)
        == normalize_middle(task.canonical_solution),
        syntax_valid=valid, nonempty_and_parses=valid and bool(completion.strip()),
        python_compiles=compiles, passed=passed, status=status)


def _compiles(program: str) -> bool:
    """Whether CPython compiles `program` (compiling runs none of it)."""
    try:
        compile(program, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def summarize(scores: list[TaskScore]) -> dict:
    """Means over `scores` (4 decimals); pass@1 over the tasks with a test, None if none has;
    the same per span kind under `by_kind` when the set names kinds."""
    out = _means(scores)
    kinds = sorted({s.kind for s in scores if s.kind})
    if kinds:
        out["by_kind"] = {kind: _means([s for s in scores if s.kind == kind]) for kind in kinds}
    return out


def _means(scores: list[TaskScore]) -> dict:
    n = len(scores)

    def mean(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    tested = [s.passed for s in scores if s.passed is not None]
    compiled = [s.python_compiles for s in scores if s.python_compiles is not None]
    return {
        "exact_match": mean([s.exact_match for s in scores]),
        "exact_match_normalized": mean([s.exact_match_normalized for s in scores]),
        "syntax_valid": mean([s.syntax_valid for s in scores]),
        "nonempty_and_parses": mean([s.nonempty_and_parses for s in scores]),
        "pass@1": mean(tested),
        "python_compiles": mean(compiled),
        "n": n,
        "n_with_tests": len(tested),
    }
