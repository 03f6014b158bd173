"""The preprocessing cache: every corpus file tokenized and annotated once (TreeDiff's "AST work
amortized at preprocessing"), cut into windows, stored as checksummed msgpack shards per split.

Build with `python -m training.shards --tokenizer DIR --out DIR`; read with `ShardDataset`.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import multiprocessing
import os
import random
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import msgpack
import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from engine.errors import AstdiffuseError
from engine.syntax import SourceDocument, annotate_tokens
from engine.syntax.annotate import NODE_ROLES
from engine.tokens import load_source_encoder
from training.corpus import (SPLITS, Corpus, CorpusFile, Progress, add_corpus_arguments,
                             build_corpus, config_from_args)
from training.example import TokenizedExample
from training.tokenizer import tokenizer_fingerprint

# Shard file: HEADER, then a msgpack payload of `count` examples (see docs/training-data.md).
MAGIC = b"ASTDSHRD"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQ32s")  # magic, version, example count, payload bytes, payload sha256
INDEX_NAME = "index.json"
INDEX_FORMAT = "astdiffuse-shards"
SHARD_SUFFIX = ".shard"
# Stored dtype (numpy dtype.str, little-endian) of each array of a TokenizedExample.
ARRAY_DTYPES: dict[str, str] = {"input_ids": "<i4", "tiers": "|i1", "depths": "<i2",
                                "anchors": "|i1", "node_spans": "<i4"}
STATEMENT_ROLE = NODE_ROLES.index("statement")
OnCorrupt = Literal["raise", "skip", "rebuild"]
_REBUILD_HINT = ("rebuild the cache with python -m training.shards --tokenizer DIR --out DIR, or "
                 "read it with on_corrupt='rebuild'")


class ShardError(AstdiffuseError):
    """A shard or the cache index is missing, truncated, corrupt or from another build."""

    def __init__(self, path: str | Path, problem: str, remedy: str = _REBUILD_HINT):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"shard cache file {path}: {problem}; {remedy}")


class StaleShardsError(ShardError):
    """The cache was built with another tokenizer, other settings or an older format."""


class ShardSettingsError(AstdiffuseError):
    """A shard setting is out of range."""


@dataclass(frozen=True)
class ShardConfig:
    """How files become windows and windows become shards."""

    max_length: int = 512  # tokens per window, at most
    examples_per_shard: int = 1024  # windows per shard (the last shard of a split holds fewer)
    min_window_fill: float = 0.5  # a window cut at a statement start keeps >= this * max_length
    workers: int = 1  # processes that tokenize and annotate; 1 = this process

    def validate(self) -> None:
        if self.max_length < 1 or self.examples_per_shard < 1 or self.workers < 1:
            raise ShardSettingsError(
                "max_length, examples_per_shard and workers must be >= 1, not "
                f"{self.max_length}, {self.examples_per_shard}, {self.workers}")
        if not 0.0 <= self.min_window_fill <= 1.0:
            raise ShardSettingsError(f"min_window_fill must be a fraction in [0, 1], not "
                                     f"{self.min_window_fill}")

    def cache_settings(self) -> dict:
        """The settings that change the shards' content (workers does not)."""
        return {"format_version": FORMAT_VERSION, "max_length": self.max_length,
                "examples_per_shard": self.examples_per_shard,
                "min_window_fill": self.min_window_fill}


# -- windows ------------------------------------------------------------------------------------

def window_bounds(n_tokens: int, statement_starts: np.ndarray, max_length: int,
                  min_fill: float = 0.5) -> list[tuple[int, int]]:
    """Consecutive [start, end) windows covering n_tokens, each at most max_length long.

    A window that must be cut ends where the last statement starting inside it begins, as long
    as that keeps at least min_fill * max_length tokens; otherwise it is cut at max_length.
    """
    starts = np.asarray(statement_starts, dtype=np.int64)
    shortest = max(1, int(max_length * min_fill))
    bounds = []
    start = 0
    while n_tokens - start > max_length:
        limit = start + max_length
        i = int(np.searchsorted(starts, limit, side="right")) - 1
        cut = int(starts[i]) if i >= 0 and starts[i] >= start + shortest else limit
        bounds.append((start, cut))
        start = cut
    if n_tokens > start:
        bounds.append((start, n_tokens))
    return bounds


