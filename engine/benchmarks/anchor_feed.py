"""Which `anchor_feed` learns faster on a CPU: trains the "hidden" and "logits" anchored models
and the MDLM baseline side by side on Python code and prints held-out loss by step and second.

Run `python -m engine.benchmarks.anchor_feed` (docs/model.md has the figures and the machine).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import SourceDecodeError, SourceTooLargeError
from ..syntax import SourceDocument, annotate_tokens
from ..syntax.node_tables import ANCHOR_INDEX
from ..tokens import SPECIAL_TOKENS
from ..model.modeling import AnchoredDiffusionModel
from ..model.presets import config_from_preset

VARIANTS = {  # name -> config overrides
    "anchor/hidden": dict(use_anchor=True, anchor_feed="hidden"),
    "anchor/logits": dict(use_anchor=True, anchor_feed="logits"),
    "mdlm": dict(use_anchor=False),
}
EVAL_T = (0.1, 0.3, 0.5, 0.7, 0.9)  # noise levels of the held-out batch
# AnchorTree weights as training.anchors defines them: gamma * decay ** max(0, depth - d0).
GAMMA, DECAY, D0 = 1.0, 0.9, 2


def python_files(max_bytes: int) -> list[str]:
    """Texts of the standard library's Python files, every 7th in sorted order, up to max_bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(root.rglob("*.py"))[::7]:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text)
        if total >= max_bytes:
            break
    return texts


def train_bpe(texts: list[str], vocab_size: int):
    """A byte-level BPE with the special tokens at ids 0, 1, 2 (as training.tokenizer builds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def windows(tokenizer, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token windows [N, length] int64 and their anchor weights [N, length] float32."""
    ids_out, weights_out = [], []
    anchor_ids = [ANCHOR_INDEX["keyword"], ANCHOR_INDEX["identifier"]]
    for text in texts:
        try:
            doc = SourceDocument(text, "python")
        except (SourceDecodeError, SourceTooLargeError):
            continue
        encoding = tokenizer.encode(text)
        structure = annotate_tokens(doc, encoding.offsets, unit="char")
        weights = GAMMA * np.power(DECAY, np.maximum(0, structure.depths - D0))
        weights = np.where(np.isin(structure.anchors, anchor_ids), weights, 0.0)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        for start in range(0, len(ids) - length + 1, length):
            ids_out.append(ids[start:start + length])
            weights_out.append(weights[start:start + length].astype(np.float32))
    return np.stack(ids_out), np.stack(weights_out)


def corrupt(ids: torch.Tensor, t: torch.Tensor, mask_id: int, generator: torch.Generator):
    """Mask each token of ids [B, L] with probability t [B]; at least one per row."""
    masked = torch.rand(ids.shape, generator=generator) < t[:, None]
    masked[:, 0] |= ~masked.any(-1)
    return ids.masked_fill(masked, mask_id), masked


