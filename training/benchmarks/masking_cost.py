"""Cost of the masking strategies per example at L = 256 .. 4096 (linear in L?) and as a share
of one training step (forward + backward at batch 16 x 512) on this machine.

    python -m training.benchmarks.masking_cost [--lengths 256 512 ...] [--min-time S] [--no-model]

Examples are windows of standard-library files, tokenized with the trained tokenizer given by
--tokenizer or else the byte-level pre-tokenizer pieces (`training.masking.build_example`), and
annotated by `engine.syntax`; rates come from the linear schedule (t ~ U(1e-3, 1)). The model is
`engine.model`'s `small` preset when that package imports, else a `torch.nn.TransformerEncoder`
stand-in of similar size. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from engine.errors import AstdiffuseError
from engine.syntax import SourceDocument, get_grammar
from training.example import TokenizedExample
from training.masking import STRATEGIES, MaskingConfig, build_example, mask_example
from training.schedules import LinearSchedule

DEFAULT_LENGTHS = (256, 512, 1024, 2048, 4096)
VOCAB_SIZE = 8192  # the default tokenizer's size (the model's embedding rows)


def load_examples(root: Path, min_tokens: int, want: int, tokenizer: str | None
                  ) -> tuple[list[TokenizedExample], int]:
    """Annotated whole files of at least `min_tokens` tokens (the first `want`, sorted by path)
    and the pad id."""
    grammar = get_grammar("python")
    examples: list[TokenizedExample] = []
    pad_id = 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or not path.is_file():
            continue
        try:
            doc = SourceDocument(path.read_bytes(), grammar)
        except AstdiffuseError:
            continue  # a few standard-library files are deliberately not UTF-8
        if len(doc.source) < 3 * min_tokens:  # at most ~3 bytes per piece: cheap pre-filter
            continue
        example, _, pad_id = build_example(doc, tokenizer, str(path.relative_to(root)))
        if len(example) >= min_tokens:
            examples.append(example)
        if len(examples) >= want:
            break
    return examples, pad_id


def windows(examples: list[TokenizedExample], length: int, count: int,
            rng: np.random.Generator) -> list[TokenizedExample]:
    """`count` windows of exactly `length` tokens at random offsets, cycling through files."""
    usable = [e for e in examples if len(e) >= length]
    if not usable:
        raise SystemExit(f"no file with {length} tokens; lower --lengths")
    out = []
    for i in range(count):
        example = usable[i % len(usable)]
        start = int(rng.integers(0, len(example) - length + 1))
        out.append(example.window(start, start + length))
    return out


def time_strategy(strategy: str, batch: list[TokenizedExample], rates: np.ndarray,
                  config: MaskingConfig, min_time: float) -> float:
    """Seconds per example: the fastest of the rounds over the whole batch run within
    `min_time` (at least 3), which keeps other processes on a shared machine out of it."""
    rounds: list[float] = []
    while len(rounds) < 3 or sum(rounds) < min_time:
        rng = np.random.default_rng(len(rounds))
        started = time.perf_counter()
        for example, rate in zip(batch, rates):
            mask_example(strategy, example, float(rate), rng, config)
        rounds.append(time.perf_counter() - started)
    return min(rounds) / len(batch)


def loglog_slope(lengths: list[int], seconds: list[float]) -> float:
    """Exponent k of time ~ L**k fitted by least squares (1.0 is linear)."""
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def build_model() -> tuple[torch.nn.Module, str, bool]:
    """The `small` preset of engine.model if it imports, else a TransformerEncoder stand-in;
    returns (model, description, is_engine_model)."""
    try:
        from engine.model import AnchoredDiffusionModel, config_from_preset

        model = AnchoredDiffusionModel(config_from_preset("small", VOCAB_SIZE))
        return model, "engine.model preset 'small' (anchored: 6 anchor + 2 denoiser layers)", True
    except ImportError:
        pass
    model = _EncoderStandIn()
    return model, "torch.nn.TransformerEncoder stand-in (6 layers, d=256, ff=1024)", False


class _EncoderStandIn(torch.nn.Module):
    """A bidirectional encoder with a tied vocabulary head, ~7 M parameters."""

    def __init__(self, hidden: int = 256, layers: int = 6):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB_SIZE, hidden)
        layer = torch.nn.TransformerEncoderLayer(hidden, 4, 4 * hidden, dropout=0.0,
                                                 batch_first=True, norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids, masked, labels, t):
        hidden = self.encoder(self.embed(input_ids))
        logits = hidden @ self.embed.weight.T
        loss = torch.nn.functional.cross_entropy(logits[masked], labels[masked])
        return loss


def time_training_step(batch: list[TokenizedExample], rates: np.ndarray, steps: int
                       ) -> dict:
    """Seconds of forward + backward + optimizer step on the batch: the median and the fastest
    of `steps` steps after one warm-up step."""
    torch.manual_seed(0)
    model, description, is_engine = build_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.tensor(np.stack([e.input_ids for e in batch]) % VOCAB_SIZE, dtype=torch.long)
    masks = [mask_example("random", e, float(r), np.random.default_rng(i)).mask
             for i, (e, r) in enumerate(zip(batch, rates))]
    masked = torch.tensor(np.stack(masks))
    mask_id = 1
    input_ids = torch.where(masked, torch.full_like(labels, mask_id), labels)
    t = torch.tensor(rates, dtype=torch.float32)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        if is_engine:
            loss = model(input_ids, masked=masked, labels=labels, t=t, return_dict=True).loss
        else:
            loss = model(input_ids, masked, labels, t)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return {"model": description,
            "parameters": sum(p.numel() for p in model.parameters()),
            "batch": [len(batch), len(batch[0])], "steps_timed": steps,
            "step_s": round(float(np.median(times[1:])), 3),
            "fastest_step_s": round(float(np.min(times[1:])), 3),
            "torch_threads": torch.get_num_threads()}


def shape_stats(batch: list[TokenizedExample], config: MaskingConfig,
                rates: tuple[float, ...] = (0.01, 0.05, 0.1, 0.3, 0.5, 1.0)) -> dict:
    """What each strategy masks at fixed rates, averaged over the batch: the share of the
    input masked, the share of the budget that came from the uniform fallback, the number of
    whole-node regions and (infill) of pads inserted per example."""
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for name in STRATEGIES:
        stats[name] = {}
        for rate in rates:
            results = [mask_example(name, e, rate, np.random.default_rng(i), config)
                       for i, e in enumerate(batch)]
            stats[name][str(rate)] = {
                "masked_share": round(float(np.mean([r.masked_share for r in results])), 4),
                "fallback_share_of_budget": round(float(np.mean(
                    [r.fallback.sum() / max(r.budget, 1) for r in results])), 4),
                "regions": round(float(np.mean([len(r.spans) for r in results])), 2),
                "pads": round(float(np.mean([r.inserted.sum() for r in results])), 2)}
    return stats


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]  # other processes on a shared machine inflate timings
    rng = np.random.default_rng(args.seed)
    lengths = sorted(args.lengths)
    examples, pad_id = load_examples(args.root, max(lengths), args.files, args.tokenizer)
    config = MaskingConfig(pad_id=pad_id)
    schedule = LinearSchedule()
    per_example: dict[str, dict[int, float]] = {name: {} for name in STRATEGIES}
    rates = schedule.rates(0, args.windows, rng)  # the same rates at every length
    for length in lengths:
        batch = windows(examples, length, args.windows, rng)
        for name in STRATEGIES:
            per_example[name][length] = time_strategy(name, batch, rates, config, args.min_time)
    result = {
        "benchmark": "masking_cost",
        "files": len(examples), "windows_per_length": args.windows, "rates": "linear t~U(1e-3,1)",
        "us_per_example": {n: {str(L): round(s * 1e6, 1) for L, s in v.items()}
                           for n, v in per_example.items()},
        "ns_per_token": {n: {str(L): round(s * 1e9 / L, 1) for L, s in v.items()}
                         for n, v in per_example.items()},
        "scaling": {n: {"time_ratio_longest_to_shortest": round(v[lengths[-1]] / v[lengths[0]], 2),
                        "length_ratio": lengths[-1] // lengths[0],
                        "loglog_slope": round(loglog_slope(lengths, list(v.values())), 3)}
                    for n, v in per_example.items()},
    }
    result["shape_at_512"] = shape_stats(windows(examples, 512, args.windows, rng), config)
    if not args.no_model:
        batch = windows(examples, 512, 16, rng)
        rates = schedule.rates(0, 16, rng)
        step = time_training_step(batch, rates, args.steps)
        masking = {n: time_strategy(n, batch, rates, config, args.min_time) * 16
                   for n in STRATEGIES}
        step["masking_16_examples_ms"] = {n: round(s * 1e3, 2) for n, s in masking.items()}
        step["masking_share_of_step_pct"] = {
            n: round(100 * s / (s + step["fastest_step_s"]), 3) for n, s in masking.items()}
        result["training_step"] = step
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                         "python": platform.python_version(), "torch": torch.__version__,
                         "cpus": os.cpu_count(),
                         "load_average_1min": [round(load_before, 2),
                                               round(os.getloadavg()[0], 2)]}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.benchmarks.masking_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="tree of Python files (default: the standard library)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--windows", type=int, default=32, help="examples per length")
    parser.add_argument("--files", type=int, default=24, help="files to cut windows from")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds to repeat each strategy and length for")
    parser.add_argument("--steps", type=int, default=3, help="training steps timed (median)")
    parser.add_argument("--no-model", action="store_true", help="skip the training step")
    parser.add_argument("--tokenizer", default=None,
                        help="trained tokenizer (default: byte-level pre-tokenizer pieces)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.lengths) <= 0:
        parser.error("--lengths must be positive")
    if not args.min_time >= 0 or args.windows <= 0:
        parser.error("--min-time must be >= 0 and --windows positive")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