def cut_windows(example: TokenizedExample, max_length: int,
                min_fill: float = 0.5) -> list[TokenizedExample]:
    """A whole file's example cut into windows of at most max_length tokens (see
    `window_bounds`); each keeps the node spans wholly inside it."""
    spans = example.node_spans
    statement_starts = np.unique(spans[spans[:, 3] == STATEMENT_ROLE, 0])
    return [example.window(start, end)
            for start, end in window_bounds(len(example), statement_starts, max_length, min_fill)]


class FileProcessor:
    """Tokenizes, annotates and windows source files with one tokenizer."""

    def __init__(self, tokenizer_dir: str | Path, config: ShardConfig = ShardConfig()):
        # The Rust tokenizer itself (40% quicker than transformers' __call__).
        self.backend = load_source_encoder(tokenizer_dir)
        self.config = config

    def examples_for_text(self, text: str, language: str, path: str = "") -> list[TokenizedExample]:
        doc = SourceDocument(text, language, max_bytes=sys.maxsize)  # the corpus bounds size
        encoding = self.backend.encode(text, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int32)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)  # characters
        structure = annotate_tokens(doc, offsets, unit="char", node_spans=True)
        example = TokenizedExample.from_structure(ids, structure, path, language)
        return cut_windows(example, self.config.max_length, self.config.min_window_fill)

    def examples(self, file: CorpusFile) -> list[TokenizedExample]:
        return self.examples_for_text(file.read_text(), file.language, file.relative_path)


# -- shard files --------------------------------------------------------------------------------

def _encode_array(name: str, array: np.ndarray) -> list:
    stored = np.ascontiguousarray(array, dtype=np.dtype(ARRAY_DTYPES[name]))
    return [ARRAY_DTYPES[name], list(stored.shape), stored.tobytes()]


def encode_example(example: TokenizedExample) -> dict:
    """A msgpack-ready map: path, language, and each array as [dtype, shape, raw bytes]."""
    record: dict = {"path": example.path, "language": example.language}
    for name in ARRAY_DTYPES:
        record[name] = _encode_array(name, getattr(example, name))
    return record


def decode_example(record: dict, path: str | Path = "(memory)") -> TokenizedExample:
    """Inverse of `encode_example`; raises ShardError naming `path` on any inconsistency."""
    try:
        arrays = {}
        for name, dtype in ARRAY_DTYPES.items():
            stored_dtype, shape, data = record[name]
            if stored_dtype != dtype:
                raise ValueError(f"{name} has dtype {stored_dtype}, expected {dtype}")
            array = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
            arrays[name] = array
        length = len(arrays["input_ids"])
        if any(len(arrays[n]) != length for n in ("tiers", "depths", "anchors")):
            raise ValueError("metadata arrays are not aligned with input_ids")
        spans = arrays["node_spans"]
        if spans.ndim != 2 or spans.shape[1] != 5:
            raise ValueError(f"node_spans has shape {spans.shape}, expected [M, 5]")
        return TokenizedExample(path=str(record["path"]), language=str(record["language"]),
                                **arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise ShardError(path, f"an example does not decode ({err})") from None


def encode_shard(examples: Sequence[TokenizedExample]) -> bytes:
    """The bytes of a shard file: header (magic, version, count, payload length, payload
    sha256) followed by the msgpack payload."""
    payload = msgpack.packb([encode_example(e) for e in examples], use_bin_type=True)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, len(examples), len(payload),
                         hashlib.sha256(payload).digest())
    return header + payload


