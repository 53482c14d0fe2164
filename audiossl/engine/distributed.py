"""Process group set-up under torchrun, and the few collectives the engine needs.

``torchrun --nproc_per_node N -m audiossl.cli pretrain ...`` (or any command that trains) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then joins the process group (NCCL
on GPUs, gloo on CPU). Without those variables everything here is a no-op for a single
process, so the engine has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from audiossl.errors import ConfigError


@dataclass
class DistInfo:
    """This process's place in the run: rank, number of processes, local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available; ``cuda`` without a GPU is a :class:`ConfigError`.

    ``cuda`` is this process's GPU (``LOCAL_RANK``); ``cuda:N`` names one GPU (one process).
    """
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    try:
        named = torch.device(preference) if preference != "auto" else torch.device("cuda")
    except RuntimeError as error:
        raise ConfigError(f"device {preference!r}: {error}") from None
    if named.type != "cuda":
        return named
    if not torch.cuda.is_available():
        raise ConfigError(f"device is {preference!r} but torch sees no CUDA device (use 'auto' or 'cpu')")
    if named.index is not None:
        return named
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device_preference: str = "auto", timeout_s: float | None = None) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; pick this process's device.

    ``timeout_s``: how long a collective may wait for the other processes before it fails (gloo)
    or the NCCL watchdog tears the process down; None keeps torch's default (10 min for NCCL,
    30 min for gloo). It bounds how long survivors wait for a process that hangs; one that dies
    is noticed at once by gloo and named by :mod:`audiossl.engine.peers`.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)
        owns = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, owns_group=owns)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """Sum or max of ``tensor`` over all processes (in place; unchanged for one process)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """``value`` of every process, by rank (a one-item list for one process)."""
    if not info.distributed:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, info: DistInfo, source: int = 0) -> Any:
    """``value`` of process ``source``, on every process."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every process."""
    if info.distributed:
        dist.barrier()
