"""Infill benchmark files: the HumanEval-Infilling JSONL format (one task per line, plain or
gzip, told apart by the file's magic bytes), read with errors that name the file and line.

A task is `prompt` (the code before the hole), `suffix` (after it), `canonical_solution` (the
reference middle), optionally `test` (a program defining `check(candidate)`) and `entry_point`
(the name passed to `check`). Benchmarks built here (`training.evaluate.build`) add `language`,
`kind`, `mode`, `start_byte`, `end_byte` and where the file came from; other fields are kept.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import AstdiffuseError

GZIP_MAGIC = b"\x1f\x8b"
REQUIRED = ("task_id", "prompt", "suffix", "canonical_solution")
OPTIONAL_TEXT = ("test", "entry_point", "language", "kind", "mode")
OPTIONAL_INT = ("start_byte", "end_byte")


class BenchmarkFormatError(AstdiffuseError):
    """A benchmark file is unreadable or one of its lines is not a valid task."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class InfillTask:
    """One hole to fill. The document the model sees is `prompt + suffix`, never the middle."""

    task_id: str
    prompt: str  # code before the hole
    suffix: str  # code after it
    canonical_solution: str  # the reference middle: for scoring only
    test: str = ""  # a program defining check(candidate); empty: no execution test
    entry_point: str = ""  # the name passed to check()
    language: str = "python"  # engine.syntax language (HumanEval sets have none: python)
    kind: str = ""  # built sets: statements | expression | body (the syntax layer's span kind)
    mode: str = ""  # built sets: the selection mode that made the span (node | block)
    start_byte: int | None = None  # built sets: the middle's bytes in the original file
    end_byte: int | None = None
    extra: dict = field(default_factory=dict)  # any other field of the line, kept as is

    @property
    def has_test(self) -> bool:
        return bool(self.test.strip()) and bool(self.entry_point.strip())

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in REQUIRED}
        for name in OPTIONAL_TEXT:
            value = getattr(self, name)
            if value:
                out[name] = value
        for name in OPTIONAL_INT:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.extra)
        return out


def task_from_dict(data: object, path: str | Path = "<memory>",
                   line: int | None = None) -> InfillTask:
    """An InfillTask from one decoded JSON line; BenchmarkFormatError names what is wrong."""
    if not isinstance(data, dict):
        raise BenchmarkFormatError(path, line, f"expected a JSON object, got "
                                               f"{type(data).__name__}")
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise BenchmarkFormatError(path, line, f"missing field(s) {', '.join(missing)}; a task "
                                               f"needs {', '.join(REQUIRED)}")
    values: dict = {}
    for name in REQUIRED + OPTIONAL_TEXT:
        if name in data and data[name] is not None:
            if not isinstance(data[name], str):
                raise BenchmarkFormatError(path, line, f"field {name} must be a string, not "
                                                       f"{type(data[name]).__name__}")
            values[name] = data[name]
    for name in OPTIONAL_INT:
        value = data.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BenchmarkFormatError(path, line, f"field {name} must be a byte offset "
                                                       f"(an integer >= 0), not {value!r}")
            values[name] = value
    if not values["task_id"]:
        raise BenchmarkFormatError(path, line, "field task_id is empty")
    if not values.get("language"):
        values.pop("language", None)
    known = set(REQUIRED) | set(OPTIONAL_TEXT) | set(OPTIONAL_INT)
    return InfillTask(**values, extra={k: v for k, v in data.items() if k not in known})


def read_tasks(path: str | Path) -> list[InfillTask]:
    """Every task of a benchmark file (blank lines skipped); gzip when it starts with the gzip
    magic bytes, whatever its name. Task ids must be unique."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise BenchmarkFormatError(path, None, f"cannot read the benchmark: "
                                               f"{err.strerror or err}") from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise BenchmarkFormatError(path, None, f"not a valid gzip file: {err}") from None
    tasks: list[InfillTask] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BenchmarkFormatError(path, number, f"not UTF-8 (byte {err.start} of the "
                                                     "line)") from None
        try:
            decoded = json.loads(text)
        except ValueError as err:
            raise BenchmarkFormatError(path, number, f"not valid JSON: {err}") from None
        task = task_from_dict(decoded, path, number)
        if task.task_id in seen:
            raise BenchmarkFormatError(path, number, f"task_id {task.task_id!r} repeats line "
                                                     f"{seen[task.task_id]}")
        seen[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise BenchmarkFormatError(path, None, "the benchmark holds no task")
    return tasks


def write_tasks(path: str | Path, tasks: list[InfillTask]) -> Path:
    """Write tasks as JSONL, gzipped when the name ends in .gz (atomically: a temporary file,
    then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in tasks).encode()
    if path.suffix == ".gz":
        body = gzip.compress(body, mtime=0)  # mtime 0: the same tasks give the same bytes
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return path
