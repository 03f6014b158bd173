"""An UNTRAINED (random init) AnchoredDiffusionModel with a real tokenizer: a stand-in for speed
measurements (`python -m engine.bench --model DIR`) until a trained default model exists.

    python -m training.benchmarks.random_model OUT [--preset small] [--vocab-size 8192] [--seed 0]

The tokenizer is a byte-level BPE trained on the standard library's TRAIN split (the text capped
at --max-mb, so it takes well under a minute), so canvases have the token counts a real model
sees; the model has the preset's shape and random weights. Its outputs are noise: use it for
SPEED figures only (latency, forward passes, tokens/s); the exact match of an untrained model is
0 and says nothing about quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from pathlib import Path

import torch

RECORD = "astdiffuse_random_model.json"  # written beside the model: what it is and how it was made


def training_texts(max_bytes: int) -> tuple[list[str], int, int]:
    """Texts of the stdlib's train split in a stable sample order, up to `max_bytes` in all;
    returns the texts, the files used and their bytes."""
    from training.corpus import CorpusConfig, build_corpus
    from training.tokenizer import training_files

    corpus = build_corpus(CorpusConfig(roots=(sysconfig.get_paths()["stdlib"],)))
    files = training_files(corpus, limit=len(corpus.split("train")))  # stable sampled order
    texts, size = [], 0
    for f in files:
        if size + f.size > max_bytes and texts:
            continue
        texts.append(f.read_text())
        size += f.size
        if size >= max_bytes:
            break
    return texts, len(texts), size


def make_random_model(out: str | Path, preset: str = "small", vocab_size: int = 8192,
                      seed: int = 0, max_bytes: int = 3_000_000) -> dict:
    """Train the tokenizer, build the random model, save both into `out`; returns the record."""
    from engine.model import AnchoredDiffusionModel, config_from_preset, save_model_and_tokenizer
    from training.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

    started = time.perf_counter()
    texts, files, size = training_texts(max_bytes)
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=vocab_size))
    tokenizer_s = time.perf_counter() - started
    torch.manual_seed(seed)
    config = config_from_preset(preset, tokenizer.get_vocab_size())
    model = AnchoredDiffusionModel(config).eval()
    out = Path(out)
    save_model_and_tokenizer(model, tokenizer, out)
    save_tokenizer(tokenizer, out)  # tokenizer_config.json too, as training saves it
    record = {
        "untrained": True,
        "note": "random init: a stand-in for speed measurements only; exact match is 0",
        "preset": preset, "seed": seed, "vocab_size": tokenizer.get_vocab_size(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_training_files": files, "tokenizer_training_bytes": size,
        "tokenizer_seconds": round(tokenizer_s, 1),
    }
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.benchmarks.random_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="directory to save the model and tokenizer into")
    parser.add_argument("--preset", default="small", help="model preset (default small)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary (8192)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (0)")
    parser.add_argument("--max-mb", type=float, default=3.0,
                        help="MB of train-split text for the tokenizer (default 3)")
    args = parser.parse_args(argv)
    from engine.errors import AstdiffuseError

    try:
        record = make_random_model(args.out, args.preset, args.vocab_size, args.seed,
                                   int(args.max_mb * 1e6))
    except (AstdiffuseError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(dict(record, out=str(Path(args.out).resolve())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
