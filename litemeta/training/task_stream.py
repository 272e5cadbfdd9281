"""Deterministic, index-addressed task streams: task ``i`` is always the same task.

Addressing tasks by position makes meta-training resumable and data-parallel without any
sampler state: a resumed run asks for the tasks after the last checkpointed step, and each
process asks for its own slice of the stream (see :func:`stream_index`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from litemeta.tasks import Task

__all__ = ["TaskSource", "seeded_generator", "stream_index"]

#: Task ``i`` of a deterministic stream, as a function of ``i`` or a dataset indexed by it;
#: the same index must always give the same task (e.g. ``EpisodicTaskDataset`` of
#: :mod:`litemeta.data`).
TaskSource = Callable[[int], Task] | Dataset[Task]


def seeded_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator whose seed is a hash of ``seed`` and ``keys`` (independent streams)."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def stream_index(*, step: int, rank: int, world_size: int, tasks_per_step: int, task: int) -> int:
    """Position in the stream of a process's ``task``-th task in (0-based) optimiser ``step``.

    Step ``s`` uses positions ``s * world_size * tasks_per_step`` onwards, rank by rank, so
    ``world_size`` processes with ``tasks_per_step`` tasks each see exactly the tasks that one
    process with ``world_size * tasks_per_step`` tasks per step would.
    """
    return (step * world_size + rank) * tasks_per_step + task
