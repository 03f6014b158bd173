"""`python -m engine spans`: JSON shape, human output, tokens, and clear errors with exit 2."""

import json
import subprocess
import sys

import pytest

from .paths import EXAMPLES, ROOT

SAMPLE = EXAMPLES / "sample.py"


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_json_output_has_the_documented_shape():
    out = json.loads(run("spans", SAMPLE, "--lines", "22:24", "--json").stdout)
    assert out["language"] == "python"
    source = SAMPLE.read_bytes()
    [span] = out["spans"]
    assert {"start_byte", "end_byte", "start_line", "end_line", "node_types", "text"} <= set(span)
    assert span["text"] == source[span["start_byte"]:span["end_byte"]].decode()
    assert span["node_types"] == ["if_statement"]
    assert (span["start_line"], span["end_line"]) == (22, 26)


def test_lines_are_one_based_and_inclusive():
    out = json.loads(run("spans", SAMPLE, "--lines", "20", "--json").stdout)
    [span] = out["spans"]
    assert span["start_line"] == span["end_line"] == 20
    assert span["text"] == SAMPLE.read_text().splitlines()[19].strip()


def test_range_and_cursor_and_block_mode():
    out = json.loads(run("spans", SAMPLE, "--range", "23:13-23:17", "--range", "31:5",
                         "--json").stdout)
    assert [s["text"] for s in out["spans"]] == ["item", "best = None"]
    block = json.loads(run("spans", SAMPLE, "--range", "32:5", "--mode", "block", "--json").stdout)
    assert block["spans"][0]["text"].startswith("if best is None")


def test_tokens_in_json_and_text():
    out = json.loads(run("spans", SAMPLE, "--lines", "35", "--tokens", "--json").stdout)
    tokens = out["spans"][0]["tokens"]
    assert [t["text"] for t in tokens] == [" return", " best"]
    assert tokens[0] == {"text": " return", "start_byte": tokens[0]["start_byte"],
                         "end_byte": tokens[0]["end_byte"], "node_type": "return", "depth": 4,
                         "tier": "ctrl", "anchor": "keyword"}
    text = run("spans", SAMPLE, "--lines", "35", "--tokens").stdout
    assert "span 1: line 35" in text and "ctrl" in text and "keyword" in text


def test_tokenizer_file(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    out = json.loads(run("spans", SAMPLE, "--lines", "35", "--tokens", "--tokenizer", path,
                         "--json").stdout)
    assert [t["text"] for t in out["spans"][0]["tokens"]] == ["return", "best"]


@pytest.mark.parametrize("args, message", [
    (["--lines", "999"], "past the end of the file"),
    (["--lines", "5:3"], "end line comes before"),
    (["--lines", "x"], "whole number"),
    (["--range", "3:500"], "past the end of line 3"),
    (["--range", "3"], "LINE:COLUMN"),
])
def test_bad_ranges_exit_2_with_a_message(args, message):
    result = run("spans", SAMPLE, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("error:")


def test_bad_files_exit_2(tmp_path):
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"\x00\x01\x02")
    latin1 = tmp_path / "old.py"
    latin1.write_bytes(b"s = '\xe9'\n")
    empty = tmp_path / "empty.py"
    empty.write_bytes(b"")
    cases = [(binary, "binary"), (latin1, "not valid UTF-8"), (empty, "empty"),
             (tmp_path / "missing.py", "cannot read"), (tmp_path / "notes.cob", "unsupported language")]
    (tmp_path / "notes.cob").write_text("DISPLAY 'HI'.\n")
    for path, message in cases:
        result = run("spans", path, "--lines", "1", check=False)
        assert result.returncode == 2, path
        assert message in result.stderr, (path, result.stderr)


def test_usage_errors():
    result = run("spans", SAMPLE, check=False)
    assert result.returncode == 2 and "--lines" in result.stderr
    assert "python" in run("languages").stdout.split()
