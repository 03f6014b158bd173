"""The loss curves of a run as a PNG (matplotlib, no display needed): training loss, its anchor
term, and the held-out loss, by step. `python -m training.finetune.plot RUN_DIR` redraws it."""

from __future__ import annotations

import sys
from pathlib import Path

from .metrics import read_metrics


def plot_losses(metrics_path: Path, out: Path, title: str = "") -> Path | None:
    """Draw metrics.jsonl's curves into `out`; None (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, no loss plot (pip install matplotlib)",
              file=sys.stderr)
        return None
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    held = [r for r in records if r.get("kind") == "eval"]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        axis.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss",
                  linewidth=1)
        if any(r.get("anchor_loss") for r in train):
            axis.plot([r["step"] for r in train], [r["anchor_loss"] for r in train],
                      label="train anchor term", linewidth=1, alpha=0.7)
    if held:
        axis.plot([r["step"] for r in held], [r["eval_loss"] for r in held], "o-",
                  label="held-out loss (mean CE per masked token)")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (nats)")
    axis.set_title(title or metrics_path.parent.name)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m training.finetune.plot RUN_DIR", file=sys.stderr)
        return 2
    run = Path(argv[0])
    if not (run / "metrics.jsonl").is_file():
        print(f"error: no metrics.jsonl in {run}", file=sys.stderr)
        return 2
    print(plot_losses(run / "metrics.jsonl", run / "loss.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
