"""Multi-process training with PyTorch DDP, as started by torchrun (one process per GPU, any
number of nodes): RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT come from the environment.
Without them everything runs in one process."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (NCCL on GPUs, Gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info


def local_device(setting: str) -> torch.device:
    """The device of this process: with torchrun on GPUs, cuda:LOCAL_RANK."""
    from sole_ros.device import resolve_device

    device = resolve_device(setting)
    if (
        device.type == "cuda"
        and device.index is None
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
    ):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if every process says True (keeps the processes' steps in lockstep)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def mean_over_processes(
    values: dict[str, float], info: DistInfo, device: torch.device
) -> dict[str, float]:
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo, finished: bool = True) -> None:
    """Leave the process group while the interpreter is fully alive.

    DDP's reducer sits in reference cycles and keeps the Gloo group alive after
    destroy_process_group; freed at interpreter exit instead, Gloo's threads then take the GIL
    of a finalising interpreter and the process aborts ("terminate called without an active
    exception") although training finished. So: wait for every process, free the cycles, then
    destroy the group. After an error the other processes may never arrive: no barrier then."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
