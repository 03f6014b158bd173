"""The shard cache: stdlib files tokenized by a real trained tokenizer, annotated, windowed,
written as checksummed shards and read back identical; corruption and staleness are caught."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from engine.syntax import SourceDocument, annotate_tokens
from engine.tokens import MASK_TOKEN, load_tokenizer
from training.corpus import CorpusConfig, build_corpus, stdlib_root
from training.example import TokenizedExample
from training.shards import (HEADER, INDEX_NAME, MAGIC, FileProcessor, ShardConfig,
                             ShardDataset, ShardError, ShardIterableDataset, ShardSettingsError,
                             StaleShardsError,
                             build_shards, decode_example, encode_example, main,
                             read_shard, same_example, verify_cache, window_bounds, write_shard)
from training.tokenizer import TokenizerConfig, save_tokenizer, train_from_corpus

PACKAGES = ("json", "wsgiref", "concurrent", "dbm", "sqlite3", "zoneinfo", "tomllib",
            "importlib/metadata")
CONFIG = ShardConfig(max_length=128, examples_per_shard=16)


@pytest.fixture(scope="module")
def corpus():
    roots = tuple(str(stdlib_root() / p) for p in PACKAGES)
    corpus = build_corpus(CorpusConfig(roots=roots, fractions=(0.6, 0.2, 0.2)))
    assert all(corpus.split(s) for s in ("train", "validation", "test"))
    return corpus


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory) -> Path:
    tokenizer, record = train_from_corpus(corpus, TokenizerConfig(vocab_size=800))
    return save_tokenizer(tokenizer, tmp_path_factory.mktemp("tok800"), record)


@pytest.fixture(scope="module")
def other_tokenizer_dir(corpus, tmp_path_factory) -> Path:
    tokenizer, record = train_from_corpus(corpus, TokenizerConfig(vocab_size=700))
    return save_tokenizer(tokenizer, tmp_path_factory.mktemp("tok700"), record)


@pytest.fixture(scope="module")
def built(corpus, tokenizer_dir, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    index = build_shards(corpus, tokenizer_dir, cache, CONFIG)
    assert index["reused"] is False and index["failed"] == []
    return cache


@pytest.fixture
def cache(built, tmp_path) -> Path:
    """A private copy of the built cache that a test may damage."""
    return Path(shutil.copytree(built, tmp_path / "cache"))


@pytest.fixture(scope="module")
def expected(corpus, tokenizer_dir) -> dict[str, list[TokenizedExample]]:
    """Every split's examples computed directly, without shards."""
    processor = FileProcessor(tokenizer_dir, CONFIG)
    return {split: [e for f in corpus.split(split) for e in processor.examples(f)]
            for split in ("train", "validation", "test")}


def test_read_back_identical(built, expected):
    for split, examples in expected.items():
        dataset = ShardDataset(built, split)
        assert len(dataset) == len(examples) > 0
        read = list(dataset)
        assert all(same_example(a, b) for a, b in zip(read, examples))
        assert same_example(dataset[-1], examples[-1]) and same_example(dataset[5], examples[5])
    shards = ShardDataset(built, "train").shards
    assert len(shards) > 3 and all(s["count"] == 16 for s in shards[:-1])


