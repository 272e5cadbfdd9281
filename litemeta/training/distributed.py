"""Data-parallel meta-training across processes started by ``torchrun``.

Each process adapts to its own tasks and accumulates its own gradient; before the optimiser
step the gradients are averaged across processes with one all-reduce. (DistributedDataParallel
hooks fire on every backward call, which fits poorly with adapt-then-classify and several
backward passes through a retained support graph.) The backend is NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from litemeta.device import pick_device

__all__ = ["ProcessGroup", "TorchrunEnvironment", "torchrun_environment"]


@dataclass(frozen=True)
class TorchrunEnvironment:
    """This process's place in a ``torchrun`` launch: its global ``rank``, the number of
    processes ``world_size`` and its ``local_rank`` on this machine (which picks its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def torchrun_environment() -> TorchrunEnvironment:
    """The RANK, WORLD_SIZE and LOCAL_RANK variables that ``torchrun`` sets; a process
    started otherwise is rank 0 of 1."""
    return TorchrunEnvironment(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


@dataclass
class ProcessGroup:
    """This process's place among the training processes, and its device."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool

    @classmethod
    def from_environment(cls) -> ProcessGroup:
        """Join the group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK), if any."""
        launch = torchrun_environment()
        device = pick_device(launch.local_rank)
        if launch.world_size == 1:
            return cls(rank=0, world_size=1, device=device, owns_group=False)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        owns_group = not dist.is_initialized()
        if owns_group:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://")
        return cls(dist.get_rank(), dist.get_world_size(), device, owns_group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every process rank 0's parameters and buffers."""
        if self.distributed:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace each ``.grad`` by its mean over processes (a missing gradient counts as 0).

        A parameter without a gradient on every process keeps ``grad = None``, so optimisers
        skip it exactly as they would in a single process.
        """
        if not self.distributed:
            return
        parameters = list(parameters)
        present = torch.tensor(
            [p.grad is not None for p in parameters], dtype=torch.float32, device=self.device
        )
        dist.all_reduce(present)
        synced = [p for p, flag in zip(parameters, present.tolist(), strict=True) if flag > 0]
        for p in synced:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not synced:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in synced])
        dist.all_reduce(flat)
        flat /= self.world_size
        for p, chunk in zip(synced, flat.split([p.numel() for p in synced]), strict=True):
            p.grad.copy_(chunk.view_as(p.grad))

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``values`` over processes."""
        if self.distributed:
            values = values.to(self.device)
            dist.all_reduce(values)
        return values.cpu()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered
