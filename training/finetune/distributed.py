"""Multi-process training through torchrun: the process group (NCCL on GPUs, gloo on CPUs),
wrapping the model in DDP or FSDP, and the few collectives the loop needs."""

from __future__ import annotations

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
    optimizer state sharded across processes: models too big for one device)."""
    if info.mode == "none":
        return model
    if info.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

    kwargs = {"device_id": device} if device.type == "cuda" else {}
    return FullyShardedDataParallel(model, sharding_strategy=ShardingStrategy.FULL_SHARD,
                                    use_orig_params=True, **kwargs)


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
