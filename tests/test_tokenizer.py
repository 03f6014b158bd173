"""Tokenizer training: a real byte-level BPE trained on stdlib files round-trips every text
exactly, keeps the special tokens at ids 0/1/2, and loads through engine and transformers."""

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from engine.tokens import EOS_TOKEN, MASK_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, load_tokenizer
from training.corpus import build_corpus
from training.tokenizer import (TRAINING_RECORD, TokenizerConfig, TokenizerTrainingError, main,
                                measure, round_trip_failures, save_tokenizer, tokenizer_fingerprint,
                                train_from_corpus, train_tokenizer, training_files)

VOCAB = 1500
FILES = 300
TRICKY = [
    "def f(x):\n\treturn x\t# tab\n",
    "a = 1\r\nb = 2\r\n",
    "old mac line\rnext\r",
    "trailing spaces   \nand tabs\t\t\n   \n",
    "emoji = '😀🎉👩‍💻'  # zero-width joiner\n",
    "cjk = '中文字符 日本語 한국어'\n",
    "controls = '\x01\x07\x1b[0m\x7f\x0b\x0c'\n",
    "  leading indentation\n        deeper\n",
    "",
    " ",
    "\n\n\n",
    "x = '<|mask|>' + '<|pad|>' + '<|endoftext|>'\n",
    "mixed\u00a0nbsp\u2028line sep\u2029para sep\ufeffbom\n",
    "combining: e\u0301 n\u0303 \U0001d400 \U0010ffff\n",
]


@pytest.fixture(scope="module")
def stdlib_corpus():
    return build_corpus()


@pytest.fixture(scope="module")
def trained(stdlib_corpus):
    """A small tokenizer trained once on a stable sample of the stdlib's train split."""
    tokenizer, record = train_from_corpus(stdlib_corpus, TokenizerConfig(VOCAB, 2, FILES))
    return tokenizer, record


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Path:
    tokenizer, record = trained
    return save_tokenizer(tokenizer, tmp_path_factory.mktemp("tokenizer"), record)


def test_vocab_and_special_tokens(trained):
    tokenizer, record = trained
    assert tokenizer.get_vocab_size() == VOCAB == record["vocab_size"]
    assert record["training_files"] == FILES
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == expected_id
        assert tokenizer.encode(token, add_special_tokens=False).ids == [expected_id]
    ids = tokenizer.encode("a<|mask|>b<|endoftext|>", add_special_tokens=False).ids
    assert 1 in ids and 2 in ids


def test_round_trip_on_every_training_file(trained, stdlib_corpus):
    tokenizer, _ = trained
    texts = [f.read_text() for f in training_files(stdlib_corpus, FILES)]
    assert len(texts) == FILES
    assert round_trip_failures(tokenizer, texts) == []


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_on_tricky_strings(trained, text):
    tokenizer, _ = trained
    assert round_trip_failures(tokenizer, [text]) == []
    encoding = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == text
    assert all(0 <= start <= end <= len(text) for start, end in encoding.offsets)


def test_loads_through_engine_and_transformers(saved: Path):
    files = {p.name for p in saved.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", TRAINING_RECORD} <= files
    for tok in (load_tokenizer(saved), load_tokenizer(saved / "tokenizer.json"),
                AutoTokenizer.from_pretrained(str(saved))):
        assert (tok.pad_token, tok.mask_token, tok.eos_token) == (PAD_TOKEN, MASK_TOKEN, EOS_TOKEN)
        assert (tok.pad_token_id, tok.mask_token_id, tok.eos_token_id) == (0, 1, 2)
        assert len(tok) == VOCAB
        for text in TRICKY:
            ids = tok.encode(text, add_special_tokens=False)
            assert tok.decode(ids) == text
        assert tok.encode(MASK_TOKEN, add_special_tokens=False) == [1]
    record = json.loads((saved / TRAINING_RECORD).read_text())
    assert record["tokenizer_sha256"] == tokenizer_fingerprint(saved)


def test_training_is_deterministic(trained, stdlib_corpus):
    again, _ = train_from_corpus(stdlib_corpus, TokenizerConfig(VOCAB, 2, FILES))
    assert again.to_str() == trained[0].to_str()


def test_training_sample_is_stable(stdlib_corpus):
    small = training_files(stdlib_corpus, 10)
    large = training_files(stdlib_corpus, 40)
    assert large[:10] == small
    assert {f.split for f in large} == {"train"}
    assert len({f.relative_path.split("/")[0] for f in large}) > 5  # spread over the tree


def test_bad_settings_raise():
    with pytest.raises(TokenizerTrainingError, match="vocab_size must be at least"):
        train_tokenizer(["x = 1\n"], TokenizerConfig(vocab_size=100))
    with pytest.raises(TokenizerTrainingError, match="min_frequency"):
        TokenizerConfig(min_frequency=0).validate()
    with pytest.raises(TokenizerTrainingError, match="cannot read tokenizer"):
        tokenizer_fingerprint("/nonexistent/tokenizer")


def test_cli(tmp_path: Path, capsys):
    """Train from one stdlib package with the CLI; it checks the round trip afterwards."""
    from training.corpus import stdlib_root

    out = tmp_path / "tok"
    code = main(["--out", str(out), "--vocab-size", "600", "--limit-files", "20",
                 "--root", str(stdlib_root() / "email"), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "round-trip failures 0" in printed and "bytes/token" in printed
    assert load_tokenizer(out).mask_token_id == 1
    record = json.loads((out / TRAINING_RECORD).read_text())
    assert record["training_files"] == 20 and record["vocab_size"] == 600
    assert main(["--out", str(out), "--vocab-size", "10", "--root", str(tmp_path),
                 "--quiet"]) == 2


@pytest.mark.slow
def test_round_trip_on_the_whole_stdlib(trained, stdlib_corpus, report_figure):
    """decode(encode(x)) == x on every file of the stdlib corpus (all splits, ~1,670 files,
    ~29.5 MB; the whole corpus, not a sample), with the small test tokenizer."""
    tokenizer, _ = trained
    result = measure(tokenizer, stdlib_corpus.files)
    assert result["files"] == len(stdlib_corpus.files)
    assert result["round_trip_failures"] == []
    report_figure(f"stdlib bytes/token at vocab {VOCAB}", result["bytes_per_token"])
