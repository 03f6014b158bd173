"""python -m training.finetune under torchrun with 2 processes on the CPU (gloo): under DDP the
processes read disjoint examples and end with identical weights, the saved model is theirs; a
run stopped under one --parallel mode resumes under the other (FSDP: sharded, gathered)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.finetune.checkpoint import latest_checkpoint, weights_digest

from .finetune_runs import build_cache, records, summary_of, torchrun

STEPS = 6
BATCH = 4  # the smoke recipe's windows per process per step


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> list[str]:
    data, tokenizer = build_cache(tmp_path_factory.mktemp("cache"))
    return ["--recipe", "smoke", "--data", str(data), "--tokenizer", str(tokenizer),
            "--steps", str(STEPS), "--checkpoint-every", "3", "--eval-every", "0",
            "--log-every", "3", "--record-ranks"]


@pytest.fixture(scope="module")
def ddp_run(cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    summary = summary_of(torchrun(*cache, "--parallel", "ddp", "--out", str(out)))
    assert summary["steps"] == STEPS
    return out


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def checkpoint_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run / "checkpoints").directory /
                         "weights.safetensors"))


def test_ddp_processes_read_disjoint_examples(ddp_run):
    batches = {rank: {r["step"]: r["examples"] for r in records(
        ddp_run / "ranks" / f"rank-{rank}.jsonl", "batch")} for rank in (0, 1)}
    assert sorted(batches[0]) == sorted(batches[1]) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        first, second = set(batches[0][step]), set(batches[1][step])
        assert len(first) == len(second) == BATCH
        assert not first & second, f"step {step}: both processes read {first & second}"
    setup = records(ddp_run / "metrics.jsonl", "setup")[0]
    assert setup["world"] == 2


def test_ddp_processes_end_with_the_saved_weights(ddp_run):
    digests = [records(ddp_run / "ranks" / f"rank-{rank}.jsonl", "weights")[-1]
               for rank in (0, 1)]
    assert [d["step"] for d in digests] == [STEPS, STEPS]
    assert digests[0]["sha256"] == digests[1]["sha256"]
    saved = checkpoint_weights(ddp_run)
    assert weights_digest(saved) == digests[0]["sha256"]
    final = final_weights(ddp_run)
    assert {"network." + name for name in final} == set(saved)
    assert all(torch.equal(saved["network." + name], tensor) for name, tensor in final.items())


def test_fsdp_resumes_a_ddp_run_and_saves_whole_weights(cache, ddp_run, tmp_path,
                                                         report_figure):
    """Stopped after 1 step under DDP, continued under FSDP: the same data and masks, so the
    result matches the uninterrupted DDP run up to the order of floating-point sums (Adam
    turns those into small updates where a gradient is near zero)."""
    out = tmp_path / "mixed"
    stopped = summary_of(torchrun(*cache, "--parallel", "ddp", "--max-minutes", "0",
                                  "--out", str(out)))
    assert stopped["stopped_early"] and stopped["steps"] == 1
    resumed = summary_of(torchrun(*cache, "--parallel", "fsdp", "--resume", "--out", str(out)))
    assert resumed["steps"] == STEPS

    shards = [records(out / "ranks" / f"rank-{rank}.jsonl", "weights")[-1] for rank in (0, 1)]
    assert [s["mode"] for s in shards] == ["fsdp", "fsdp"]
    assert shards[0]["sha256"] != shards[1]["sha256"]  # each process holds its own shard
    steps = [r["step"] for r in records(out / "ranks" / "rank-1.jsonl", "batch")]
    assert steps == list(range(1, STEPS + 1))  # each step once across the two runs

    final, reference = final_weights(out), final_weights(ddp_run)
    assert final.keys() == reference.keys()
    saved = checkpoint_weights(out)  # gathered from the shards to rank 0
    assert all(torch.equal(saved["network." + name], tensor) for name, tensor in final.items())
    count = sum(t.numel() for t in final.values())
    mean_gap = sum(float((final[k] - reference[k]).abs().sum()) for k in final) / count
    largest = max(float((final[k] - reference[k]).abs().max()) for k in final)
    report_figure("FSDP (resumed from DDP) vs DDP final weights, mean / largest |gap|",
                  f"{mean_gap:.2e} / {largest:.2e}")
    assert mean_gap < 1e-5 and largest < 2e-3, (mean_gap, largest)
    losses = {r["step"]: r["loss"] for r in records(out / "metrics.jsonl", "train")}
    expected = {r["step"]: r["loss"] for r in records(ddp_run / "metrics.jsonl", "train")}
    assert losses.keys() == expected.keys()
    assert all(abs(losses[s] - expected[s]) < 1e-4 * abs(expected[s]) for s in losses)


def test_a_parallel_mode_without_torchrun_is_a_clear_error(monkeypatch):
    from training.finetune.distributed import DistributedSetupError, init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for mode in ("ddp", "fsdp"):
        with pytest.raises(DistributedSetupError, match="torchrun --nproc-per-node"):
            init_distributed(mode, "cpu")
    assert init_distributed("auto", "cpu").mode == "none"