def atomic_write(path: Path, data: bytes) -> None:
    """Write data to a temporary file beside path, fsync it, rename it over path, and fsync
    the directory, so a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_shard(path: str | Path, examples: Sequence[TokenizedExample]) -> dict:
    """Write a shard atomically; returns its record (count, tokens, bytes, sha256)."""
    data = encode_shard(examples)
    atomic_write(Path(path), data)
    return {"count": len(examples), "tokens": int(sum(len(e) for e in examples)),
            "bytes": len(data), "sha256": hashlib.sha256(data[HEADER.size:]).hexdigest()}


def read_shard(path: str | Path, expected_sha256: str | None = None) -> list[TokenizedExample]:
    """Read and verify a shard: magic, version, length and checksum; with expected_sha256 (from
    the index) also that it is the shard this cache was built with."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ShardError(path, f"cannot be read ({err.strerror or err})") from None
    if len(data) < HEADER.size:
        raise ShardError(path, f"truncated: {len(data)} bytes, shorter than the "
                               f"{HEADER.size}-byte header")
    magic, version, count, length, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ShardError(path, f"wrong magic {magic!r} (expected {MAGIC!r}): not an astdiffuse "
                               "shard")
    if version != FORMAT_VERSION:
        raise StaleShardsError(path, f"format version {version}, this code reads version "
                                     f"{FORMAT_VERSION}")
    payload = memoryview(data)[HEADER.size:]
    if len(payload) != length:
        what = "truncated" if len(payload) < length else "has trailing bytes"
        raise ShardError(path, f"{what}: the payload is {len(payload):,} bytes, the header says "
                               f"{length:,}")
    actual = hashlib.sha256(payload).digest()
    if actual != digest:
        raise ShardError(path, "checksum mismatch: the payload's sha256 differs from the "
                               "header's (the file is corrupt)")
    if expected_sha256 is not None and actual.hex() != expected_sha256:
        raise StaleShardsError(path, "the shard is intact but is not the one the index lists "
                                     "(it comes from another build)")
    try:
        records = msgpack.unpackb(payload, raw=False)
    except Exception as err:  # msgpack raises several unrelated types
        raise ShardError(path, f"the payload does not decode as msgpack ({err})") from None
    if not isinstance(records, list) or len(records) != count:
        raise ShardError(path, f"the header says {count} examples, the payload holds "
                               f"{len(records) if isinstance(records, list) else 'none'}")
    return [decode_example(r, path) for r in records]


def same_example(a: TokenizedExample, b: TokenizedExample) -> bool:
    """Whether two examples are identical: path, language, and every array's dtype and values."""
    return a.path == b.path and a.language == b.language and all(
        getattr(a, n).dtype == getattr(b, n).dtype and np.array_equal(getattr(a, n), getattr(b, n))
        for n in ARRAY_DTYPES)


# -- building the cache -------------------------------------------------------------------------

Processed = tuple[int, "list[TokenizedExample] | None", str]  # file index, examples, error
_WORKER: FileProcessor | None = None  # the processor of a worker process


def _process(processor: FileProcessor, item: tuple[int, CorpusFile]) -> Processed:
    index, file = item
    try:
        return index, processor.examples(file), ""
    except AstdiffuseError as err:
        return index, None, str(err)


def _init_worker(tokenizer_dir: str, config: dict) -> None:
    global _WORKER
    _WORKER = FileProcessor(tokenizer_dir, ShardConfig(**config))


def _process_in_worker(item: tuple[int, CorpusFile]) -> Processed:
    return _process(_WORKER, item)  # type: ignore[arg-type]


def _processed(files: list[tuple[int, CorpusFile]], tokenizer_dir: str, config: ShardConfig
               ) -> Iterator[Processed]:
    """(file index, examples or None, error) for each file, in order."""
    if config.workers == 1:
        processor = FileProcessor(tokenizer_dir, config)
        yield from (_process(processor, item) for item in files)
        return
    context = multiprocessing.get_context("spawn")  # no fork after tokenizers' threads start
    with context.Pool(config.workers, _init_worker, (tokenizer_dir, asdict(config))) as pool:
        yield from pool.imap(_process_in_worker, files, chunksize=4)


class _SplitWriter:
    """Collects one split's windows and writes a shard every examples_per_shard windows."""

    def __init__(self, cache: Path, split: str, per_shard: int):
        self.cache, self.split, self.per_shard = cache, split, per_shard
        self.pending: list[tuple[int, int, TokenizedExample]] = []  # file index, window, example
        self.shards: list[dict] = []

    def add(self, file_index: int, examples: list[TokenizedExample]) -> None:
        self.pending += [(file_index, w, e) for w, e in enumerate(examples)]
        while len(self.pending) >= self.per_shard:
            self._flush(self.pending[:self.per_shard])
            self.pending = self.pending[self.per_shard:]

    def finish(self) -> list[dict]:
        if self.pending:
            self._flush(self.pending)
            self.pending = []
        return self.shards

    def _flush(self, items: list[tuple[int, int, TokenizedExample]]) -> None:
        name = f"{self.split}/{len(self.shards):05d}{SHARD_SUFFIX}"
        record = write_shard(self.cache / name, [e for _, _, e in items])
        entries: list[list[int]] = []  # [file index, first window, windows] runs
        for file_index, window, _ in items:
            if entries and entries[-1][0] == file_index:
                entries[-1][2] += 1
            else:
                entries.append([file_index, window, 1])
        self.shards.append({"file": name, **record, "entries": entries})


