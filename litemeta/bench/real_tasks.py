"""Real few-shot tasks for the benchmarks: the built-in emoji set's test split."""

from __future__ import annotations

from litemeta.data import FixedWaySampler, emoji_tasks
from litemeta.tasks import Task

__all__ = ["emoji_test_tasks"]


def emoji_test_tasks(
    num_tasks: int, way: int, shot: int, queries: int, image_size: int, seed: int = 0
) -> list[Task]:
    """``num_tasks`` ``way``-way ``shot``-shot tasks with ``queries`` queries per class from
    the emoji test split (every class has 7 images, one per artist), loaded once and
    resized to ``image_size`` as they are decoded."""
    sampler = FixedWaySampler(way, shot, queries)
    tasks = emoji_tasks(
        "test", num_tasks=num_tasks, sampler=sampler, seed=seed, decode_size=image_size
    )
    return list(tasks)
