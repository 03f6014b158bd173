"""Trains the byte-level BPE tokenizer of astdiffuse models on the train split of a corpus and
saves it so both `engine.tokens.load_tokenizer` and `transformers.AutoTokenizer` load it.

Run `python -m training.tokenizer --out DIR`; every text decodes back exactly (no normalizer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from engine.errors import AstdiffuseError
from engine.tokens import EOS_TOKEN, MASK_TOKEN, PAD_TOKEN, SPECIAL_TOKENS
from training.corpus import (Corpus, CorpusFile, Progress, add_corpus_arguments, build_corpus,
                             config_from_args, split_bucket)

TRAINING_RECORD = "astdiffuse_tokenizer.json"  # written beside tokenizer.json: how it was trained


class TokenizerTrainingError(AstdiffuseError):
    """Training could not produce a usable tokenizer (bad settings, nothing to train on)."""


@dataclass(frozen=True)
class TokenizerConfig:
    """How to train the BPE."""

    vocab_size: int = 8192  # final vocabulary, special tokens and the 256 byte symbols included
    min_frequency: int = 2  # a pair must occur this often to be merged
    limit_files: int | None = None  # train on this many train-split files (a stable sample)

    def validate(self) -> None:
        smallest = len(SPECIAL_TOKENS) + 256 + 1
        if self.vocab_size < smallest:
            raise TokenizerTrainingError(f"vocab_size must be at least {smallest} (special tokens "
                                         f"+ 256 bytes + one merge), not {self.vocab_size}")
        if self.min_frequency < 1:
            raise TokenizerTrainingError(f"min_frequency must be >= 1, not {self.min_frequency}")
        if self.limit_files is not None and self.limit_files < 1:
            raise TokenizerTrainingError(f"limit_files must be >= 1, not {self.limit_files}")


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with the pipeline every astdiffuse tokenizer uses."""
    tokenizer = Tokenizer(models.BPE())
    # No normalizer: the text must come back byte for byte.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    # Untrimmed offsets: a token's offsets cover its leading whitespace, which annotation needs.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig = TokenizerConfig(),
                    length: int | None = None) -> Tokenizer:
    """Train on texts; the special tokens get ids 0, 1, 2 (pad, mask, eos) and every byte has
    a symbol, so any text can be encoded."""
    config.validate()
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size, min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise TokenizerTrainingError(f"special tokens {SPECIAL_TOKENS} got ids {ids}, not 0, 1, 2")
    return tokenizer


def training_files(corpus: Corpus, limit: int | None = None) -> list[CorpusFile]:
    """The train split; with a limit, the files with the smallest split hash (a stable sample
    spread over the whole tree that only grows as the limit grows)."""
    files = corpus.split("train")
    if limit is not None:
        salt = corpus.config.split_salt + "tokenizer-sample"
        files = sorted(files, key=lambda f: split_bucket(f.relative_path, salt))[:limit]
    return files


def _read_all(files: Sequence[CorpusFile], meter: Progress) -> Iterator[str]:
    for f in files:
        yield f.read_text()
        meter.update()


def train_from_corpus(corpus: Corpus, config: TokenizerConfig = TokenizerConfig(),
                      progress: bool = False) -> tuple[Tokenizer, dict]:
    """Train on the corpus' train split; returns the tokenizer and a record of the run."""
    config.validate()
    files = training_files(corpus, config.limit_files)
    if not files:
        raise TokenizerTrainingError("the corpus has no training files; check --root and "
                                     "--languages (python -m training.corpus shows the corpus)")
    started = time.perf_counter()
    meter = Progress("tokenizer: files read", len(files), enabled=progress)
    tokenizer = train_tokenizer(_read_all(files, meter), config, length=len(files))
    meter.close()
    record = {
        "config": asdict(config),
        "corpus_fingerprint": corpus.fingerprint(),
        "training_files": len(files),
        "training_bytes": sum(f.size for f in files),
        "training_seconds": round(time.perf_counter() - started, 2),
        "vocab_size": tokenizer.get_vocab_size(),
    }
    return tokenizer, record


