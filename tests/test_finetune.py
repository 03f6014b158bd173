"""python -m training.finetune end to end on a small source tree: a run from scratch whose model
the engine loads, resume after a kill (same weights as an uninterrupted run), clear errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training.finetune.args import RECIPES, FinetuneArgs, group_fields
from training.finetune.cli import build_parser, parse_args

ROOT = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "shlex.py", "textwrap.py",
           "queue.py", "sched.py", "stat.py", "glob.py", "keyword.py", "numbers.py",
           "string.py", "abc.py", "copy.py", "operator.py", "reprlib.py", "tabnanny.py",
           "genericpath.py", "linecache.py", "token.py", "this.py", "cmd.py", "code.py"]


def finetune(*args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "training.finetune", "--threads", "1", "--no-progress",
               *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (STDLIB / name).is_file():
            shutil.copy(STDLIB / name, root / name)
    return root


@pytest.fixture(scope="module")
def first_run(source_tree, tmp_path_factory) -> Path:
    """A smoke run from scratch on the source tree: tokenizer, shards, 12 steps, final model."""
    out = tmp_path_factory.mktemp("runs") / "first"
    finetune("--recipe", "smoke", "--data", str(source_tree), "--out", str(out), "--steps", "12",
             "--checkpoint-every", "6", "--eval-every", "6", "--log-every", "3")
    return out


def shared_data(run: Path) -> list[str]:
    """Flags that reuse a run's tokenizer and shard cache (no rebuild in later tests)."""
    return ["--data", str(run / "data"), "--tokenizer", str(run / "tokenizer")]


def test_help_documents_every_argument():
    text = build_parser().format_help()
    for _, f in group_fields():
        assert "--" + f.name.replace("_", "-") in text, f.name
    for recipe in RECIPES:
        assert recipe in text


def test_recipe_defaults_and_explicit_flags():
    args, _ = parse_args(["--recipe", "smoke", "--steps", "7", "--no-anchoring"])
    assert args.model.model == "tiny" and args.optim.steps == 7
    assert args.anchor.anchoring is False and args.data.seq_len == RECIPES["smoke"]["seq_len"]
    assert FinetuneArgs.from_dict(args.to_dict()) == args
    args, _ = parse_args(["--max-spans", "none", "--model-set", "hidden_size=32"])
    assert args.masking.max_spans is None and args.model.model_set == ["hidden_size=32"]


