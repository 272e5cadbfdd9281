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

__all__ = [
    "TaskIterator",
    "Workers",
    "check_workers",
    "default_workers",
    "max_workers",
    "resolve_workers",
    "task_loader",
]

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


def max_workers() -> int:
    """The most loader workers this machine takes: two per CPU core (more only queue for
    the cores, each holding a copy of the loader's memory)."""
    return 2 * (os.cpu_count() or 1)


def check_workers(workers: Workers, key: str = "data.workers", allow_auto: bool = True) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``workers`` is a number of processes from 0
    to :func:`max_workers` (or ``"auto"``, where ``allow_auto``)."""
    if workers == "auto" and allow_auto:
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        expected = "'auto' or a number >= 0" if allow_auto else "a number >= 0"
        raise ValueError(f"{key} must be {expected}, got {workers!r}")
    if workers > max_workers():
        advice = f"set a smaller number or {key}=auto" if allow_auto else "give a smaller number"
        raise ValueError(
            f"{key}={workers} is more loader processes than this machine can run: at most "
            f"{max_workers()} (two per CPU core, {os.cpu_count()} here); {advice}"
        )


def resolve_workers(workers: Workers, device: torch.device) -> int:
    """The number of workers that the ``workers`` setting means on ``device``."""
    check_workers(workers)
    return default_workers(device) if workers == "auto" else int(workers)


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
) -> TaskIterator:
    """Tasks ``indices`` of ``tasks`` in that order, ``workers`` processes loading ahead.

    ``tasks`` is a dataset (or list) of tasks, or a function of the task index.
    ``pin_memory`` puts each task in page-locked memory (use it when the model is on a GPU:
    copies with ``non_blocking=True`` then overlap with computation).
    """
    if not indices:
        return TaskIterator(iter(()))
    dataset = tasks if hasattr(tasks, "__getitem__") else _IndexedTasks(tasks)
    if workers == 0 and not pin_memory:
        return TaskIterator(dataset[index] for index in indices)
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
    return TaskIterator(iter(loader))


class TaskIterator(Iterator[Task]):
    """The tasks of :func:`task_loader`; ``close()`` (or leaving a ``with`` block) stops
    its worker processes at once, on any way out (an error, Ctrl-C, ``SIGTERM`` turned
    into an exception), rather than whenever the iterator is collected."""

    def __init__(self, tasks: Iterator[Task]) -> None:
        self._tasks = tasks

    def __iter__(self) -> TaskIterator:
        return self

    def __next__(self) -> Task:
        return next(self._tasks)

    def close(self) -> None:
        shutdown = getattr(self._tasks, "_shutdown_workers", None)  # a DataLoader's iterator
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> TaskIterator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