def save_tokenizer(tokenizer: Tokenizer, out_dir: str | Path, record: dict | None = None) -> Path:
    """Save `tokenizer.json` and the transformers files (tokenizer_config.json) into out_dir,
    plus the training record; returns the directory."""
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD_TOKEN,
                                   mask_token=MASK_TOKEN, eos_token=EOS_TOKEN,
                                   clean_up_tokenization_spaces=False)
    fast.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # The class name transformers 4 and 5 both resolve (5 aliases it to its TokenizersBackend).
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if record is not None:
        record = dict(record, tokenizer_sha256=tokenizer_fingerprint(out))
        (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


def tokenizer_fingerprint(path: str | Path) -> str:
    """SHA-256 of a tokenizer's `tokenizer.json` (a directory or the file itself)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as err:
        raise TokenizerTrainingError(f"cannot read tokenizer {file}: {err}; train one with "
                                     "python -m training.tokenizer --out DIR") from None


def round_trip_failures(tokenizer: Tokenizer, texts: Sequence[str], batch: int = 64) -> list[int]:
    """Indices of texts for which decode(encode(text)) != text."""
    failures = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start:start + batch])
        encodings = tokenizer.encode_batch(chunk, add_special_tokens=False)
        failures += [start + i for i in _mismatches(tokenizer, chunk, encodings)]
    return failures


def _mismatches(tokenizer: Tokenizer, texts: Sequence[str], encodings: list) -> list[int]:
    decoded = tokenizer.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    return [i for i, (a, b) in enumerate(zip(texts, decoded)) if a != b]


def measure(tokenizer: Tokenizer, files: Sequence[CorpusFile], batch: int = 64) -> dict:
    """Bytes, tokens, bytes per token and round-trip failures (relative paths) over files."""
    total_bytes = total_tokens = 0
    failures: list[str] = []
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        texts = [f.read_text() for f in chunk]
        encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
        total_tokens += sum(len(e.ids) for e in encodings)
        total_bytes += sum(f.size for f in chunk)
        failures += [chunk[i].relative_path for i in _mismatches(tokenizer, texts, encodings)]
    return {"files": len(files), "bytes": total_bytes, "tokens": total_tokens,
            "bytes_per_token": round(total_bytes / total_tokens, 3) if total_tokens else None,
            "round_trip_failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tokenizer", description=__doc__)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--vocab-size", type=int, default=TokenizerConfig.vocab_size,
                        help="vocabulary size (default 8192)")
    parser.add_argument("--min-frequency", type=int, default=TokenizerConfig.min_frequency,
                        help="minimum pair frequency for a merge (default 2)")
    parser.add_argument("--limit-files", type=int, default=None, metavar="N",
                        help="train on N train-split files (a stable sample; default all)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the round-trip check and bytes/token measurement afterwards")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_corpus_arguments(parser)
    args = parser.parse_args(argv)
    config = TokenizerConfig(args.vocab_size, args.min_frequency, args.limit_files)
    try:
        corpus = build_corpus(config_from_args(args), progress=not args.quiet)
        tokenizer, record = train_from_corpus(corpus, config, progress=not args.quiet)
        if not args.no_check:
            started = time.perf_counter()
            for split in ("train", "validation"):
                record[f"{split}_measure"] = measure(tokenizer, corpus.split(split))
            record["check_seconds"] = round(time.perf_counter() - started, 2)
        out = save_tokenizer(tokenizer, args.out, record)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"tokenizer: {out} (vocab {record['vocab_size']:,}, trained on "
          f"{record['training_files']:,} files, {record['training_bytes']:,} bytes in "
          f"{record['training_seconds']} s)")
    failed = 0
    for split in ("train", "validation"):
        m = record.get(f"{split}_measure")
        if m:
            failed += len(m["round_trip_failures"])
            print(f"{split}: {m['files']:,} files, {m['bytes']:,} bytes, {m['tokens']:,} tokens, "
                  f"{m['bytes_per_token']} bytes/token, round-trip failures "
                  f"{len(m['round_trip_failures'])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