def test_a_run_from_scratch_gives_a_model_the_engine_loads(first_run):
    records = [json.loads(line) for line in (first_run / "metrics.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"setup", "train", "eval"} <= kinds
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == [3, 6, 9, 12]
    assert all(np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in records
               if r["kind"] == "train")
    assert (first_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((first_run / "summary.json").read_text())
    assert summary["steps"] == 12 and "eval_loss" in summary and "eval_infill_loss" in summary
    assert (first_run / "checkpoints" / "latest").read_text().strip() == "step-0000012"

    from engine.infill import ByteRange, InfillEngine, InfillOptions, InfillRequest

    engine = InfillEngine.load(first_run / "final", device="cpu")
    text = "def area(w, h):\n    result = w * h\n    return result\n"
    cursor = text.index("result = ")
    result = engine.infill(InfillRequest(text, "python", [ByteRange(cursor, cursor)],
                                         options=InfillOptions(candidates=1, steps=4)))
    assert result.candidates and result.candidates[0].text.startswith("def area")


def test_resume_after_a_kill_matches_an_uninterrupted_run(first_run, tmp_path):
    flags = ["--recipe", "smoke", *shared_data(first_run), "--steps", "80", "--batch-size", "8",
             "--seq-len", "128", "--checkpoint-every", "10", "--eval-every", "0",
             "--log-every", "10", "--no-plot"]
    straight = tmp_path / "straight"
    finetune(*flags, "--out", str(straight))

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "training.finetune", "--threads", "1", "--no-progress",
               *flags, "--out", str(killed)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step-0000020":
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = int(latest.read_text().strip().split("-")[1])
    assert 20 <= stopped_at < 80
    assert not (killed / "final").exists()

    resumed = finetune(*flags, "--out", str(killed), "--resume")
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["steps"] == 80
    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(killed / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text()
             .splitlines() if '"train"' in line]
    assert steps == list(range(10, 81, 10))  # each step logged once across the two processes


def test_stop_at_ends_a_run_where_its_planned_schedule_stood(first_run, tmp_path):
    """--stop-at N: the weights of step N of a run planned to --steps, saved as final/."""
    flags = ["--recipe", "smoke", *shared_data(first_run), "--steps", "12", "--batch-size", "4",
             "--seq-len", "64", "--eval-every", "0", "--no-plot"]
    whole = tmp_path / "whole"
    finetune(*flags, "--checkpoint-every", "5", "--keep-checkpoints", "5", "--out", str(whole))
    stopped = tmp_path / "stopped"
    summary = json.loads(finetune(*flags, "--stop-at", "5", "--out", str(stopped))
                         .stdout.strip().splitlines()[-1])
    assert summary["steps"] == 5 and summary["target_steps"] == 12
    assert not summary["stopped_early"] and "eval_infill_loss" in summary
    at_5 = {k.removeprefix("network."): v for k, v in load_file(
        str(whole / "checkpoints" / "step-0000005" / "weights.safetensors")).items()}
    at_12 = load_file(str(whole / "final" / "model.safetensors"))
    final = load_file(str(stopped / "final" / "model.safetensors"))
    assert final.keys() == at_12.keys() and final.keys() <= at_5.keys()
    assert all(torch.equal(at_5[k], final[k]) for k in final)
    assert any(not torch.equal(at_12[k], final[k]) for k in final)


def test_bad_data_and_models_are_clear_errors(first_run, tmp_path):
    missing = finetune("--recipe", "smoke", "--data", str(tmp_path / "nope"), "--out",
                       str(tmp_path / "a"), check=False)
    assert missing.returncode == 2 and "no such directory" in missing.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no code here\n")
    result = finetune("--recipe", "smoke", "--data", str(empty), "--out", str(tmp_path / "b"),
                      check=False)
    assert result.returncode == 2 and "no python source file" in result.stderr

    nothing = finetune("--recipe", "smoke", "--out", str(tmp_path / "c"), "--resume",
                       check=False)
    assert nothing.returncode == 2 and "nothing to resume" in nothing.stderr

    again = finetune("--recipe", "smoke", *shared_data(first_run), "--out", str(first_run),
                     check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr

    other = finetune("--recipe", "smoke", *shared_data(first_run), "--out", str(first_run),
                     "--resume", "--no-use-anchor", check=False)
    assert other.returncode == 2 and "model.use_anchor" in other.stderr

    bad_model = finetune("--model", str(tmp_path), "--out", str(tmp_path / "d"), check=False)
    assert bad_model.returncode == 2 and "neither a preset" in bad_model.stderr


def test_a_checkpoint_of_another_model_is_refused(first_run, tmp_path):
    from training.finetune.checkpoint import CheckpointError, latest_checkpoint, load_weights
    from training.finetune.models import build_model
    from training.finetune.args import ModelArgs

    checkpoint = latest_checkpoint(first_run / "checkpoints")
    other = build_model(ModelArgs(model="tiny", model_set=["hidden_size=32"]),
                        first_run / "tokenizer", seed=0)
    with pytest.raises(CheckpointError, match="another model"):
        load_weights(checkpoint, other)


def test_fine_tune_from_a_saved_model(first_run, tmp_path):
    out = tmp_path / "ft"
    result = finetune("--model", str(first_run / "final"), *shared_data(first_run)[:2],
                      "--recipe", "smoke", "--steps", "4", "--masking", "mix", "--out", str(out),
                      "--no-plot")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4 and (out / "final" / "model.safetensors").is_file()
    before = load_file(str(first_run / "final" / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_export_as_the_default_model(first_run, tmp_path):
    from engine.infill import InfillEngine
    from training.export import main as export_main

    out = tmp_path / "default_model"
    assert export_main([str(first_run / "final"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors",
                                                     "tokenizer.json", "training.json"]
    record = json.loads((out / "training.json").read_text())
    assert record["dtype"] == "bf16" and record["summary"]["steps"] == 12
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(out / "model.safetensors"))
               .values())
    InfillEngine.load(out, device="cpu")
    assert export_main([str(first_run / "final"), "--out", str(tmp_path / "x"),
                        "--max-mb", "0.01"]) == 2
    assert not (tmp_path / "x").exists()
