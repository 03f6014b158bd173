"""Run metrics: one JSON object per line in OUT/metrics.jsonl (appended across resumes, each
line with its step), and the progress bar with loss, tokens/s and ETA."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class MetricsLog:
    """Appends records to metrics.jsonl; on resume, lines past the checkpoint's step (written
    after it, by the run that was killed) are dropped so the log has each step once."""

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resume_step is None:
            path.write_text("")
        elif path.is_file():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and _step(line) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a torn last line is dropped


def read_metrics(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Progress:
    """A tqdm bar over optimizer steps (loss, tokens/s, ETA); without it, messages go to stderr
    unless `quiet` (the processes other than rank 0 under torchrun)."""

    def __init__(self, total: int, start: int, enabled: bool, quiet: bool = False):
        self.bar, self.quiet = None, quiet
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step",
                            file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5 if sys.stderr.isatty() else 10.0)

    def update(self, **postfix: str) -> None:
        """One step done; `postfix` (e.g. loss, tokens/s), when given, replaces the shown one."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(refresh=False, **postfix)
            self.bar.update(1)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif not self.quiet:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Throughput:
    """Tokens per second over the steps since the last reading."""

    def __init__(self):
        self.tokens, self.began = 0, time.perf_counter()

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def read(self) -> float:
        now = time.perf_counter()
        rate = self.tokens / max(now - self.began, 1e-9)
        self.tokens, self.began = 0, now
        return rate
