"""`python -m engine infill`: the new file, --json, --diff, several spans, determinism, steps,
progress, and exit statuses (0 valid, 1 no valid candidate, 2 bad input, 130 interrupted).

One tiny random model (saved once per module) stands in for a trained one: its infills are
almost never valid code, which exercises the warning path; `--keep-anchors` on a line of
keywords and identifiers only leaves nothing to mask, which gives a valid result."""

import json
import os
import subprocess
import sys

import pytest
import torch

import engine.model as em
from engine.cli import build_parser, main
from engine.infill import InfillOptions
from engine.model.adapter import save_model_and_tokenizer
from training.tokenizer import TokenizerConfig, train_tokenizer

from .paths import EXAMPLES, ROOT

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SAMPLE = EXAMPLES / "sample.py"
ORIGINAL = SAMPLE.read_bytes()
RESULT_KEYS = {"candidates", "valid", "message", "steps", "timings", "model", "device"}
CANDIDATE_KEYS = {"text", "spans", "score", "parses", "same_kind", "repair_rounds"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random-init tiny model and a byte-level BPE trained on a few files of this repo."""
    files = [SAMPLE, *sorted((ROOT / "engine").glob("*.py"))]
    tokenizer = train_tokenizer([p.read_text(encoding="utf-8") for p in files],
                                TokenizerConfig(vocab_size=512))
    torch.manual_seed(0)
    config = em.config_from_preset("tiny", tokenizer.get_vocab_size())
    assert config.max_position_embeddings >= 512
    model = em.AnchoredDiffusionModel(config).eval()
    return save_model_and_tokenizer(model, tokenizer, tmp_path_factory.mktemp("model"))


@pytest.fixture
def infill(model_dir, capsys):
    """Run `python -m engine infill SAMPLE ...` in-process -> (exit status, stdout, stderr)."""

    def run(*args, file=SAMPLE, model=True):
        argv = ["infill", str(file), "--device", "cpu", *map(str, args)]
        if model:
            argv += ["--model", str(model_dir)]
        status = main(argv)
        out, err = capsys.readouterr()
        return status, out, err

    return run


def infill_json(infill, *args) -> dict:
    status, out, err = infill(*args, "--json")
    result = json.loads(out)
    assert status == (0 if result["valid"] else 1), err
    return result


def apply(original: bytes, spans: list[dict]) -> bytes:
    """The original file with each span's new text in place of its bytes."""
    for span in sorted(spans, key=lambda s: s["start_byte"], reverse=True):
        start, end = span["start_byte"], span["end_byte"]
        assert original[start:end].decode("utf-8") == span["old_text"]
        original = original[:start] + span["new_text"].encode("utf-8") + original[end:]
    return original


def test_default_output_is_the_file_with_the_span_replaced(infill):
    status, out, err = infill("--lines", "20", "--seed", "3")
    result = infill_json(infill, "--lines", "20", "--seed", "3")
    best = result["candidates"][0]
    assert out == best["text"]
    [span] = best["spans"]
    assert 20 in range(span["start_line"], span["end_line"] + 1)
    new = out.encode("utf-8")
    tail = len(ORIGINAL) - span["end_byte"]
    assert new[:span["start_byte"]] == ORIGINAL[:span["start_byte"]]
    assert new[len(new) - tail:] == ORIGINAL[span["end_byte"]:]
    assert new[span["start_byte"]:len(new) - tail] == span["new_text"].encode("utf-8")
    assert status == (0 if result["valid"] else 1)
    if not result["valid"]:
        assert err.startswith("warning:") and result["message"] in err
    else:
        assert "warning:" not in err


def test_json_has_exactly_the_result_fields(infill):
    result = infill_json(infill, "--lines", "23:24", "--candidates", "2")
    assert set(result) == RESULT_KEYS
    assert result["device"] == "cpu" and result["model"]
    assert isinstance(result["steps"], int) and result["timings"]["total_ms"] > 0
    assert 1 <= len(result["candidates"]) <= 2
    for candidate in result["candidates"]:
        assert set(candidate) == CANDIDATE_KEYS
        assert apply(ORIGINAL, candidate["spans"]) == candidate["text"].encode("utf-8")
    assert result["valid"] == (result["candidates"][0]["parses"]
                               and result["candidates"][0]["same_kind"])


def test_diff_output(infill):
    status, out, err = infill("--lines", "20", "--diff")
    assert out.startswith("--- a/") and "\n+++ b/" in out and "\n@@ " in out
    assert out.splitlines()[0].endswith("examples/sample.py")
    removed = [line[1:] for line in out.splitlines()[2:] if line.startswith("-")]
    assert "    restocked = 0" in removed
    assert status in (0, 1) and (status == 0) == ("warning:" not in err)


def test_two_line_ranges_give_two_spans(infill):
    result = infill_json(infill, "--lines", "20", "--lines", "31")
    for candidate in result["candidates"]:
        first, second = candidate["spans"]
        assert first["start_line"] == 20 and second["start_line"] == 31
        assert first["end_byte"] <= second["start_byte"]
        assert apply(ORIGINAL, candidate["spans"]) == candidate["text"].encode("utf-8")


def test_same_seed_same_result(infill):
    args = ("--lines", "20", "--seed", "7", "--temperature", "0.8")
    first, second = infill_json(infill, *args), infill_json(infill, *args)
    first.pop("timings"), second.pop("timings")
    assert first == second


def test_steps_are_honoured(infill):
    result = infill_json(infill, "--lines", "22:26", "--steps", "3")
    # 3 steps per run: the first, and at most one per repair round (2 by default)
    assert 3 <= result["steps"] <= 9


def test_nothing_left_to_mask_is_valid_and_exits_0(infill):
    # `return best`: keywords and identifiers only, all kept by --keep-anchors
    status, out, err = infill("--lines", "35", "--keep-anchors")
    assert status == 0, err
    assert out.encode("utf-8") == ORIGINAL and err == ""


def test_progress_lines(infill):
    status, out, err = infill("--lines", "20", "--steps", "2", "--progress")
    lines = err.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps and steps[0].startswith("step 1/")
    assert all(len(line) < 120 for line in steps)
    assert len(lines) == len(steps) + (status == 1)  # plus the warning, nothing else


def test_missing_default_model_exits_2(infill, monkeypatch, tmp_path):
    monkeypatch.setattr("engine.infill.engine.DEFAULT_MODEL_DIR", tmp_path / "default_model")
    status, out, err = infill("--lines", "20", model=False)
    assert status == 2 and out == ""
    assert err.startswith("error:") and "--model" in err and "Traceback" not in err


def test_missing_model_directory_or_a_file_exits_2(infill, model_dir, tmp_path):
    status, out, err = infill("--lines", "20", "--model", tmp_path / "nowhere", model=False)
    assert status == 2 and err.startswith("error:") and "nowhere" in err
    status, out, err = infill("--lines", "20", "--model", model_dir / "config.json", model=False)
    assert status == 2 and err.startswith("error:") and "directory" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_exits_2(infill):
    status, out, err = infill("--lines", "20", "--device", "cuda")
    assert status == 2 and out == ""
    assert err.startswith("error:") and "no CUDA GPU" in err and "--device cpu" in err


@pytest.mark.parametrize("args, message", [
    (["--lines", "999"], "past the end of the file"),
    (["--range", "3:500"], "past the end of line 3"),
    (["--lines", "20", "--temperature", "-1"], "temperature"),
    (["--lines", "20", "--candidates", "0"], "candidates"),
    (["--lines", "20", "--context-tokens", "4"], "context_tokens"),
])
def test_bad_input_exits_2(infill, args, message):
    status, out, err = infill(*args)
    assert status == 2 and out == ""
    assert err.startswith("error:") and message in err


def test_unsupported_extension_exits_2(infill, tmp_path):
    path = tmp_path / "notes.cob"
    path.write_text("DISPLAY 'HI'.\n")
    status, out, err = infill("--lines", "1", file=path)
    assert status == 2 and "unsupported language" in err


def test_interrupt_exits_130(infill, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("engine.infill.InfillEngine.infill", interrupted)
    status, out, err = infill("--lines", "20")
    assert status == 130 and err.strip() == "cancelled"


def test_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["infill", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--lines", "--range", "--mode", "--candidates", "--steps", "--seed", "--model",
                   "--device", "--temperature", "--keep-anchors", "--no-length-hint",
                   "--context-tokens", "--language", "--json", "--diff", "--progress",
                   "Exit status"):
        assert option in text
    with pytest.raises(SystemExit) as exit_info:
        main(["infill", str(SAMPLE)])
    assert exit_info.value.code == 2 and "--lines" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["infill", str(SAMPLE), "--lines", "20", "--json", "--diff"])


def test_option_defaults_are_the_engines():
    args = build_parser().parse_args(["infill", str(SAMPLE)])
    ours = {name: getattr(args, name) for name in ("steps", "candidates", "seed",
                                                   "keep_anchors", "length_hint",
                                                   "context_tokens")}
    assert ours == {name: getattr(InfillOptions(), name) for name in ours}
    # left to the model family's defaults, else InfillOptions'
    assert args.temperature is None and args.order is None


def test_subprocess(model_dir):
    result = subprocess.run(
        [sys.executable, "-m", "engine", "infill", str(SAMPLE), "--lines", "20", "--model",
         str(model_dir), "--device", "cpu", "--steps", "3", "--json", "--progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})  # as torch_one_thread: a tiny model
    out = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert result.returncode == (0 if out["valid"] else 1), result.stderr
    assert set(out) == RESULT_KEYS
    assert apply(ORIGINAL, out["candidates"][0]["spans"]) == \
        out["candidates"][0]["text"].encode("utf-8")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("step 1/") and "Loading weights" not in result.stderr
    assert (result.returncode == 1) == lines[-1].startswith("warning:")
