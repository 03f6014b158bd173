"""Where a run's examples come from (a shard cache, a corpus manifest, a directory of source
files, or the standard library) and the order it reads them in, replayable from (seed, step)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import AstdiffuseError
from engine.tokens import MASK_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, tokenizer_file

from ..corpus import Corpus, CorpusConfig, build_corpus
from ..example import TokenizedExample
from ..shards import INDEX_NAME, ShardConfig, ShardDataset, build_shards
from ..tokenizer import TokenizerConfig, save_tokenizer, train_from_corpus
from .args import DataArgs


class DataError(AstdiffuseError):
    """The training data cannot be used; the message says what to change."""


class DataNotFoundError(DataError, FileNotFoundError):
    """--data names nothing that exists."""


class EmptyCorpusError(DataError):
    """The corpus or one of its splits has no examples."""


class MissingSpecialTokenError(DataError):
    """The tokenizer lacks a special token that masked-diffusion training needs."""


def check_special_tokens(tokenizer: Path) -> None:
    """The tokenizer must carry <|mask|> (the absorbing state), <|pad|> (batch padding, and the
    pads infill masking puts inside a hole) and <|endoftext|> as tokens of its own: loading
    would otherwise add them past the model's vocabulary."""
    from tokenizers import Tokenizer

    try:
        encoder = Tokenizer.from_file(str(tokenizer_file(tokenizer)))
    except FileNotFoundError:
        raise DataError(f"no tokenizer.json in {tokenizer}; pass --tokenizer DIR") from None
    missing = [token for token in SPECIAL_TOKENS if encoder.token_to_id(token) is None]
    if missing:
        raise MissingSpecialTokenError(
            f"the tokenizer in {tokenizer} has no {', '.join(missing)} token; masked-diffusion "
            f"training needs {', '.join(SPECIAL_TOKENS)} ({MASK_TOKEN} for masked positions, "
            f"{PAD_TOKEN} to pad batches and infill holes). Fine-tune a model whose tokenizer "
            "has them (python -m training.tokenizer trains one), or pass --tokenizer DIR")


@dataclass
class RunData:
    """The examples of the train and validation splits and the tokenizer they were made with."""

    train: list[TokenizedExample]
    validation: list[TokenizedExample]
    tokenizer_dir: Path
    cache_dir: Path
    description: str


def _load_split(cache: Path, split: str, tokenizer: Path | None) -> list[TokenizedExample]:
    dataset = ShardDataset(cache, split, tokenizer=tokenizer,
                           cached_shards=1)
    # The whole split is held in memory: the stdlib's 7.25 M training tokens take 8 bytes each
    # (~58 MB) plus node spans,
    # and random access across shards would otherwise re-read a shard per example.
    return [example for example in dataset]


def _corpus(args: DataArgs) -> tuple[Corpus, str]:
    languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    if args.data is None:
        corpus = build_corpus(CorpusConfig(languages=languages))
        return corpus, "the Python standard library"
    path = Path(args.data).expanduser()
    if path.is_file() and path.suffix == ".json":
        return Corpus.from_manifest(path), f"the corpus manifest {path}"
    if not path.is_dir():
        raise DataNotFoundError(f"--data {args.data}: no such directory or file; pass a shard "
                                "cache, a corpus manifest (.json) or a directory of source files")
    return build_corpus(CorpusConfig(roots=(str(path.resolve()),), languages=languages)), \
        f"source files under {path}"


def _limit(corpus: Corpus, max_files: int | None) -> Corpus:
    if max_files is None:
        return corpus
    kept, counts = [], {}
    for f in corpus.files:  # the first N of each split, so validation is never empty by accident
        limit = max_files if f.split == "train" else max(2, max_files // 10)
        if counts.get(f.split, 0) < limit:
            kept.append(f)
            counts[f.split] = counts.get(f.split, 0) + 1
    return Corpus(config=corpus.config, files=kept, skipped=corpus.skipped)


def prepare_data(args: DataArgs, out: Path, model_tokenizer: Path | None,
                 progress: bool = True, build: bool = True) -> RunData:
    """Resolve --data into examples. A shard cache is used as it is; anything else is scanned
    into a corpus, a tokenizer is found or trained (OUT/tokenizer) and its shards are built into
    OUT/data (reused when up to date). `build=False` (a non-zero rank under torchrun) only reads
    what rank 0 built."""
    tokenizer = Path(args.tokenizer).expanduser() if args.tokenizer else model_tokenizer
    if tokenizer is not None:
        check_special_tokens(tokenizer)
    path = Path(args.data).expanduser() if args.data else None
    if path is not None and (path / INDEX_NAME).is_file():
        cache, description = path, f"the shard cache {path}"
        if tokenizer is None:
            tokenizer = Path(json.loads((path / INDEX_NAME).read_text())["tokenizer"]["path"])
            check_special_tokens(tokenizer)
    else:
        cache = out / "data"
        if build:
            corpus, description = _corpus(args)
            corpus = _limit(corpus, args.max_files)
            if not corpus.split("train"):
                raise EmptyCorpusError(
                    f"{description} holds no {args.languages} source file to train on "
                    f"({len(corpus.skipped)} skipped); check --data and --languages")
            if tokenizer is None:
                tokenizer = out / "tokenizer"
                if not (tokenizer / "tokenizer.json").is_file():
                    trained, record = train_from_corpus(
                        corpus, TokenizerConfig(vocab_size=args.vocab_size), progress=progress)
                    save_tokenizer(trained, tokenizer, record)
            build_shards(corpus, tokenizer, cache, ShardConfig(max_length=args.seq_len),
                         progress=progress)
            (out / "data-source.txt").write_text(description + "\n")
        else:
            description = (out / "data-source.txt").read_text().strip()
            tokenizer = tokenizer or out / "tokenizer"
    train = _load_split(cache, "train", tokenizer)
    validation = _load_split(cache, "validation", tokenizer)
    if not train:
        raise EmptyCorpusError(f"{description}: the train split has no examples; add files "
                               "or check --languages")
    if not validation:  # a tiny corpus can hash every file into train
        validation = train[: max(1, len(train) // 20)]
    return RunData(train, validation, Path(tokenizer), cache, description)


class BatchOrder:
    """Which training examples each optimizer step reads: epoch e is a permutation of all
    examples drawn from (seed, e); step s takes the next `per_step` of the endless sequence of
    epochs, and process `rank` of `world` takes every world-th of them. A function of (seed,
    step) only, so a resumed run reads exactly what the killed one would have."""

    def __init__(self, count: int, per_step: int, seed: int, rank: int = 0, world: int = 1):
        if count < 1:
            raise EmptyCorpusError("no training examples")
        self.count, self.per_step, self.seed = count, per_step, seed
        self.rank, self.world = rank, world
        self._epoch, self._perm = -1, np.zeros(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.count)
        return self._perm

    def step(self, step: int) -> list[int]:
        """Example indices of this process for optimizer step `step` (0-based)."""
        start = step * self.per_step * self.world
        chosen = []
        for position in range(start + self.rank, start + self.per_step * self.world, self.world):
            epoch, offset = divmod(position, self.count)
            chosen.append(int(self._permutation(epoch)[offset]))
        return chosen

    def epoch_of(self, step: int) -> float:
        return step * self.per_step * self.world / self.count
