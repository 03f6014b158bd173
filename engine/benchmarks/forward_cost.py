"""What one model call costs in the sampler: a full pass over the canvas (plain `logits`, and
`denoise_step` building the cache with heads only at the span) against a cached step, in fp32
and bf16, for a random model of a preset. Prints JSON (docs/inference.md has the figures).

    python -m engine.benchmarks.forward_cost [--preset small] [--length 1024] [--span 24] [--rows 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ..model import AnchoredDiffusionModel, config_from_preset


def timed(call, repeats: int) -> float:
    """Mean milliseconds of `call()` over `repeats` runs after one warm-up."""
    call()
    began = time.perf_counter()
    for _ in range(repeats):
        call()
    return round((time.perf_counter() - began) / repeats * 1000.0, 2)


def measure(preset: str, length: int, span: int, rows: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = AnchoredDiffusionModel(config_from_preset(preset, 8192)).eval()
    ids = torch.randint(3, 8192, (1, length))
    start = length // 2
    ids[0, start:start + span] = model.config.mask_token_id
    active = torch.arange(start, start + span).unsqueeze(0)
    out: dict = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = model.to(dtype)
        batch, batch_active = ids.repeat(rows, 1), active.repeat(rows, 1)
        _, _, cache = model.denoise_step(batch, batch_active)
        _, _, one_row = model.denoise_step(ids, active)
        out[str(dtype).removeprefix("torch.")] = {
            "logits_full_ms": timed(lambda: model.logits(ids), repeats),
            "full_pass_ms": timed(lambda: model.denoise_step(ids, active), repeats),
            "cached_step_ms": timed(lambda: model.denoise_step(ids, active, cache=one_row),
                                    repeats),
            f"cached_step_{rows}_rows_ms": timed(
                lambda: model.denoise_step(batch, batch_active, cache=cache), repeats),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.benchmarks.forward_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model preset (default small)")
    parser.add_argument("--length", type=int, default=1024, help="canvas tokens (1024)")
    parser.add_argument("--span", type=int, default=24, help="masked span tokens (24)")
    parser.add_argument("--rows", type=int, default=3, help="rows of a cached batch (3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls each (10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"preset": args.preset, "length": args.length, "span": args.span,
              "rows": args.rows, "threads": args.threads, "torch": torch.__version__,
              **measure(args.preset, args.length, args.span, args.rows, args.repeats)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