def test_examples_are_well_formed(built, tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    dataset = ShardDataset(built, "train", tokenizer=tokenizer_dir)
    by_path: dict[tuple[str, int], list[TokenizedExample]] = {}
    for e in dataset:
        assert 0 < len(e) <= CONFIG.max_length
        assert e.input_ids.dtype == np.int32 and e.tiers.dtype == np.int8
        assert e.depths.dtype == np.int16 and e.anchors.dtype == np.int8
        assert len(e.tiers) == len(e.depths) == len(e.anchors) == len(e.input_ids)
        spans = e.node_spans
        assert spans.dtype == np.int32 and spans.ndim == 2 and spans.shape[1] == 5
        assert (spans[:, 0] >= 0).all() and (spans[:, 1] <= len(e)).all()
        assert (spans[:, 0] < spans[:, 1]).all()
        assert e.language == "python"
    # The windows of a file, in order, are exactly the file's tokens: they decode to its text.
    files = dataset.index["files"]
    windows: dict[int, list[int]] = {}
    position = 0
    for shard in dataset.shards:
        for file_index, first, count in shard["entries"]:
            for _ in range(count):
                windows.setdefault(file_index, []).extend(dataset[position].input_ids.tolist())
                position += 1
    for file_index, ids in windows.items():
        path = Path(files[file_index]["root"]) / files[file_index]["relative_path"]
        assert tokenizer.decode(ids) == path.read_text(encoding="utf-8")


def test_windows_cut_at_statements_and_keep_inner_spans(corpus, tokenizer_dir):
    """A long file: every window but the last is cut where a statement starts (or at
    max_length), and its node spans are the file's spans wholly inside it, re-based."""
    file = max(corpus.split("train"), key=lambda f: f.size)
    text = file.read_text()
    processor = FileProcessor(tokenizer_dir, CONFIG)
    encoding = processor.backend.encode(text, add_special_tokens=False)
    doc = SourceDocument(text, "python")
    structure = annotate_tokens(doc, encoding.offsets, unit="char", node_spans=True)
    examples = processor.examples(file)
    assert len(examples) > 5
    spans = structure.node_spans
    statement_starts = set(spans[spans[:, 3] == 0, 0].tolist())
    start = 0
    for e in examples:
        end = start + len(e)
        assert np.array_equal(e.input_ids, np.asarray(encoding.ids[start:end]))
        assert np.array_equal(e.depths, structure.depths[start:end])
        assert end == len(encoding.ids) or end in statement_starts or len(e) == CONFIG.max_length
        inside = spans[(spans[:, 0] >= start) & (spans[:, 1] <= end)].copy()
        inside[:, :2] -= start
        assert np.array_equal(e.node_spans, inside)
        start = end
    assert start == len(encoding.ids)
    cut_at_statement = sum(len(e) < CONFIG.max_length for e in examples[:-1])
    assert cut_at_statement > len(examples) // 2


def test_window_bounds():
    starts = np.array([0, 3, 9, 14, 30])
    assert window_bounds(10, starts, 10) == [(0, 10)]
    assert window_bounds(0, starts, 10) == []
    assert window_bounds(20, starts, 10) == [(0, 9), (9, 14), (14, 20)]
    assert window_bounds(20, starts, 10, min_fill=1.0) == [(0, 10), (10, 20)]
    assert window_bounds(25, np.array([], dtype=int), 10) == [(0, 10), (10, 20), (20, 25)]


def test_literal_special_token_text_is_not_a_special_token(tokenizer_dir):
    processor = FileProcessor(tokenizer_dir, CONFIG)
    [example] = processor.examples_for_text(f"x = '{MASK_TOKEN}'\n", "python")
    assert not np.isin(example.input_ids, [0, 1, 2]).any()


def test_encode_decode_example_round_trip(tmp_path):
    example = TokenizedExample(
        input_ids=np.array([5, 6, 7], np.int32), tiers=np.array([0, 1, 2], np.int8),
        depths=np.array([1, 2, 3], np.int16), anchors=np.array([0, 1, 0], np.int8),
        node_spans=np.array([[0, 2, 1, 0, 1]], np.int32), path="a/b.py", language="python")
    assert same_example(decode_example(encode_example(example)), example)
    record = write_shard(tmp_path / "one.shard", [example, example])
    assert record["count"] == 2 and record["tokens"] == 6
    assert all(same_example(e, example) for e in read_shard(tmp_path / "one.shard"))
    bad = encode_example(example)
    bad["tiers"][0] = "<i4"
    with pytest.raises(ShardError, match="dtype"):
        decode_example(bad, "x.shard")


def _first_shard(cache: Path) -> Path:
    return cache / ShardDataset(cache, "train").shards[0]["file"]


def test_truncated_shard(cache):
    path = _first_shard(cache)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ShardError, match="truncated") as err:
        list(ShardDataset(cache, "train"))
    assert str(path) in str(err.value) and err.value.path == path
    path.write_bytes(data[:10])
    with pytest.raises(ShardError, match="shorter than the 56-byte header"):
        read_shard(path)


def test_flipped_byte(cache):
    path = _first_shard(cache)
    data = bytearray(path.read_bytes())
    data[HEADER.size + 100] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="checksum mismatch") as err:
        ShardDataset(cache, "train")[0]
    assert str(path) in str(err.value)
    problems = verify_cache(cache)
    assert [p.path for p in problems] == [path]


def test_wrong_magic(cache):
    path = _first_shard(cache)
    data = path.read_bytes()
    path.write_bytes(b"NOTASHRD" + data[len(MAGIC):])
    with pytest.raises(ShardError, match="wrong magic") as err:
        read_shard(path)
    assert str(path) in str(err.value)


def test_shard_from_another_build_is_detected(cache):
    dataset = ShardDataset(cache, "train")
    first, second = (cache / s["file"] for s in dataset.shards[:2])
    shutil.copyfile(second, first)  # intact, but not the shard the index lists
    with pytest.raises(StaleShardsError, match="not the one the index lists"):
        dataset[0]


def test_on_corrupt_skip(cache, expected):
    path = _first_shard(cache)
    path.write_bytes(path.read_bytes()[:100])
    dataset = ShardDataset(cache, "train", on_corrupt="skip")
    read = list(dataset)
    assert len(read) == len(expected["train"]) - 16
    assert all(same_example(a, b) for a, b in zip(read, expected["train"][16:]))
    assert dataset.skipped_shards == [str(path)]
    with pytest.raises(ShardError):  # indexing cannot skip: it raises
        dataset[0]