def _remove_shards(cache: Path) -> None:
    """Delete the shard files (and leftover temporary files) of an old build; nothing else
    in the directory is touched."""
    for split in SPLITS:
        folder = cache / split
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix == SHARD_SUFFIX or ".tmp-" in path.name:
                    path.unlink()


def load_index(cache_dir: str | Path) -> dict:
    """The cache's index.json; ShardError if it is missing or unreadable."""
    path = Path(cache_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(path, "missing (no shard cache here, or its build did not finish)",
                         "build it with python -m training.shards --tokenizer DIR --out DIR") \
            from None
    except (OSError, ValueError) as err:
        raise ShardError(path, f"unreadable index ({err})") from None
    if index.get("format") != INDEX_FORMAT:
        raise ShardError(path, "not an astdiffuse shard index")
    if index.get("settings", {}).get("format_version") != FORMAT_VERSION:
        raise StaleShardsError(path, "built by another version of the shard format")
    return index


def verify_cache(cache_dir: str | Path) -> list[ShardError]:
    """Every problem with a cache's shards (an empty list when all verify)."""
    cache = Path(cache_dir)
    index = load_index(cache)
    problems = []
    for split in index["splits"].values():
        for shard in split["shards"]:
            try:
                read_shard(cache / shard["file"], shard["sha256"])
            except ShardError as err:
                problems.append(err)
    return problems


def stale_reasons(index: dict, tokenizer_sha256: str, corpus: Corpus, config: ShardConfig
                  ) -> list[str]:
    """Why an existing index does not match the requested build (empty: it matches)."""
    reasons = []
    if index["tokenizer"]["sha256"] != tokenizer_sha256:
        reasons.append("the tokenizer changed")
    if index["settings"] != config.cache_settings():
        reasons.append("the shard settings changed")
    if index["corpus"]["fingerprint"] != corpus.fingerprint():
        reasons.append("the corpus changed")
    return reasons


def build_shards(corpus: Corpus, tokenizer_dir: str | Path, cache_dir: str | Path,
                 config: ShardConfig = ShardConfig(), progress: bool = False,
                 force: bool = False) -> dict:
    """Build the cache (or keep it when it is up to date and verifies); returns the index, with
    "reused": True when nothing was rebuilt and "stale_reasons" when an old cache was replaced."""
    config.validate()
    cache = Path(cache_dir)
    tokenizer_dir = Path(tokenizer_dir).resolve()
    tokenizer_sha = tokenizer_fingerprint(tokenizer_dir)
    reasons: list[str] = []
    if (cache / INDEX_NAME).exists() and not force:
        try:
            old = load_index(cache)
            reasons = stale_reasons(old, tokenizer_sha, corpus, config)
            if not reasons:
                problems = verify_cache(cache)
                if not problems:
                    return dict(old, reused=True)
                reasons = [f"{len(problems)} shard(s) failed verification"]
        except StaleShardsError:
            reasons = ["the shard format changed"]
        except ShardError as err:
            reasons = [f"the index is unusable ({err.problem})"]
    started = time.perf_counter()
    (cache / INDEX_NAME).unlink(missing_ok=True)  # a half-built cache must not look complete
    _remove_shards(cache)
    files = corpus.files
    splits: dict[str, dict] = {}
    failed: list[dict] = []
    meter = Progress("shards: files", len(files), enabled=progress)
    for split in SPLITS:
        writer = _SplitWriter(cache, split, config.examples_per_shard)
        chosen = [(i, f) for i, f in enumerate(files) if f.split == split]
        for file_index, examples, error in _processed(chosen, str(tokenizer_dir), config):
            meter.update(note=split)
            if examples is None:
                failed.append({"path": files[file_index].relative_path, "error": error})
                continue
            writer.add(file_index, examples)
        shards = writer.finish()
        splits[split] = {"examples": sum(s["count"] for s in shards),
                         "tokens": sum(s["tokens"] for s in shards),
                         "bytes": sum(s["bytes"] for s in shards), "shards": shards}
    meter.close()
    manifest = corpus.to_manifest()
    index = {
        "format": INDEX_FORMAT, "settings": config.cache_settings(),
        "tokenizer": {"path": str(tokenizer_dir), "sha256": tokenizer_sha},
        "corpus": {key: manifest[key] for key in ("config", "fingerprint", "summary")},
        "files": manifest["files"], "failed": failed, "splits": splits,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write(cache / INDEX_NAME, (json.dumps(index, indent=1) + "\n").encode("utf-8"))
    return dict(index, reused=False, stale_reasons=reasons)


# -- reading ------------------------------------------------------------------------------------

class ShardDataset:
    """The examples of one split of a shard cache, in build order.

    Map-style (`len`, `[i]`, usable by a torch DataLoader with a list-returning collate_fn) and
    iterable. `on_corrupt` decides what a shard that fails verification does: "raise" a
    ShardError, "skip" it while iterating (indexing into it still raises), or "rebuild" it
    from the corpus files and the tokenizer recorded in the index.
    """

    def __init__(self, cache_dir: str | Path, split: str = "train", *,
                 tokenizer: str | Path | None = None, on_corrupt: OnCorrupt = "raise",
                 cached_shards: int = 2):
        if on_corrupt not in ("raise", "skip", "rebuild"):
            raise ValueError(f"on_corrupt must be 'raise', 'skip' or 'rebuild', not {on_corrupt!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.cache = Path(cache_dir)
        self.index = load_index(self.cache)
        self.split = split
        self.on_corrupt = on_corrupt
        self.tokenizer = Path(tokenizer) if tokenizer is not None else None
        if self.tokenizer is not None:
            self._check_tokenizer(self.tokenizer)
        self.shards: list[dict] = self.index["splits"][split]["shards"]
        self._offsets = np.cumsum([0] + [s["count"] for s in self.shards]).tolist()
        self._cache: dict[int, list[TokenizedExample]] = {}
        self._cached_shards = max(1, cached_shards)
        self.skipped_shards: list[str] = []  # shard files skipped because they were corrupt
        self.rebuilt_shards: list[str] = []  # shard files rebuilt because they were corrupt

    def _check_tokenizer(self, tokenizer: Path) -> None:
        recorded = self.index["tokenizer"]
        if tokenizer_fingerprint(tokenizer) != recorded["sha256"]:
            raise StaleShardsError(
                self.cache / INDEX_NAME,
                f"built with another tokenizer (sha256 {recorded['sha256'][:12]}…, from "
                f"{recorded['path']}) than {tokenizer}",
                f"rebuild it: python -m training.shards --tokenizer {tokenizer} --out {self.cache}")

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, i: int) -> TokenizedExample:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} out of range for {len(self)} examples")
        k = bisect.bisect_right(self._offsets, i) - 1
        policy = "raise" if self.on_corrupt == "skip" else self.on_corrupt
        return self.load_shard(k, policy)[i - self._offsets[k]]

    def __iter__(self) -> Iterator[TokenizedExample]:
        for k in range(len(self.shards)):
            yield from self.load_shard(k)

    def shard_path(self, k: int) -> Path:
        return self.cache / self.shards[k]["file"]

    def load_shard(self, k: int, on_corrupt: OnCorrupt | None = None) -> list[TokenizedExample]:
        """The examples of shard k (verified), handling corruption by policy."""
        if k in self._cache:
            return self._cache[k]
        policy = on_corrupt or self.on_corrupt
        path = self.shard_path(k)
        try:
            examples = read_shard(path, self.shards[k]["sha256"])
        except ShardError as err:
            if policy == "raise":
                raise
            if policy == "skip":
                print(f"warning: skipping {err}", file=sys.stderr)
                self.skipped_shards.append(str(path))
                return []
            self.rebuild_shard(k)
            examples = read_shard(path, self.shards[k]["sha256"])
        if len(self._cache) >= self._cached_shards:
            self._cache.pop(next(iter(self._cache)))
        self._cache[k] = examples
        return examples

    def rebuild_shard(self, k: int) -> Path:
        """Re-create shard k from its corpus files; it must come out byte-identical to the
        original build (else StaleShardsError: rebuild the whole cache)."""
        tokenizer = self.tokenizer or Path(self.index["tokenizer"]["path"])
        self._check_tokenizer(tokenizer)
        settings = dict(self.index["settings"])
        settings.pop("format_version")
        processor = FileProcessor(tokenizer, ShardConfig(**settings))
        path = self.shard_path(k)
        examples: list[TokenizedExample] = []
        for file_index, first, count in self.shards[k]["entries"]:
            file = CorpusFile(**self.index["files"][file_index])
            try:
                windows = processor.examples(file)
            except AstdiffuseError as err:
                raise StaleShardsError(path, f"cannot be rebuilt ({err})",
                                       "rebuild the whole cache") from None
            examples += windows[first:first + count]
        data = encode_shard(examples)
        if hashlib.sha256(data[HEADER.size:]).hexdigest() != self.shards[k]["sha256"]:
            raise StaleShardsError(path, "the rebuilt shard differs from the original build",
                                   "rebuild the whole cache with python -m training.shards")
        atomic_write(path, data)
        print(f"rebuilt {path}", file=sys.stderr)
        self.rebuilt_shards.append(str(path))
        self._cache.pop(k, None)
        return path


class ShardIterableDataset(IterableDataset):
    """A torch IterableDataset over a ShardDataset: each DataLoader worker reads its own
    shards; with shuffle, shard order and examples within a shard are shuffled by a
    `random.Random` seeded from (seed, epoch), identically in every worker."""

    def __init__(self, dataset: ShardDataset, shuffle: bool = False, seed: int = 0):
        self.dataset, self.shuffle, self.seed = dataset, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[TokenizedExample]:
        order = list(range(len(self.dataset.shards)))
        rng = random.Random(f"{self.seed}:{self.epoch}")
        if self.shuffle:
            rng.shuffle(order)
        info = get_worker_info()
        if info is not None:
            order = order[info.id::info.num_workers]
        for k in order:
            examples = list(self.dataset.load_shard(k))
            if self.shuffle:
                random.Random(f"{self.seed}:{self.epoch}:{k}").shuffle(examples)
            yield from examples


# -- command line -------------------------------------------------------------------------------

def format_summary(index: dict) -> str:
    lines = [f"{'split':<12}{'examples':>10}{'tokens':>13}{'shards':>8}{'bytes':>14}"]
    for name, split in index["splits"].items():
        lines.append(f"{name:<12}{split['examples']:>10,}{split['tokens']:>13,}"
                     f"{len(split['shards']):>8}{split['bytes']:>14,}")
    lines.append(f"files: {len(index['files']):,}, failed: {len(index['failed'])}, "
                 f"build: {index['build_seconds']} s"
                 + (" (up to date, reused)" if index.get("reused") else ""))
    for failure in index["failed"][:10]:
        lines.append(f"  failed {failure['path']}: {failure['error']}")
    if index.get("stale_reasons"):
        lines.append(f"rebuilt because {', '.join(index['stale_reasons'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.shards", description=__doc__)
    parser.add_argument("--out", required=True, metavar="DIR", help="cache directory")
    parser.add_argument("--tokenizer", metavar="DIR",
                        help="tokenizer directory (python -m training.tokenizer)")
    parser.add_argument("--max-length", type=int, default=ShardConfig.max_length,
                        help="tokens per window at most (default 512)")
    parser.add_argument("--examples-per-shard", type=int, default=ShardConfig.examples_per_shard,
                        help="windows per shard (default 1024)")
    parser.add_argument("--workers", type=int, default=ShardConfig.workers,
                        help="processes that tokenize and annotate (default 1)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--verify", action="store_true",
                        help="only verify an existing cache's shards and report")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_corpus_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.verify:
            problems = verify_cache(args.out)
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s)")
            return 1 if problems else 0
        if not args.tokenizer:
            parser.error("--tokenizer is required to build")
        config = ShardConfig(args.max_length, args.examples_per_shard, workers=args.workers)
        corpus = build_corpus(config_from_args(args), progress=not args.quiet)
        index = build_shards(corpus, args.tokenizer, args.out, config, progress=not args.quiet,
                             force=args.force)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