@torch.no_grad()
def evaluate(model, batch) -> float:
    """Mean cross-entropy of the denoiser over the masked tokens of the held-out batch."""
    model.eval()
    inputs, labels = batch
    total, count = 0.0, 0
    for start in range(0, len(inputs), 16):
        out = model(inputs[start:start + 16], labels=labels[start:start + 16],
                    loss_weighting="mean")
        n = int((inputs[start:start + 16] == model.config.mask_token_id).sum())
        total, count = total + out.nelbo.item() * n, count + n
    model.train()
    return total / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model preset (default small)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary (8192)")
    parser.add_argument("--corpus-bytes", type=int, default=3_000_000,
                        help="characters of standard-library Python to use (3 M)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per window (128)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per step (8)")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps (400)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between evaluations")
    parser.add_argument("--eval-windows", type=int, default=16,
                        help="held-out windows, each masked at every EVAL_T level (16)")
    parser.add_argument("--overfit", type=int, default=0, metavar="N",
                        help="train on N fixed windows and evaluate on them (default 0: train on "
                             "all, evaluate on held-out files)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config argument of the preset, e.g. --set hidden_size=128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}

    texts = python_files(args.corpus_bytes)
    held_out, train_texts = texts[::10], [t for i, t in enumerate(texts) if i % 10]
    tokenizer = train_bpe(train_texts, args.vocab_size)
    train_ids, train_w = windows(tokenizer, train_texts, args.seq_len)
    eval_ids, _ = windows(tokenizer, held_out, args.seq_len)
    if args.overfit:
        train_ids, train_w = train_ids[:args.overfit], train_w[:args.overfit]
        eval_ids = train_ids
    print(f"{len(texts)} files, {len(train_ids)} train / {len(eval_ids)} held-out windows of "
          f"{args.seq_len} tokens", file=sys.stderr)

    mask_id = SPECIAL_TOKENS.index("<|mask|>")
    generator = torch.Generator().manual_seed(args.seed)
    chosen = torch.from_numpy(eval_ids[:args.eval_windows]).repeat(len(EVAL_T), 1)
    eval_t = torch.tensor(EVAL_T).repeat_interleave(min(args.eval_windows, len(eval_ids)))
    eval_batch = (corrupt(chosen, eval_t, mask_id, generator)[0], chosen)

    models, optimizers, seconds = {}, {}, {}
    for name, overrides in VARIANTS.items():
        torch.manual_seed(args.seed)
        config = config_from_preset(args.preset, args.vocab_size, mask_token_id=mask_id,
                                    **shape, **overrides)
        models[name] = AnchoredDiffusionModel(config).train()
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=args.lr,
                                             betas=(0.9, 0.98), weight_decay=0.0)
        seconds[name] = 0.0
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    rows = [{"step": 0, **{name: {"loss": evaluate(m, eval_batch), "seconds": 0.0}
                           for name, m in models.items()}}]
    print(json.dumps(rows[-1]), file=sys.stderr)
    warmup = max(1, args.steps // 20)
    for step in range(1, args.steps + 1):
        pick = torch.randint(len(train_ids), (args.batch_size,), generator=generator)
        labels = torch.from_numpy(train_ids[pick.numpy()])
        weights = torch.from_numpy(train_w[pick.numpy()])
        t = torch.rand(args.batch_size, generator=generator) * 0.95 + 0.05
        inputs, _ = corrupt(labels, t, mask_id, generator)
        lr = args.lr * min(1.0, step / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        # Variants take turns on the same batch so a change in machine load hits all of them.
        for name, model in models.items():
            for group in optimizers[name].param_groups:
                group["lr"] = lr
            start = time.perf_counter()
            out = model(inputs, labels=labels, t=t, loss_weighting="mean",
                        anchor_weights=weights if model.config.use_anchor else None)
            optimizers[name].zero_grad(set_to_none=True)
            out.loss.backward()
            optimizers[name].step()
            seconds[name] += time.perf_counter() - start
        if step % args.eval_every == 0 or step == args.steps:
            rows.append({"step": step, **{name: {"loss": evaluate(m, eval_batch),
                                                  "seconds": seconds[name]}
                                           for name, m in models.items()}})
            print(json.dumps(rows[-1]), file=sys.stderr)

    names = list(models)
    data = f"overfit on {args.overfit} windows, " if args.overfit else ""
    print(f"preset {args.preset} {shape or ''}, vocab {args.vocab_size}, {data}batch "
          f"{args.batch_size} x {args.seq_len}, {args.steps} steps, {args.threads} thread(s)")
    print("params: " + ", ".join(f"{n} {params[n] / 1e6:.2f} M" for n in names))
    print("s/step: " + ", ".join(f"{n} {seconds[n] / args.steps:.3f}" for n in names))
    print("| step | " + " | ".join(f"{n} loss (train s)" for n in names) + " |")
    print("| ---: | " + " | ".join("---:" for _ in names) + " |")
    for row in rows:
        cells = [f"{row[n]['loss']:.3f} ({row[n]['seconds']:.0f})" for n in names]
        print(f"| {row['step']} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "params": params, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