def test_on_corrupt_rebuild(cache, expected):
    path = _first_shard(cache)
    original = path.read_bytes()
    data = bytearray(original)
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    dataset = ShardDataset(cache, "train", on_corrupt="rebuild")
    read = list(dataset)
    assert all(same_example(a, b) for a, b in zip(read, expected["train"], strict=True))
    assert dataset.rebuilt_shards == [str(path)]
    assert path.read_bytes() == original
    path.unlink()  # a missing shard is rebuilt too
    assert same_example(ShardDataset(cache, "train", on_corrupt="rebuild")[3], expected["train"][3])
    assert verify_cache(cache) == []


def test_stale_tokenizer_detected_and_rebuilt(cache, corpus, tokenizer_dir, other_tokenizer_dir):
    with pytest.raises(StaleShardsError, match="another tokenizer") as err:
        ShardDataset(cache, "train", tokenizer=other_tokenizer_dir)
    assert "python -m training.shards" in str(err.value)
    # A rebuild with the new tokenizer replaces the cache; the same request again reuses it.
    index = build_shards(corpus, other_tokenizer_dir, cache, CONFIG)
    assert index["reused"] is False and index["stale_reasons"] == ["the tokenizer changed"]
    assert ShardDataset(cache, "validation", tokenizer=other_tokenizer_dir)[0].input_ids.max() < 700
    assert build_shards(corpus, other_tokenizer_dir, cache, CONFIG)["reused"] is True
    index = build_shards(corpus, other_tokenizer_dir, cache, ShardConfig(max_length=64))
    assert index["stale_reasons"] == ["the shard settings changed"]
    # A corrupt shard makes an otherwise current cache rebuild.
    path = _first_shard(cache)
    path.write_bytes(path.read_bytes()[:-1])
    index = build_shards(corpus, other_tokenizer_dir, cache, ShardConfig(max_length=64))
    assert index["stale_reasons"] == ["1 shard(s) failed verification"]
    assert verify_cache(cache) == []


def test_bad_settings():
    with pytest.raises(ShardSettingsError, match="max_length"):
        ShardConfig(max_length=0).validate()
    with pytest.raises(ShardSettingsError, match="fraction"):
        ShardConfig(min_window_fill=2.0).validate()


def test_rebuild_touches_only_shard_files(cache, corpus, tokenizer_dir):
    keep = cache / "train" / "notes.txt"
    keep.write_text("mine")
    build_shards(corpus, tokenizer_dir, cache, CONFIG, force=True)
    assert keep.read_text() == "mine"


def test_missing_index(tmp_path):
    with pytest.raises(ShardError, match="missing") as err:
        ShardDataset(tmp_path, "train")
    assert str(tmp_path / INDEX_NAME) in str(err.value)


def test_torch_data_loaders(built, expected):
    dataset = ShardDataset(built, "train")
    loader = DataLoader(dataset, batch_size=8, shuffle=True, collate_fn=list,
                        generator=torch.Generator().manual_seed(0))
    seen = [e for batch in loader for e in batch]
    assert len(seen) == len(expected["train"])
    iterable = ShardIterableDataset(dataset, shuffle=True, seed=3)
    first = [e.input_ids.tolist() for e in iterable]
    again = [e.input_ids.tolist() for e in iterable]
    assert first == again  # seeded: the same epoch replays exactly
    iterable.set_epoch(1)
    assert [e.input_ids.tolist() for e in iterable] != first
    assert sorted(map(str, first)) == sorted(str(e.input_ids.tolist()) for e in expected["train"])
    two_workers = DataLoader(ShardIterableDataset(dataset), batch_size=None, num_workers=2)
    assert len(list(two_workers)) == len(expected["train"])


def test_cli_build_and_verify(tmp_path, tokenizer_dir, capsys):
    out = tmp_path / "cache"
    args = ["--tokenizer", str(tokenizer_dir), "--out", str(out), "--root",
            str(stdlib_root() / "json"), "--max-length", "64", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "failed: 0" in printed
    assert main(args) == 0 and "up to date" in capsys.readouterr().out
    assert main(["--out", str(out), "--verify"]) == 0
    shard = next((out / "train").iterdir())
    shard.write_bytes(shard.read_bytes()[:-3])
    assert main(["--out", str(out), "--verify"]) == 1
    assert str(shard) in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "none"), "--verify"]) == 2


@pytest.mark.slow
def test_parallel_build_is_identical(corpus, tokenizer_dir, built, tmp_path):
    """Two worker processes produce byte-identical shards."""
    index = build_shards(corpus, tokenizer_dir, tmp_path / "par",
                         ShardConfig(max_length=128, examples_per_shard=16, workers=2))
    for split in index["splits"].values():
        for shard in split["shards"]:
            assert (tmp_path / "par" / shard["file"]).read_bytes() == \
                (built / shard["file"]).read_bytes()
