"""Training throughput of the anchored model by shape on this machine: tokens per second of a
full training step (forward, masked-diffusion loss, backward, AdamW) on random tokens, for
several widths and depths at the same budget, in fp32 and under bf16 autocast, optionally with
torch.compile. Prints one JSON object (docs/training.md records the figures and the machine).

    python -m training.benchmarks.train_speed [--shapes 256x8,384x4,192x12] [--seq-len 256]
        [--batch 8] [--steps 6] [--threads 2] [--vocab 8192] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time

import torch

from engine.infill.engine import cpu_has_native_bf16
from engine.model import AnchoredDiffusionConfig, AnchoredDiffusionModel


def shape_config(hidden: int, layers: int, vocab: int, seq_len: int) -> AnchoredDiffusionConfig:
    """A model `hidden` wide and `layers` deep: the anchored layout of the small preset (three
    quarters anchor layers, the rest denoiser), heads of 64, an MLP 4x wide."""
    anchor = max(1, round(layers * 0.75))
    return AnchoredDiffusionConfig(
        vocab_size=vocab, hidden_size=hidden, num_anchor_layers=anchor,
        num_denoiser_layers=max(1, layers - anchor), num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden, max_position_embeddings=max(1024, seq_len),
        mask_token_id=1, use_anchor=True)


def measure(hidden: int, layers: int, *, vocab: int, seq_len: int, batch: int, steps: int,
            bf16: bool, compile_: bool) -> dict:
    torch.manual_seed(0)
    model = AnchoredDiffusionModel(shape_config(hidden, layers, vocab, seq_len)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step_fn = torch.compile(model) if compile_ else model
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(3, vocab, (batch, seq_len), generator=generator)
    masked = torch.rand(batch, seq_len, generator=generator) < 0.3
    ids = labels.masked_fill(masked, 1)
    t = torch.full((batch,), 0.3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = step_fn(input_ids=ids, masked=masked, labels=labels, t=t)
        out.loss.backward()
        optimizer.step()
        return float(out.loss)

    began = time.perf_counter()
    step()  # warm-up (and compilation)
    first = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - began) / steps
    params = sum(p.numel() for p in model.parameters())
    return {"hidden": hidden, "layers": layers, "params_m": round(params / 1e6, 2),
            "dtype": "bf16-autocast" if bf16 else "fp32", "compile": compile_,
            "step_s": round(seconds, 3), "tokens_per_s": round(batch * seq_len / seconds),
            "first_step_s": round(first, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.benchmarks.train_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="256x8,384x4,192x12,512x4",
                        help="WIDTHxLAYERS, comma-separated")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps after one warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32, bf16 (autocast) or both")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s]
    rows = []
    for hidden, layers in shapes:
        for dtype in args.dtypes.split(","):
            for compile_ in ((False, True) if args.compile else (False,)):
                rows.append(measure(hidden, layers, vocab=args.vocab, seq_len=args.seq_len,
                                    batch=args.batch, steps=args.steps, bf16=dtype == "bf16",
                                    compile_=compile_))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        pass
    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads": args.threads, "torch": torch.__version__,
                    "native_bf16": cpu_has_native_bf16(),
                    "avx512": "avx512f" in flags, "avx2": "avx2" in flags},
        "seq_len": args.seq_len, "batch": args.batch, "vocab": args.vocab, "rows": rows},
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
