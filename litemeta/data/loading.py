"""Tasks delivered by a ``torch.utils.data.DataLoader``: worker processes decode the next
tasks while the model works on the current one, and pinned memory makes the copy to the
GPU asynchronous.

Tasks are index-addressed (task ``i`` depends only on the seed and ``i``), so the tasks
delivered, and everything computed from them, are the same whatever the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from litemeta.tasks import Task

__all__ = ["Workers", "default_workers", "resolve_workers", "task_loader"]

Workers = int | Literal["auto"]
"""A number of loader worker processes, or ``"auto"`` (see :func:`default_workers`)."""

#: Tasks each worker prepares ahead of the one in use.
PREFETCH_PER_WORKER = 4


def default_workers(device: torch.device) -> int:
    """0 (load in the training process) on the CPU, where workers would compete with the
    model for the same cores; on a GPU, up to 8 workers, leaving two cores free."""
    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 1) - 2))


def resolve_workers(workers: Workers, device: torch.device) -> int:
    """The number of workers that the ``workers`` setting means on ``device``."""
    if workers == "auto":
        return default_workers(device)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be 'auto' or a number >= 0, got {workers!r}")
    return workers


class _IndexedTasks(Dataset):
    """Map-style view of a task source: item ``i`` is ``source(i)``."""

    def __init__(self, source: Callable[[int], Task]) -> None:
        self.source = source

    def __getitem__(self, index: int) -> Task:
        return self.source(index)


def task_loader(
    tasks: Dataset[Task] | Sequence[Task] | Callable[[int], Task],
    indices: Sequence[int],
    *,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[Task]:
    """Tasks ``indices`` of ``tasks`` in that order, ``workers`` processes loading ahead.

    ``tasks`` is a dataset (or list) of tasks, or a function of the task index.
    ``pin_memory`` puts each task in page-locked memory (use it when the model is on a GPU:
    copies with ``non_blocking=True`` then overlap with computation).
    """
    if not indices:
        return iter(())
    dataset = tasks if hasattr(tasks, "__getitem__") else _IndexedTasks(tasks)
    if workers == 0 and not pin_memory:
        return (dataset[index] for index in indices)
    loader = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=None,
        sampler=list(indices),
        num_workers=workers,
        prefetch_factor=PREFETCH_PER_WORKER if workers else None,
        pin_memory=pin_memory,
        # Its own generator: the loader must not draw from the global random state.
        generator=torch.Generator(),
    )
    return iter(loader)
