"""Multi-process training through torchrun: the process group (NCCL on GPUs, gloo on CPUs),
wrapping the model in DDP or FSDP, and the few collectives the loop needs."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from engine.errors import AstdiffuseError


class DistributedSetupError(AstdiffuseError):
    """torchrun's environment or the chosen --parallel mode cannot be used."""


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    mode: str = "none"  # none | ddp | fsdp

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(parallel: str, device_type: str) -> DistInfo:
    """Join torchrun's process group when WORLD_SIZE > 1 (RANK, LOCAL_RANK, MASTER_ADDR/PORT
    come from torchrun); a single process runs with mode "none"."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        if parallel in ("ddp", "fsdp"):
            raise DistributedSetupError(
                f"--parallel {parallel} needs several processes: start the run with torchrun "
                "--nproc-per-node N -m training.finetune ...")
        return DistInfo()
    if parallel == "none":
        raise DistributedSetupError("torchrun started several processes but --parallel is none; "
                                    "use --parallel ddp, fsdp or auto")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, "ddp" if parallel == "auto" else parallel)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP (a full copy per process, gradients all-reduced) or FSDP (parameters, gradients and
    optimizer state sharded across processes: models too big for one device).

    FSDP is torch's `fully_shard` (FSDP2): each block of every `nn.ModuleList` is one shard
    unit, the rest (embeddings, norms, heads: tied weights stay together) the root's. It shards
    the parameters in place, so the module keeps its class and parameter names, and runs on
    CUDA (NCCL) and on the CPU (gloo). Build the optimizer after wrapping: FSDP replaces the
    parameters by sharded ones. Every process must have built the same initial weights (the
    same seed), since FSDP, unlike DDP, does not broadcast them from rank 0."""
    if info.mode == "none":
        return model
    if info.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        raise DistributedSetupError(
            f"--parallel fsdp needs torch.distributed.fsdp.fully_shard (torch >= 2.6; this is "
            f"torch {torch.__version__}); upgrade torch or use --parallel ddp") from None
    # Inner modules first (reversed pre-order): FSDP shards bottom-up.
    for blocks in [m for m in reversed(list(model.modules())) if isinstance(m, nn.ModuleList)]:
        for block in blocks:
            fully_shard(block)
    fully_shard(model)
    return model


def gradient_sync(wrapped: nn.Module, info: DistInfo, enabled: bool):
    """A context for one micro-batch's backward: gradients are reduced across the processes
    only when `enabled` (the last micro-batch of an optimizer step), so accumulation is local."""
    if info.mode == "ddp" and not enabled:
        return wrapped.no_sync()
    if info.mode == "fsdp":
        wrapped.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Clip the norm of the whole gradient (FSDP's gradients are sharded DTensors, whose norm
    torch reduces across the shards, so every process scales by the same factor)."""
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_norm)


_FULL = dict(full_state_dict=True, cpu_offload=True)


def full_state_dict(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """The whole model state (parameters and buffers, un-prefixed names as `named_parameters`
    gives them), as CPU tensors on rank 0. Under FSDP every process must call it (it gathers
    the shards) and only rank 0 gets the tensors; elsewhere the model's own state."""
    if info.mode != "fsdp":
        return unwrap(model).state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(**_FULL))


def _names_in_optimizer_order(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the order `optimizer.state_dict()` numbers them (group by group)."""
    names = {id(p): n for n, p in unwrap(model).named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                         info: DistInfo) -> dict:
    """The optimizer's state dict with the parameters numbered as a single process numbers
    them (so a checkpoint has one format whatever --parallel): under FSDP the shards gathered
    to rank 0 (every process must call it; the others get an empty state)."""
    if info.mode != "fsdp":
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         get_optimizer_state_dict)

    full = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(**_FULL))
    index = {name: i for i, name in enumerate(_names_in_optimizer_order(model, optimizer))}
    groups = [dict(group, params=[index[n] for n in group["params"]])
              for group in full.get("param_groups", [])]
    return {"state": {index[n]: values for n, values in full.get("state", {}).items()},
            "param_groups": groups}


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                              state: dict, info: DistInfo) -> None:
    """Load a state dict of the single-process format (every process holds all of it); under
    FSDP each process keeps its own shards of it."""
    if info.mode != "fsdp":
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         set_optimizer_state_dict)

    names = _names_in_optimizer_order(model, optimizer)
    full = {"state": {names[int(i)]: values for i, values in state["state"].items()},
            "param_groups": [dict(group, params=[names[int(i)] for i in group["params"]])
                             for group in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, full,
                             options=StateDictOptions(full_state_dict=True))


def local_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """This process's own copy of the trained tensors: the whole of each under DDP, its shard
    of each under FSDP (what `weights_digest` of a rank hashes)."""
    out = {}
    for name, param in unwrap(model).named_parameters():
        if param.requires_grad:
            tensor = param.to_local() if hasattr(param, "to_local") else param
            out[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return out


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def mean_across(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a scalar over the processes (each logs the same figure)."""
    if info.world <= 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64,
                          device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world


def sum_across(value: float, info: DistInfo, device: torch.device) -> float:
    return mean_across(value, info, device) * info.world


def shutdown(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
