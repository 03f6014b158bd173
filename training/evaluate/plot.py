"""Quality against denoising steps: the benchmark run at several step counts, the figures written
as JSON and drawn as a PNG (matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

from engine.errors import AstdiffuseError

from .harness import EvalSettings, evaluate
from .metrics import METRICS
from .tasks import InfillTask

LABELS = {"exact_match": "exact match (as-is)",
          "exact_match_normalized": "exact match (whitespace-normalized)",
          "syntax_valid": "whole program parses",
          "nonempty_and_parses": "non-empty and parses",
          "python_compiles": "CPython compiles it", "pass@1": "pass@1"}


class PlotError(AstdiffuseError):
    """The sweep cannot be drawn (matplotlib missing, no step counts)."""


def parse_steps(text: str) -> list[int]:
    """`4,8,16` -> [4, 8, 16]: positive, sorted, each once."""
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise PlotError(f"--plot-steps takes step counts like 4,8,16, not {text!r}") from None
    if not steps or steps[0] < 1:
        raise PlotError(f"--plot-steps needs positive step counts, not {text!r}")
    return steps


def sweep_steps(engine, tasks: list[InfillTask], settings: EvalSettings, steps: list[int], *,
                known: dict | None = None, progress: Callable[[str], None] | None = None
                ) -> list[dict]:
    """One report per step count (`known`, a report already run at its `steps`, is reused)."""
    points = []
    for count in steps:
        if known is not None and known.get("steps") == count:
            points.append(known)
            continue
        report, _ = evaluate(engine, tasks, dataclasses.replace(settings, steps=count),
                             progress=progress)
        points.append(report)
    return points


def write_sweep(points: list[dict], png: Path, title: str = "") -> tuple[Path, Path]:
    """The figures as JSON beside the PNG (same name, .json) and the PNG; returns both paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is not installed: pip install matplotlib") from None
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    numbers = png.with_suffix(".json")
    record = {"steps": [p["steps"] for p in points],
              **{m: [p[m] for p in points] for m in METRICS},
              "points": points}
    tmp = numbers.with_name(numbers.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, numbers)

    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    steps = record["steps"]
    for metric in METRICS:
        values = record[metric]
        if any(v is None for v in values):
            continue  # pass@1 of a set without tests
        axis.plot(steps, values, "o-", label=LABELS[metric])
    axis.set_xscale("log", base=2)
    axis.set_xticks(steps, [str(s) for s in steps])
    axis.set_xlabel("denoising steps")
    axis.set_ylabel("share of tasks")
    axis.set_ylim(-0.02, 1.02)
    first = points[0]
    axis.set_title(title or f"{Path(first['benchmark']).name}: n={first['n']}, "
                            f"seed {first['seed']}, model {Path(str(first['model'])).name}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png)
    plt.close(figure)
    return png, numbers
