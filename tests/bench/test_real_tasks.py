"""The benchmarks' real tasks: fixed-way tasks of the emoji test split, seeded, at a size."""

from __future__ import annotations

import pytest
import torch

from litemeta.bench.real_tasks import emoji_test_tasks
from litemeta.data import load_emoji


def test_tasks_are_seeded_fixed_way_tasks_of_the_test_split():
    tasks = emoji_test_tasks(3, way=4, shot=2, queries=1, image_size=24, seed=5)
    assert len(tasks) == 3
    test_classes = set(load_emoji("test").class_names)
    for task in tasks:
        assert task.support_images.shape == (8, 3, 24, 24)
        assert task.query_images.shape == (4, 3, 24, 24)
        assert task.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert task.query_labels.tolist() == [0, 1, 2, 3]
        assert len(set(task.class_names)) == 4 and set(task.class_names) <= test_classes
    again = emoji_test_tasks(3, way=4, shot=2, queries=1, image_size=24, seed=5)
    for first, second in zip(tasks, again, strict=True):
        assert torch.equal(first.support_images, second.support_images)
        assert first.class_names == second.class_names
    other = emoji_test_tasks(3, way=4, shot=2, queries=1, image_size=24, seed=6)
    assert [t.class_names for t in other] != [t.class_names for t in tasks]


def test_a_class_has_seven_images_to_share_between_support_and_query():
    with pytest.raises(ValueError, match="fewer images"):
        emoji_test_tasks(1, way=2, shot=6, queries=2, image_size=24)
