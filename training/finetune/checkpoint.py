"""Checkpoints without pickle: the trained weights and the optimizer's tensors as safetensors,
everything else as JSON; written to a temporary directory and renamed, so a kill never leaves a
half-written checkpoint that looks complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.errors import AstdiffuseError

LATEST = "latest"


class CheckpointError(AstdiffuseError):
    """A checkpoint is missing, damaged, or belongs to another run; the message says what to do."""


@dataclass
class Checkpoint:
    directory: Path
    step: int
    state: dict  # state.json: step, args, model config, tokenizer fingerprint, metrics so far


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def optimizer_tensors(state: dict) -> tuple[dict, list]:
    """(tensors named "INDEX/KEY", param_groups) of an optimizer state dict, for safetensors."""
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}/{key}"] = value.detach().to("cpu").contiguous()
    return tensors, state["param_groups"]


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors (names, dtypes, shapes and bytes): equal digests, equal weights."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        # A copy: numpy() would pin the tensor's storage, which FSDP resizes.
        tensor = tensors[name].detach().to("cpu", copy=True).contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(root: Path, step: int, weights: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer | dict | tuple[dict, list], state: dict,
                    keep: int = 2) -> Path:
    """Write OUT/checkpoints/step-NNNNNNN atomically and point `latest` at it; keep the newest
    `keep` checkpoints. `optimizer` may also be its state dict (e.g. gathered from FSDP shards)
    or a ready (tensors, param_groups) pair."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = root / name
    temporary = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    if isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer.state_dict()
    tensors, groups = optimizer if isinstance(optimizer, tuple) else optimizer_tensors(optimizer)
    save_file(weights, str(temporary / "weights.safetensors"))
    save_file(tensors, str(temporary / "optimizer.safetensors"))
    _write_json(temporary / "state.json", dict(state, step=step, param_groups=groups))
    for file in temporary.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, root / LATEST)
    _fsync_dir(root)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The checkpoint `latest` names, or the newest complete one; None when there is none."""
    names = []
    if (root / LATEST).is_file():
        names.append((root / LATEST).read_text().strip())
    names += sorted((p.name for p in root.glob("step-*") if p.is_dir()), reverse=True)
    for name in names:
        directory = root / name
        try:
            state = json.loads((directory / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (directory / "weights.safetensors").is_file():
            return Checkpoint(directory, int(state["step"]), state)
    return None


def _read_tensors(checkpoint: Checkpoint, name: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(checkpoint.directory / name))
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{checkpoint.directory}/{name} cannot be read ({err}); delete "
                              "that checkpoint to resume from the one before") from None


def load_weights(checkpoint: Checkpoint, model: torch.nn.Module) -> None:
    """Copy the checkpoint's tensors into the model's trainable parameters (names must match)."""
    tensors = _read_tensors(checkpoint, "weights.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    unexpected = [n for n in tensors if n not in params]
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint.directory} holds the weights of another model ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, e.g. {(missing + unexpected)[:3]}); resume with the "
            "same --model and settings, or start a new --out")
    with torch.no_grad():
        for name, tensor in tensors.items():
            if params[name].shape != tensor.shape:
                raise CheckpointError(
                    f"{checkpoint.directory}: {name} has shape {tuple(tensor.shape)}, the model "
                    f"{tuple(params[name].shape)}; it is another model's checkpoint")
            params[name].copy_(tensor)


def read_optimizer_state(checkpoint: Checkpoint) -> dict:
    """The optimizer state dict a checkpoint holds (parameters numbered as one process does)."""
    tensors = _read_tensors(checkpoint, "optimizer.safetensors")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [dict(group) for group in checkpoint.state["param_groups"]]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def load_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    optimizer.load_state_dict(read_optimizer_state(checkpoint))
